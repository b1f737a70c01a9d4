"""Count shared-memory bank conflicts of one warp instruction, and the address patterns of common ones.

Model (NVIDIA GPUs since Volta): 32 banks of 4 bytes. An instruction accessing ``w`` bytes per lane is served
in phases of ``128 // max(w, 4)`` consecutive lanes (32 lanes for 1-4 byte accesses, 16 for 8 bytes, 8 for 16
bytes, e.g. one 8x16-byte matrix of ``ldmatrix``). Within a phase each bank delivers one distinct 4-byte word
per wavefront; lanes reading the same word share it. A phase needs as many wavefronts as the largest
number of distinct words any one bank must deliver.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from .errors import LayoutError
from .shared import SharedLayout

NUM_BANKS = 32
BANK_BYTES = 4


def wavefronts(byte_addresses: Sequence[int], access_bytes: int = 4) -> int:
    """Wavefronts needed to serve one warp access: lane ``l`` touches ``access_bytes`` bytes at
    ``byte_addresses[l]`` (``None`` for an inactive lane)."""
    if access_bytes not in (1, 2, 4, 8, 16):
        raise LayoutError(f"access_bytes must be 1, 2, 4, 8 or 16, got {access_bytes}")
    if len(byte_addresses) > 32:
        raise LayoutError(f"a warp has at most 32 lanes, got {len(byte_addresses)} addresses")
    lanes_per_phase = 128 // max(access_bytes, BANK_BYTES)
    total = 0
    for start in range(0, len(byte_addresses), lanes_per_phase):
        words_by_bank: dict[int, set[int]] = defaultdict(set)
        for address in byte_addresses[start : start + lanes_per_phase]:
            if address is None:
                continue
            if address % access_bytes:
                raise LayoutError(f"address {address} is not aligned to the {access_bytes}-byte access")
            first_word = address // BANK_BYTES
            for word in range(first_word, first_word + max(1, access_bytes // BANK_BYTES)):
                words_by_bank[word % NUM_BANKS].add(word)
        if words_by_bank:
            total += max(len(words) for words in words_by_bank.values())
    return total


def bank_conflicts(byte_addresses: Sequence[int], access_bytes: int = 4) -> int:
    """Extra wavefronts over the conflict-free minimum (one per active phase); 0 means conflict free."""
    lanes_per_phase = 128 // max(access_bytes, BANK_BYTES)
    phases = sum(
        1
        for start in range(0, len(byte_addresses), lanes_per_phase)
        if any(address is not None for address in byte_addresses[start : start + lanes_per_phase])
    )
    return wavefronts(byte_addresses, access_bytes) - phases


def ldmatrix_addresses(
    layout: SharedLayout, element_bytes: int, origins: Sequence[Sequence[int]]
) -> list[int]:
    """Byte addresses given by the lanes of an ``ldmatrix`` reading one 8 x 16-byte matrix per origin.

    ``origins[j]`` is the logical index of matrix ``j``'s first element; lanes ``8j .. 8j+7`` point at its 8
    rows (dimension ``-2`` advancing). Raise if a 16-byte matrix row is not contiguous in ``layout``.
    """
    addresses = []
    per_row = 16 // element_bytes
    for origin in origins:
        for row in range(8):
            index = list(origin)
            index[-2] += row
            start = layout.offset(index)
            for step in range(1, per_row):
                following = list(index)
                following[-1] += step
                if layout.offset(following) != start + step:
                    raise LayoutError(f"the 16-byte row at {tuple(index)} is not contiguous in {layout}")
            addresses.append(start * element_bytes)
    return addresses


def ldmatrix_x4_origins(row: int, column: int, element_bytes: int) -> list[tuple[int, int]]:
    """Origins of an ``ldmatrix.x4`` reading the 16 x (32 bytes) block at (row, column) in the m16n8k16 A
    arrangement: matrix ``j`` at row block ``j % 2`` and 16-byte column block ``j // 2``."""
    per_row = 16 // element_bytes
    return [(row + 8 * (j % 2), column + per_row * (j // 2)) for j in range(4)]


def cp_async_addresses(
    layout: SharedLayout, element_bytes: int, *, first_chunk: int = 0, lanes: int = 32
) -> list[int]:
    """Byte addresses written by a warp's 16-byte ``cp.async`` copies of consecutive row-major chunks.

    Lane ``l`` copies 16-byte chunk ``first_chunk + l`` of the logical tile (rank 2, row-major chunk order).
    """
    if layout.rank != 2:
        raise LayoutError(f"cp_async_addresses expects a rank-2 layout, got shape {layout.shape}")
    per_chunk = 16 // element_bytes
    if layout.shape[1] % per_chunk:
        raise LayoutError(f"rows of {layout.shape[1]} elements are not whole 16-byte chunks")
    chunks_per_row = layout.shape[1] // per_chunk
    addresses = []
    for lane in range(lanes):
        row, chunk = divmod(first_chunk + lane, chunks_per_row)
        addresses.append(layout.offset((row, chunk * per_chunk)) * element_bytes)
    return addresses
