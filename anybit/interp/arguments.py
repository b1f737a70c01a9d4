"""Binding a launch's arguments to the program's parameters, with clear errors for wrong kinds."""

from __future__ import annotations

import inspect
import numbers

import numpy as np

from anybit.interp.errors import InterpreterError
from anybit.interp.memory import GlobalBuffer, Pointer
from anybit.interp.scalars import round_to
from anybit.ir.expr import PointerType, Var
from anybit.ir.statements import Program


def runtime_arguments(kernel: object, program: Program, args: tuple) -> tuple:
    """The arguments of ``program.params`` among a Script's call arguments (compile-time ones dropped)."""
    if len(args) == len(program.params):
        return args
    if hasattr(kernel, "parameters"):
        names = [parameter.name for parameter in kernel.parameters()]
    else:
        names = [p for p in inspect.signature(kernel.__call__).parameters if p != "self"]
    by_name = dict(zip(names, args, strict=False))
    missing = [p.name for p in program.params if p.name not in by_name]
    if len(names) != len(args) or missing:
        raise InterpreterError(
            f"cannot match {len(args)} arguments to the run-time parameters "
            f"({', '.join(p.name for p in program.params)}) of {program.name}"
        )
    return tuple(by_name[p.name] for p in program.params)


def _array_bytes(param: Var, value: object) -> np.ndarray:
    """The raw bytes behind an array argument, as a writeable-if-possible uint8 view."""
    if type(value).__module__.startswith("torch"):
        if getattr(value, "device", None) is not None and value.device.type != "cpu":
            raise InterpreterError(
                f"argument {param.name}: the interpreter runs on the CPU; expected a CPU tensor, got one on "
                f"{value.device}"
            )
        if not value.is_contiguous():
            raise InterpreterError(f"argument {param.name}: expected a contiguous tensor")
        import torch

        return value.detach().reshape(-1).view(torch.uint8).numpy()
    if not isinstance(value, np.ndarray):
        raise InterpreterError(
            f"argument {param.name}: expected a numpy array or CPU torch tensor for {param.type}, got "
            f"{type(value).__name__}"
        )
    if not value.flags.c_contiguous:
        raise InterpreterError(
            f"argument {param.name}: expected a C-contiguous array (its raw bytes are used)"
        )
    return value.reshape(-1).view(np.uint8)


def _check_element_type(param: Var, value: object) -> None:
    pointee = param.type.dtype
    element = getattr(value, "dtype", None)
    if pointee.is_packed or element is None:
        return  # packed types arrive as raw bytes (uint8) or their ml_dtypes/torch type
    if type(value).__module__.startswith("torch"):
        expected = pointee.torch_dtype
        ok = expected is None or element == expected
    else:
        ok = np.dtype(element) == pointee.numpy_dtype or np.dtype(element).itemsize * 8 == pointee.nbits
    if not ok:
        raise InterpreterError(
            f"argument {param.name}: expected {pointee.name} elements for {param.type}, "
            f"got an array of {element}"
        )


def bind(program: Program, args: tuple) -> dict[Var, object]:
    """Values of the program's parameters: pointers for arrays, rounded scalars for numbers."""
    if len(args) != len(program.params):
        raise InterpreterError(
            f"{program.name} takes {len(program.params)} run-time arguments "
            f"({', '.join(p.name for p in program.params)}), got {len(args)}"
        )
    env: dict[Var, object] = {}
    for param, value in zip(program.params, args, strict=True):
        if isinstance(param.type, PointerType):
            _check_element_type(param, value)
            buffer = GlobalBuffer(f"argument {param.name}", _array_bytes(param, value))
            env[param] = Pointer(buffer, 0, param.type.dtype)
        else:
            if isinstance(value, np.ndarray) and value.ndim == 0:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, numbers.Number):
                if not (param.type.kind == "bool" and isinstance(value, bool)):
                    raise InterpreterError(
                        f"argument {param.name}: expected a number for {param.type.name}, got {value!r}"
                    )
            if param.type.is_integer and not isinstance(value, numbers.Integral):
                raise InterpreterError(
                    f"argument {param.name}: expected an int for {param.type.name}, got {value!r}"
                )
            if param.type.is_integer and not param.type.min_value <= int(value) <= param.type.max_value:
                raise InterpreterError(f"argument {param.name}: {value} does not fit in {param.type.name}")
            env[param] = round_to(value, param.type)
    for param, divisor in program.divisibility:
        if int(env[param]) % divisor:
            raise InterpreterError(
                f"argument {param.name}: the kernel assumes {param.name} % {divisor} == 0 "
                f"(self.assume_divisible), got {int(env[param])}; pad it to a multiple of {divisor}"
            )
    return env
