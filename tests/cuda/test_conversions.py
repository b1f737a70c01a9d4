"""Fast in-register conversions: every 1–8-bit type to float16 and bfloat16, compiled and (GPU) exhaustive."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import requires_gpu, requires_nvrtc

from anybit import dtypes as dt
from anybit.cuda.conversions import conversion_kernel_name, conversion_test_module, has_fast_path

SOURCES = [t for t in dt.all_types() if t.nbits <= 8 and t.kind != "bool"]
TARGETS = [dt.float16, dt.bfloat16]


def test_fast_path_coverage() -> None:
    missing = [(s.name, t.name) for s in SOURCES for t in TARGETS if not has_fast_path(s, t)]
    # X > 5 overflows f16's exponent; X = 5 without inf/NaN would hit f16's inf/NaN codes: generic path
    assert sorted(name for name, _ in missing) == [
        "float6_e5m0",
        "float7_e5m1",
        "float7_e6m0",
        "float8_e6m1",
        "float8_e7m0",
    ], missing
    assert all(target == "float16" for _, target in missing)


@requires_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_every_conversion_compiles(arch: str) -> None:
    from anybit.runtime.nvrtc import compile_cubin

    source, names = conversion_test_module()
    result = compile_cubin(source, names[0], arch)
    for name in names:
        assert f".entry {name}(" in result.ptx, name
    assert "prmt.b32" in result.ptx and "lop3.b32" in result.ptx
    assert "sub.f16x2" in result.ptx and "fma.rn.bf16x2" in result.ptx and "mul.f16x2" in result.ptx
    assert not result.resources.spills


def _expected_bits(source, target) -> np.ndarray:
    values = dt.decode(np.arange(1 << source.nbits), source)
    return dt.encode(values, target).astype(np.uint16)


def _same(got: np.ndarray, expected: np.ndarray, target) -> np.ndarray:
    got_values = dt.decode(got, target)
    want_values = dt.decode(expected, target)
    nan = np.isnan(want_values)
    return np.where(nan, np.isnan(got_values), got == expected)


@pytest.mark.gpu
@requires_gpu
def test_every_code_converts_bit_for_bit() -> None:
    import torch

    from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
    from anybit.runtime import compile_source

    source, _ = conversion_test_module()
    failures = []
    for s in SOURCES:
        for t in TARGETS:
            name = conversion_kernel_name(s, t)
            kernel = CudaKernelSource(
                name=name,
                source=source,
                params=(
                    KernelParam("fast", "pointer", dt.int16),
                    KernelParam("generic", "pointer", dt.int16),
                ),
                grid=(1, 1, 1),
                block_threads=32,
                dynamic_shared_bytes=0,
                workspace_bytes=0,
                workspace_clean=False,
                alignment_requirements=(),
            )
            compiled = compile_source(kernel)
            fast = torch.full((1 << s.nbits,), -1, dtype=torch.int16, device="cuda")
            generic = torch.full_like(fast, -1)
            compiled(fast, generic)
            torch.cuda.synchronize()
            expected = _expected_bits(s, t)
            for label, got in (("fast", fast), ("generic", generic)):
                ok = _same(got.cpu().numpy().view(np.uint16), expected, t)
                if not ok.all():
                    bad = int(np.flatnonzero(~ok)[0])
                    failures.append(
                        f"{s.name}->{t.name} {label}: code {bad:#x} gave "
                        f"{int(got.cpu().numpy().view(np.uint16)[bad]):#06x}, "
                        f"expected {int(expected[bad]):#06x}"
                    )
    assert not failures, "\n".join(failures)
