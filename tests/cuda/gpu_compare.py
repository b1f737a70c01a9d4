"""Moving test arrays to and from the GPU and comparing GPU outputs with the interpreter's.

The comparison rule (DESIGN §4.1): NaN must stay NaN, but NaN payloads and signs are unspecified, so float
outputs must have NaN at exactly the same positions and identical bytes everywhere else. Where the GPU sums
in another order than the interpreter (``dot``, reductions), the non-NaN values may differ by rounding: they
are compared by relative error instead. Integer and packed outputs are compared byte for byte.
"""

from __future__ import annotations

import numpy as np

from anybit.ir import AtomicAddGlobalInst, CopyAsyncInst, GlobalViewInst, LoadGlobalInst, StoreGlobalInst
from anybit.ir import instructions as all_instructions

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_TORCH_NATIVE = {"f", "i", "u", "b"}


def to_device(array: np.ndarray):
    """A CUDA tensor with the same bytes and shape; dtypes torch cannot import (bfloat16 and the other
    ml_dtypes) travel as unsigned integers of their width and are reinterpreted on the device."""
    import torch

    if array.dtype.kind in _TORCH_NATIVE:
        return torch.from_numpy(np.ascontiguousarray(array)).cuda()
    raw = torch.from_numpy(np.ascontiguousarray(array).view(_UNSIGNED[array.dtype.itemsize])).cuda()
    if array.dtype.name == "bfloat16":
        return raw.view(torch.int16).view(torch.bfloat16)
    return raw


def from_device(tensor, like: np.ndarray) -> np.ndarray:
    """The tensor's bytes as a numpy array of ``like``'s dtype and shape."""
    import torch

    raw = tensor.detach().contiguous()
    if raw.dtype in (torch.bfloat16, torch.float16):
        raw = raw.view(torch.int16)
    return raw.cpu().numpy().view(like.dtype).reshape(like.shape)


def written_pointer_names(program) -> set[str]:
    """Names of the pointer parameters the program stores to (through a global view)."""
    views = {}
    stored = set()
    for inst in all_instructions(program.body):
        if isinstance(inst, GlobalViewInst):
            views[inst.output] = getattr(inst.pointer, "name", None)
        elif isinstance(inst, StoreGlobalInst | AtomicAddGlobalInst):
            stored.add(inst.tensor)
    return {views[t] for t in stored if t in views}


def output_only_pointer_names(program) -> set[str]:
    """Pointer parameters that are written and never read: those may be poisoned before the launch."""
    views = {}
    loaded = set()
    for inst in all_instructions(program.body):
        if isinstance(inst, GlobalViewInst):
            views[inst.output] = getattr(inst.pointer, "name", None)
        elif isinstance(inst, LoadGlobalInst | CopyAsyncInst):
            loaded.add(views.get(inst.tensor))
    return written_pointer_names(program) - loaded


def poison(array: np.ndarray) -> None:
    """Fill an output with NaN (float) or 0xEE bytes (anything else), so every element must be written."""
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        array[...] = np.nan
    else:
        array.view(np.uint8)[...] = 0xEE


def compare(label: str, expected: np.ndarray, got: np.ndarray, *, tolerance: float | None = None) -> None:
    """Assert ``got`` matches ``expected`` (see the module docstring); ``tolerance``: relative error bound
    for the non-NaN float values, else bit-exact."""
    assert expected.shape == got.shape and expected.dtype == got.dtype, (label, expected.dtype, got.dtype)
    is_float = expected.dtype.kind == "f" or expected.dtype.name == "bfloat16"
    if not is_float:
        differ = expected.view(np.uint8) != got.view(np.uint8)
        assert not differ.any(), f"{label}: {int(differ.sum())} bytes differ, first at byte {_first(differ)}"
        return
    e, g = expected.astype(np.float64), got.astype(np.float64)
    nan_e, nan_g = np.isnan(e), np.isnan(g)
    assert np.array_equal(nan_e, nan_g), (
        f"{label}: NaN positions differ: {int((nan_e & ~nan_g).sum())} expected NaN got a number (first at "
        f"{_first(nan_e & ~nan_g)}), {int((nan_g & ~nan_e).sum())} unexpected NaN (first at "
        f"{_first(nan_g & ~nan_e)})"
    )
    keep = ~nan_e
    if tolerance is None:
        width = _UNSIGNED[expected.dtype.itemsize]
        differ = keep & (expected.view(width) != got.view(width))
        if differ.any():
            at = np.flatnonzero(differ.ravel())[0]
            raise AssertionError(
                f"{label}: {int(differ.sum())} of {int(keep.sum())} non-NaN values differ; first at flat "
                f"index {at}: expected {e.ravel()[at]!r} ({expected.view(width).ravel()[at]:#x}), "
                f"got {g.ravel()[at]!r} ({got.view(width).ravel()[at]:#x})"
            )
        return
    scale = max(1.0, float(np.linalg.norm(e[keep])))
    error = float(np.linalg.norm(e[keep] - g[keep])) / scale
    assert np.isfinite(g[keep]).sum() == np.isfinite(e[keep]).sum(), f"{label}: infinities differ"
    assert error < tolerance, f"{label}: relative error {error:.3g} ≥ {tolerance}"


def _first(mask: np.ndarray):
    flat = np.flatnonzero(mask.ravel())
    return int(flat[0]) if flat.size else None
