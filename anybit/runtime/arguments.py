"""Argument checking and packing: each kernel parameter gets a ctypes slot and a setter that fills it.

A setter takes ``(argument, device)``. Its fast path accepts the common case (a contiguous, aligned CUDA
torch tensor of an accepted dtype on ``device``; a Python number in range) with a few attribute reads; any
other argument goes to a slow path that converts what it can (``__cuda_array_interface__``, ``__dlpack__``,
numpy scalars) and otherwise raises a ``TypeError``/``ValueError`` that says what was expected, what was
given, and how to fix it.
"""

from __future__ import annotations

import ctypes
import numbers
from collections.abc import Callable

from anybit.dtypes import DataType

#: Torch dtypes accepted as storage for packed types (their bytes are passed through unchanged).
_PACKED_STORAGE = ("uint8", "int8", "int32")

#: ctypes of the C types the CUDA backend declares scalar parameters with (``anybit.cuda.expressions``).
_CTYPES_OF_C = {
    "bool": ctypes.c_bool,
    "int": ctypes.c_int32,
    "unsigned": ctypes.c_uint32,
    "long long": ctypes.c_int64,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
}

Setter = Callable[[object, int], None]


def accepted_torch_dtypes(dtype: DataType) -> frozenset:
    """The torch dtypes a pointer to elements of ``dtype`` accepts."""
    import torch

    accepted = set()
    if dtype.torch_dtype is not None:
        accepted.add(dtype.torch_dtype)
    if dtype.is_packed:
        accepted.update(getattr(torch, name) for name in _PACKED_STORAGE)
    return frozenset(accepted)


def scalar_slot(dtype: DataType) -> ctypes._SimpleCData:
    """A ctypes value of the C type the CUDA backend gives a scalar parameter of ``dtype``.

    The slot must match the kernel's C signature byte for byte (the driver copies the parameter's size from
    the slot), so the C type comes from the code generator's own table.
    """
    from anybit.cuda.expressions import scalar_ctype

    try:
        c_type = scalar_ctype(dtype)
    except NotImplementedError as error:
        raise TypeError(f"scalar kernel parameter of dtype {dtype.name}: {error}") from None
    kind = _CTYPES_OF_C.get(c_type)
    if kind is None:
        known = ", ".join(_CTYPES_OF_C)
        raise TypeError(
            f"scalar kernel parameter of dtype {dtype.name}: the CUDA backend declares it as "
            f"{c_type!r}, which the runtime cannot pack; expected one of {known}"
        )
    return kind()


def describe(argument: object) -> str:
    """A short description of an argument for error messages."""
    try:
        import torch

        if isinstance(argument, torch.Tensor):
            dtype = str(argument.dtype).removeprefix("torch.")
            return f"a {dtype} tensor of shape {tuple(argument.shape)} on {argument.device}"
    except ImportError:
        pass
    text = repr(argument)
    return f"{type(argument).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


# -- pointers --------------------------------------------------------------------------------------------


def pointer_setter(
    name: str, position: int, dtype: DataType, alignment: int, slot: ctypes.c_void_p
) -> Setter:
    """The setter of pointer parameter ``name`` (argument ``position``) to elements of ``dtype``."""
    import torch

    accepted = accepted_torch_dtypes(dtype)
    tensor_type = torch.Tensor

    def set_pointer(argument: object, device: int) -> None:
        # get_device() is -1 for a CPU tensor: with device >= 0 the comparison also proves it is on the GPU.
        if (
            device >= 0
            and isinstance(argument, tensor_type)
            and argument.get_device() == device
            and argument.dtype in accepted
            and argument.is_contiguous()
        ):
            address = argument.data_ptr()
            if address % alignment == 0:
                slot.value = address
                return
        slot.value = checked_pointer(argument, device, name, position, dtype, alignment, accepted)

    return set_pointer


def checked_pointer(
    argument: object, device: int, name: str, position: int, dtype: DataType, alignment: int, accepted
) -> int:
    """Check a pointer argument thoroughly; return its device address or raise, listing every problem."""
    where = f"pointer parameter '{name}' (argument {position + 1})"
    tensor = _as_tensor(argument, where)
    problems = []
    if not tensor.is_cuda:
        problems.append(f"it is on {tensor.device}, expected a CUDA tensor: move it with .cuda()")
    elif device >= 0 and tensor.get_device() != device:
        problems.append(
            f"it is on cuda:{tensor.get_device()} but the kernel launches on the current device "
            f"cuda:{device}: launch inside `with torch.cuda.device({tensor.get_device()}):` or move it"
        )
    if tensor.dtype not in accepted:
        names = " or ".join(sorted(str(t).removeprefix("torch.") for t in accepted)) or "(none)"
        hint = " (packed codes as uint8/int8/int32 storage)" if dtype.is_packed else ""
        problems.append(f"expected dtype {names} for elements of {dtype.name}{hint}, got {tensor.dtype}")
    if not tensor.is_contiguous():
        problems.append(
            f"it is not contiguous (shape {tuple(tensor.shape)}, strides {tensor.stride()}): pass "
            ".contiguous()"
        )
    address = tensor.data_ptr()
    if address % alignment:
        problems.append(
            f"its data pointer {address:#x} is not a multiple of {alignment} bytes, which the kernel "
            "needs for vector accesses: a view at an offset misaligns; pass .clone() or a view at an "
            "aligned offset"
        )
    if problems:
        wrong_dtype = tensor.dtype not in accepted
        message = f"{where}, got {describe(tensor)}: " + "; ".join(problems)
        raise TypeError(message) if wrong_dtype else ValueError(message)
    if device < 0:
        raise RuntimeError("no CUDA GPU is available: anybit compiles without a GPU, but launching needs one")
    return address


def _as_tensor(argument: object, where: str):
    import torch

    if isinstance(argument, torch.Tensor):
        return argument
    if hasattr(argument, "__cuda_array_interface__"):
        return torch.as_tensor(argument, device="cuda")
    if hasattr(argument, "__dlpack__"):
        return torch.from_dlpack(argument)
    raise TypeError(
        f"{where}: expected a torch CUDA tensor (or an object with __cuda_array_interface__ or __dlpack__), "
        f"got {describe(argument)}"
    )


# -- scalars ---------------------------------------------------------------------------------------------


def scalar_setter(name: str, position: int, dtype: DataType, slot, divisor: int = 1) -> Setter:
    """The setter of scalar parameter ``name`` (argument ``position``) of ``dtype``.

    ``divisor`` > 1: the generated code assumes the value is a multiple of it (``self.assume_divisible``).
    """
    if dtype.is_integer:
        low, high = int(dtype.min_value), int(dtype.max_value)

        def set_integer(argument: object, device: int) -> None:
            if type(argument) is int and low <= argument <= high and argument % divisor == 0:
                slot.value = argument
                return
            value = checked_integer(argument, name, position, dtype, low, high)
            if value % divisor:
                raise ValueError(
                    f"{_scalar_where(name, position, dtype)}: the kernel assumes a multiple of {divisor} "
                    f"(self.assume_divisible), got {value}; pad that dimension to a multiple of {divisor}"
                )
            slot.value = value

        return set_integer
    if dtype.is_float:

        def set_float(argument: object, device: int) -> None:
            if type(argument) is float:
                slot.value = argument
                return
            slot.value = checked_float(argument, name, position, dtype)

        return set_float

    def set_bool(argument: object, device: int) -> None:
        if argument is True or argument is False:
            slot.value = argument
            return
        slot.value = checked_bool(argument, name, position)

    return set_bool


def _scalar_where(name: str, position: int, dtype: DataType) -> str:
    return f"scalar parameter '{name}' (argument {position + 1}, {dtype.name})"


def checked_integer(argument: object, name: str, position: int, dtype: DataType, low: int, high: int) -> int:
    """An integer scalar argument, or a clear error."""
    where = _scalar_where(name, position, dtype)
    if isinstance(argument, bool) or not isinstance(argument, numbers.Integral):
        hint = " (.item() reads a tensor's value but synchronises)" if hasattr(argument, "item") else ""
        raise TypeError(f"{where}: expected a Python int, got {describe(argument)}{hint}")
    value = int(argument)
    if not low <= value <= high:
        raise ValueError(f"{where}: expected an int in [{low}, {high}], got {value}")
    return value


def checked_float(argument: object, name: str, position: int, dtype: DataType) -> float:
    """A float scalar argument (ints accepted), or a clear error."""
    if isinstance(argument, bool) or not isinstance(argument, numbers.Real):
        raise TypeError(
            f"{_scalar_where(name, position, dtype)}: expected a Python float, got {describe(argument)}"
        )
    return float(argument)


def checked_bool(argument: object, name: str, position: int) -> bool:
    """A bool scalar argument (numpy bools and the ints 0/1 accepted), or a clear error."""
    if isinstance(argument, numbers.Integral) and int(argument) in (0, 1):
        return bool(argument)
    if type(argument).__name__ == "bool_":
        return bool(argument)
    raise TypeError(
        f"scalar parameter '{name}' (argument {position + 1}, boolean): expected a bool, got "
        f"{describe(argument)}"
    )
