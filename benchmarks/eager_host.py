"""Host time of an eager ``anybit.ops.quantized_matmul`` call at M = 1, through the launch backend in use.

Issue #6 asks for ≤ 10 µs of host time per eager call at M = 1. The suite's ``host_us`` column measures it
on its rows; this measures it alone, for the backend ``ANYBIT_LAUNCH_BACKEND`` names (run it once per
backend: the backend is chosen at a kernel's first load), next to torch's own small ops on the same host,
and checks every result against a float64 reference so a backend that launched nothing cannot look fast.
Tuning is off (the first configuration that suits runs): host time does not depend on the configuration.

    ANYBIT_LAUNCH_BACKEND=compiled python benchmarks/eager_host.py [--out DIR] [--breakdown]

``--breakdown`` also splits one case's call (int4 8192×8192) into its parts on the same host: the Python
path with the kernel launch taken out, the kept (checked) launch alone, the bound launch eager calls take
alone, the output's ``torch.empty`` alone, and cuBLAS's eager ``x @ w.T`` of the same fp16 weight.
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


def breakdown(n: int = 8192, k: int = 8192) -> dict:
    """Host µs of an int4 N×K call at M = 1 and of its parts, each timed alone on this host."""
    from anybit import kernels, ops

    weight = torch.randn(n, k, device="cuda") * 0.02
    packed = kernels.pack(kernels.quantize(weight, "int4", group_size=128, act_dtype=torch.float16))
    x = torch.randn(1, k, device="cuda", dtype=torch.float16)
    ops.quantized_matmul(x, packed)  # compiles and keeps the launch for M = 1
    ops.quantized_matmul(x, packed)  # binds it
    plan = ops.plan_of(packed)
    launch = plan.decode_launch(1, has_zeros=False, has_bias=False)
    bound = plan._bound[False][False][1]  # False where ANYBIT_BIND_LAUNCHES=0
    y = torch.empty(1, n, dtype=torch.float16, device="cuda")
    args = (x, packed.data, packed.scales, packed.scales, packed.scales, y, 1, n, k)
    dense = weight.half()
    parts = {
        "call": lambda: ops.quantized_matmul(x, packed),
        "launch_alone": lambda: launch(args),
        **({"bound_launch_alone": lambda: bound(args)} if bound else {}),
        "torch_empty": lambda: torch.empty((1, n), dtype=torch.float16, device=plan.device),
        "cublas_eager": lambda: x @ dense.T,
    }
    result = {name: round(host_us(call, launches=4000), 2) for name, call in parts.items()}
    kept = plan._bound[False][False] if bound else plan._launches[False][False]
    kept[1] = lambda args: None  # the Python path alone: its checks, the output, no launch
    try:
        result["python_path"] = round(host_us(lambda: ops.quantized_matmul(x, packed), launches=4000), 2)
    finally:
        kept[1] = bound or launch
    return result


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per case and write ``eager_host_<backend>.json``; exit 1 if a result is wrong."""

    def extra(parser) -> None:
        parser.add_argument("--breakdown", action="store_true", help="also time one call's parts alone")

    options = harness.gpu_options(__doc__.splitlines()[0], argv, "benchmarks/eager_host.py", extra)
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
    if options.breakdown:
        result["breakdown"] = breakdown()
        print(f"breakdown (host µs, int4 8192x8192, M = 1): {result['breakdown']}", flush=True)
    for row in rows:
        print({"backend": backend, **row}, flush=True)
    print(f"torch add_ host µs on this host: {result['torch_add_host_us']}")
    harness.write_json(options.out, f"eager_host_{backend}.json", result)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
