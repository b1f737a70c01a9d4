"""What the cast tests share: a [ROWS, COLUMNS] tile of codes packed per thread, loaded by one warp.

Thread t = (row block r, column c) holds rows 16r … 16r + 15 of column c, packed little-endian into its
bytes; :func:`load_codes` reads them back into registers in that layout, :func:`pack_codes` packs them.
"""

import numpy as np

import anybit
from anybit.layout import spatial

ROWS, COLUMNS = 32, 16
PER_THREAD = ROWS * COLUMNS // 32  # elements per thread: 16, along the rows of one column


class CastScript(anybit.Script):
    """A test kernel converting codes of ``source`` to ``target`` (both resolved with ``anybit.dtype``)."""

    def __init__(self, source, target) -> None:
        super().__init__()
        self.source, self.target = anybit.dtype(source), anybit.dtype(target)


def load_codes(script: anybit.Script, packed, source: anybit.DataType):
    """The codes of ``source`` in ``packed`` (uint8 pointer) as a [ROWS, COLUMNS] register tensor."""
    nbytes = PER_THREAD * source.nbits // 8
    raw = script.load_global(
        script.global_view(packed, anybit.uint8, [32, nbytes]),
        [0, 0],
        [32, nbytes],
        layout=spatial(32, 1).local(1, nbytes),
    )
    return script.view(raw, dtype=source, layout=spatial(2, COLUMNS).local(PER_THREAD, 1))


def pack_codes(codes: np.ndarray, nbits: int) -> np.ndarray:
    """Codes [ROWS, COLUMNS] packed into each thread's bytes [32, PER_THREAD · nbits / 8]."""
    packed = np.zeros((32, PER_THREAD * nbits // 8), dtype=np.uint8)
    for t in range(32):
        r, c = divmod(t, COLUMNS)
        bits = 0
        for i in range(PER_THREAD):
            bits |= int(codes[r * PER_THREAD + i, c]) << (i * nbits)
        packed[t] = np.frombuffer(bits.to_bytes(PER_THREAD * nbits // 8, "little"), dtype=np.uint8)
    return packed
