"""Host time of an eager ``anybit.ops.quantized_matmul`` call at M = 1, through the launch backend in use.

Issue #6 asks for ≤ 10 µs of host time per eager call at M = 1. The suite's ``host_us`` column measures it
on its rows; this measures it alone, for the backend ``ANYBIT_LAUNCH_BACKEND`` names (run it once per
backend: the backend is chosen at a kernel's first load), next to torch's own small ops on the same host,
and checks every result against a float64 reference so a backend that launched nothing cannot look fast.
Tuning is off (the first configuration that suits runs): host time does not depend on the configuration.

    ANYBIT_LAUNCH_BACKEND=compiled python benchmarks/eager_host.py [--out DIR]
"""

from __future__ import annotations

import os
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.matmul_timing import eager_us, host_us  # noqa: E402

#: (type, N, K) at M = 1.
CASES = (("int4", 4096, 4096), ("int4", 8192, 8192), ("uint1", 8192, 8192), ("float6_e3m2", 8192, 8192))


def measure(dtype: str, n: int, k: int) -> dict:
    """Host and eager µs of one case, and its relative error against float64."""
    from anybit import kernels, ops

    weight = torch.randn(n, k, device="cuda") * 0.02
    q = kernels.quantize(weight, dtype, group_size=128, act_dtype=torch.float16)
    packed = kernels.pack(q)
    x = torch.randn(1, k, device="cuda", dtype=torch.float16)
    y = ops.quantized_matmul(x, packed)
    reference = x.double() @ kernels.dequantize(q).double().T
    error = float(torch.linalg.norm(y.double() - reference) / torch.linalg.norm(reference))
    call = lambda: ops.quantized_matmul(x, packed)  # noqa: E731
    return {
        "type": dtype,
        "n": n,
        "k": k,
        "relative_error": error,
        "ok": error <= 3e-3,
        "host_us": round(host_us(call, launches=2000), 2),
        "eager_us": round(eager_us([call], repeats=400), 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per case and write ``eager_host_<backend>.json``; exit 1 if a result is wrong."""
    options = harness.gpu_options(__doc__.splitlines()[0], argv, "benchmarks/eager_host.py")
    if options is None:
        return 2
    os.environ.setdefault("ANYBIT_AUTOTUNE", "0")
    from anybit.runtime.launch import default_backend

    backend = default_backend()
    one = torch.ones(1, device="cuda")
    rows = [measure(*case) for case in CASES]
    result = {
        "gpu": harness.gpu_description(),
        "backend": backend,
        "torch_add_host_us": round(host_us(lambda: one.add_(1), launches=2000), 2),
        "rows": rows,
    }
    for row in rows:
        print({"backend": backend, **row}, flush=True)
    print(f"torch add_ host µs on this host: {result['torch_add_host_us']}")
    harness.write_json(options.out, f"eager_host_{backend}.json", result)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
