"""Host overhead per kernel launch, measured against an empty kernel: ``python -m anybit.runtime.overhead``.

Host time (``time.perf_counter``), not device time: launches are issued in batches short enough that the
launch queue never fills (a full queue would make the host wait for the GPU), with a synchronisation between
batches that is not counted. Reports microseconds per launch for

* ``anybit_launch_us``: an empty anybit kernel (pointer + int argument, constant grid) through
  :class:`CompiledKernel`, with the backend the runtime chose (``launch_backend``);
* ``anybit_launch_<backend>_us``, ``anybit_launch_dependent_<backend>_us``: the same (and the dependent
  kernel's launch) through each launch backend;
* ``anybit_launch_computed_grid_us``: the same kernel with its grid computed from the int argument;
* ``anybit_launch_dependent_us``: the same kernel waiting for the prior grids, launched as a programmatic
  dependent (``cuLaunchKernelEx``) as the decode kernel is on sm_90+ (a plain launch elsewhere);
* ``anybit_checks_us``: its argument checks and packing alone (no driver call);
* ``cuLaunchKernel_ctypes_us`` / ``cuLaunchKernel_bindings_us``: the bare driver call, the floor;
* ``torch_add_us``: ``x.add_(1)`` on a one-element tensor, a small torch op for comparison;
* ``torch_empty_add_us``: ``empty.add_(1)`` on a zero-element tensor (torch's dispatch alone).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

EMPTY_KERNEL = 'extern "C" __global__ void anybit_empty(float* x, int n) {}\n'
#: The same kernel waiting for the prior grids: the runtime launches it as a programmatic dependent
#: (``cuLaunchKernelEx``), as it launches the decode kernel on sm_90+.
DEPENDENT_KERNEL = (
    'extern "C" __global__ void anybit_empty(float* x, int n) {\n'
    '#if __CUDA_ARCH__ >= 900\n  asm volatile("griddepcontrol.wait;" ::: "memory");\n#endif\n}\n'
)


def empty_kernel_source(*, computed_grid: bool = False, dependent: bool = False):
    """The ``CudaKernelSource`` of a kernel that does nothing, with one pointer and one int parameter.

    Its grid is ``(1, 1, 1)``, or with ``computed_grid`` ``(cdiv(n, 32), 1, 1)`` (evaluated at each launch).
    ``dependent``: the kernel waits for the prior grids, so it goes through the dependent-launch path.
    """
    from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
    from anybit.dtypes import float32, int32
    from anybit.ir.expr import Var, cdiv

    return CudaKernelSource(
        name="anybit_empty",
        source=DEPENDENT_KERNEL if dependent else EMPTY_KERNEL,
        params=(KernelParam("x", "pointer", float32), KernelParam("n", "scalar", int32)),
        grid=(cdiv(Var("n", int32), 32), 1, 1) if computed_grid else (1, 1, 1),
        block_threads=32,
        dynamic_shared_bytes=0,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(("x", 16),),
        waits_for_prior_grids=dependent,
    )


def host_microseconds(call: Callable[[], object], *, launches: int = 2000, batch: int = 50) -> float:
    """Host µs per ``call``: batches of ``batch`` calls timed with ``perf_counter``, each followed by an
    uncounted synchronisation, so the launch queue never fills and the GPU never sets the pace."""
    import torch

    for _ in range(batch):  # warm-up
        call()
    torch.cuda.synchronize()
    total = 0.0
    done = 0
    while done < launches:
        started = time.perf_counter()
        for _ in range(batch):
            call()
        total += time.perf_counter() - started
        done += batch
        torch.cuda.synchronize()
    return total / done * 1e6


def measure_launch_overhead(*, launches: int = 20000, batch: int = 200) -> dict:
    """Host microseconds per launch of an empty anybit kernel and of the baselines (see the module doc)."""
    import torch

    from anybit.runtime.compiler import compile_source
    from anybit.runtime.launch import BACKENDS, current_stream, launch_backend

    def timed(call: Callable[[], None]) -> float:
        return host_microseconds(call, launches=launches, batch=batch)

    compiled = compile_source(empty_kernel_source())
    computed = compile_source(empty_kernel_source(computed_grid=True))
    dependent = compile_source(empty_kernel_source(dependent=True))
    x = torch.empty(256, device="cuda")
    one = torch.ones(1, device="cuda")
    empty = torch.empty(0, device="cuda")
    compiled(x, 1)
    computed(x, 1)
    dependent(x, 1)
    torch.cuda.synchronize()
    launcher = compiled.launcher
    chosen = launcher.backend.name
    device = torch.cuda.current_device()
    loaded = compiled._load(device)
    packing = launcher.packing()  # kept alive here: use_backend below gives the launcher fresh buffers
    address = packing.address
    stream = current_stream(device)
    results = {
        "gpu": torch.cuda.get_device_name(device),
        "launches": launches,
        "batch": batch,
        "launch_backend": chosen,
        "anybit_launch_us": timed(lambda: compiled(x, 1)),
        "anybit_launch_computed_grid_us": timed(lambda: computed(x, 1)),
        "anybit_launch_dependent_us": timed(lambda: dependent(x, 1)),
        "anybit_checks_us": timed(lambda: launcher.check((x, 1), device)),
        "torch_add_us": timed(lambda: one.add_(1)),
        "torch_empty_add_us": timed(lambda: empty.add_(1)),
    }
    for name in BACKENDS:
        try:
            backend = launch_backend(name)
        except (OSError, ImportError, AttributeError, RuntimeError) as error:
            results[f"anybit_launch_{name}_us"] = f"unavailable: {error}"
            results[f"cuLaunchKernel_{name}_us"] = f"unavailable: {error}"
            continue
        launcher.use_backend(name)
        compiled(x, 1)
        results[f"anybit_launch_{name}_us"] = timed(lambda: compiled(x, 1))
        dependent.launcher.use_backend(name)
        dependent(x, 1)
        results[f"anybit_launch_dependent_{name}_us"] = timed(lambda: dependent(x, 1))
        function, raw_stream, call = backend.function(loaded), backend.stream(stream), backend.call

        def bare(function=function, raw_stream=raw_stream, call=call) -> None:
            call(function, 1, 1, 1, 32, 1, 1, 0, raw_stream, address, 0)

        results[f"cuLaunchKernel_{name}_us"] = timed(bare)
    launcher.use_backend(chosen)
    dependent.launcher.use_backend(chosen)
    torch.cuda.synchronize()
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the measurement as a table; with ``--out FILE`` also write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--launches", type=int, default=20000)
    options = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: the launch overhead can only be measured on a GPU")
        return 1
    results = measure_launch_overhead(launches=options.launches)
    for key, value in results.items():
        print(f"{key:30s} {value:.2f}" if isinstance(value, float) else f"{key:30s} {value}")
    target = 10.0
    verdict = "meets" if results["anybit_launch_us"] <= target else "MISSES"
    print(f"anybit launch overhead {results['anybit_launch_us']:.2f} us {verdict} the {target:.0f} us target")
    if options.out:
        with open(options.out, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
