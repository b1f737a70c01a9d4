"""A short report of the environment anybit runs in (``anybit info``)."""

from __future__ import annotations

import platform


def _version(module_name: str) -> str:
    try:
        module = __import__(module_name)
    except ImportError:
        return "not installed"
    return getattr(module, "__version__", "installed")


def _nvrtc_version() -> str:
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        return "not installed (pip install 'anybit[cuda]')"
    error, major, minor = nvrtc.nvrtcVersion()
    return f"{major}.{minor}" if error == nvrtc.nvrtcResult.NVRTC_SUCCESS else f"unavailable ({error})"


def _gpu() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    if not torch.cuda.is_available():
        return "none (kernels build, verify, interpret and compile to cubin; launching needs a GPU)"
    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, sm_{props.major}{props.minor}, {props.multi_processor_count} SMs"


def _launch_backend() -> str:
    """The launch backend a kernel's first load would take here, and why where it is not the first choice."""
    from anybit.runtime.launch import backend_choice

    try:
        chosen, unavailable = backend_choice()
    except (RuntimeError, ValueError) as error:
        return f"none ({error})"
    return chosen + (f" ({'; '.join(unavailable)})" if unavailable else "")


def environment_report() -> str:
    """Versions of anybit and its dependencies, the NVRTC version, the launch backend and the GPU, one per
    line."""
    import anybit

    rows = [
        ("anybit", anybit.__version__),
        ("python", platform.python_version()),
        ("numpy", _version("numpy")),
        ("ml_dtypes", _version("ml_dtypes")),
        ("torch", _version("torch")),
        ("nvrtc", _nvrtc_version()),
        ("launch", _launch_backend()),
        ("gpu", _gpu()),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
