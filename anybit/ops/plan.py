"""Per-weight launch state of :func:`anybit.ops.quantized_matmul`, so an eager call does almost nothing.

A :class:`WeightPlan` belongs to one weight layout (type, N, K, packing), activation dtype and device, and
holds no tensors: the weight's tensors come with each call, so the same plan serves the custom op (which sees
only tensors) and the eager wrapper (which sees the :class:`~anybit.kernels.PackedWeight`). The first decode
call of each M picks the tuned configuration (tuning its M bucket if the autotune cache has nothing),
compiles, and keeps the compiled kernel's launcher; later calls check a few attributes, allocate the output
and launch.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from anybit.kernels import PackedLayout, PackedWeight, decode_matmul, dequantize_weight, gated_reference
from anybit.kernels.launch import default_decode_config
from anybit.ops.checks import raise_bad_input
from anybit.ops.dispatch import DECODE, DEQUANTIZE, threshold
from anybit.ops.path_choice import MEASURED_MAX_M, PATH_BUDGET_MS, path_chooser
from anybit.ops.tuning import m_bucket, tuner_for


class WeightPlan:
    """Launch state of one (layout, activation dtype, device); call it with x and the weight's tensors."""

    def __init__(self, layout: PackedLayout, act_dtype: torch.dtype, device: torch.device) -> None:
        self.layout = layout
        self.act_dtype = act_dtype
        self.device = device
        self.n = layout.n
        self.k = layout.k
        self.width = layout.n // 2 if layout.gated else layout.n  # a gated pair gives silu(gate) · up
        self.on_cuda = device.type == "cuda"
        # m -> launch function, one dictionary per (zeros, bias) variant: [has_zeros][has_bias]
        self._launches: tuple[tuple[dict, dict], tuple[dict, dict]] = (({}, {}), ({}, {}))
        # (has_zeros, has_bias, m) -> the measured path, for decode_max_m < m ≤ MEASURED_MAX_M
        self._paths: dict[tuple[bool, bool, int], str] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        x: torch.Tensor,
        data: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | None,
        bias: torch.Tensor | None,
        path: str | None = None,
    ) -> torch.Tensor:
        """y [..., N] = x [..., K] @ W^T (+ bias); ``path`` forces "decode" or "dequantize" (default: M)."""
        shape = x.shape
        if x.dtype is not self.act_dtype or x.device != self.device or not shape or shape[-1] != self.k:
            self.bad_input(x, bias)
        if bias is not None and (
            bias.dtype is not self.act_dtype
            or bias.shape[0] != self.n
            or bias.dim() != 1
            or bias.device != self.device
            or not bias.is_contiguous()
        ):
            self.bad_input(x, bias)
        if not x.is_contiguous():
            x = x.contiguous()  # documented: a non-contiguous x is copied
        m = x.numel() // self.k
        if path is None:
            if m <= threshold.decode_max_m:
                path = DECODE
            elif m <= MEASURED_MAX_M and self.on_cuda:
                path = self._paths.get((zeros is not None, bias is not None, m)) or self.measured_path(
                    x, data, scales, zeros, bias
                )
            else:
                path = DEQUANTIZE
        if path == DECODE:
            if not self.on_cuda or m == 0:
                return self.decode_reference(x, data, scales, zeros, bias)
            if x.data_ptr() & 15:
                x = x.clone()  # the kernel reads x with 16-byte vectors; a view may start anywhere
            y = torch.empty((*shape[:-1], self.width), dtype=self.act_dtype, device=self.device)
            args = (
                x,
                data,
                scales,
                scales if zeros is None else zeros,
                scales if bias is None else bias,
                y,
                m,
                self.n,
                self.k,
            )
            launch = self._launches[zeros is not None][bias is not None].get(m)
            if launch is None:
                self._first_launch(args, has_zeros=zeros is not None, has_bias=bias is not None)
            else:
                launch(args)
            return y
        if path == DEQUANTIZE:
            return self.dequantize_matmul(x, data, scales, zeros, bias)
        raise ValueError(f"quantized_matmul: expected path 'decode', 'dequantize' or None, got {path!r}")

    def measured_path(self, x: torch.Tensor, data: torch.Tensor, scales: torch.Tensor, zeros, bias) -> str:
        """The faster path for this call's M bucket (:mod:`anybit.ops.path_choice`): stored, else timed now
        on these arguments (the decode kernel tuned and compiled first, outside the timing), else — while a
        CUDA graph is being captured, or with tuning disabled and nothing stored — dequantize + cuBLAS."""
        from anybit.runtime.device import current_arch

        m = x.numel() // self.k
        tuner = tuner_for(self.layout, self.act_dtype, zeros is not None, bias is not None)

        def measure() -> dict[str, float]:
            from anybit.runtime.timing import time_cuda

            runs = {path: (lambda path=path: self(x, data, scales, zeros, bias, path=path)) for path in PATHS}
            runs[DECODE]()
            return {path: time_cuda(run, budget_ms=PATH_BUDGET_MS) for path, run in runs.items()}

        capturing = torch.cuda.is_current_stream_capturing()
        chosen = path_chooser(tuner.identity).choose(
            [m_bucket(m), self.n, self.k], current_arch(), None if capturing else measure
        )
        if chosen is None:
            return DEQUANTIZE
        self._paths[(zeros is not None, bias is not None, m)] = chosen
        return chosen

    def bad_input(self, x: object, bias: object) -> None:
        """Raise the error describing what is wrong with ``x`` or ``bias``."""
        raise_bad_input(x, bias, layout=self.layout, act_dtype=self.act_dtype, device=self.device)

    def packed(self, data: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None) -> PackedWeight:
        """The weight's tensors as a :class:`~anybit.kernels.PackedWeight` of this plan's layout."""
        return PackedWeight(data, scales, zeros, self.layout, self.act_dtype)

    # -- the two paths -----------------------------------------------------------------------------------
    def decode_reference(
        self, x: torch.Tensor, data: torch.Tensor, scales: torch.Tensor, zeros, bias
    ) -> torch.Tensor:
        """The decode kernel through :func:`anybit.kernels.decode_matmul` (the interpreter on the CPU)."""
        return decode_matmul(x, self.packed(data, scales, zeros), bias)

    def dequantize_matmul(
        self, x: torch.Tensor, data: torch.Tensor, scales: torch.Tensor, zeros, bias
    ) -> torch.Tensor:
        """Dequantize the weight to the activation dtype, then ``F.linear`` (cuBLAS on the GPU); for a gated
        pair then silu(gate) · up (:func:`~anybit.kernels.gated_reference`).

        On the CPU the product runs in float32 and is rounded once to the activation dtype, as the GPU's
        fp32 accumulation does.
        """
        weight = dequantize_weight(self.packed(data, scales, zeros))
        if self.on_cuda:
            result = F.linear(x, weight, bias)
        else:
            result = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        if self.layout.gated:
            result = gated_reference(result)
        return result.to(self.act_dtype)

    def _first_launch(self, args: tuple, *, has_zeros: bool, has_bias: bool) -> None:
        """Choose (tune if needed) and compile the configuration for the launch ``args`` (in
        :data:`DECODE_PARAMETERS` order), launch it, keep its launcher for this M."""
        from anybit.runtime.compiler import launch_script

        with self._lock:
            tuner = tuner_for(self.layout, self.act_dtype, has_zeros, has_bias)
            config = tuner.select(args)
            if self.n % (config["warps"] * self.layout.n_per_warp):
                default = default_decode_config(self.layout)  # a stored config that cannot cover this N
                config = dataclasses.asdict(default)  # warps, stages and split, as the default chose them
            compiled = launch_script(tuner.instance(config), args)
            m = args[DECODE_PARAMETERS.index("m")]
            self._launches[has_zeros][has_bias][m] = _launch_function(compiled)

    def decode_launch(self, m: int, *, has_zeros: bool, has_bias: bool) -> Callable[[tuple], None] | None:
        """The kept launch function for M rows (None before the first decode call of that M)."""
        return self._launches[has_zeros][has_bias].get(m)


DECODE_PARAMETERS = ("x", "weight", "scales", "zeros", "bias", "y", "m", "n", "k")
PATHS = (DECODE, DEQUANTIZE)


def _launch_function(compiled) -> Callable[[tuple], None]:
    """The compiled kernel's launch, taking the arguments in :data:`DECODE_PARAMETERS` order."""
    names = tuple(parameter.name for parameter in compiled.launcher.user_params)
    if names == DECODE_PARAMETERS:
        return compiled.launcher.launch
    positions = tuple(DECODE_PARAMETERS.index(name) for name in names)  # the code generator dropped some
    launch = compiled.launcher.launch
    return lambda args: launch(tuple(args[i] for i in positions))


_plans: dict[tuple, WeightPlan] = {}
_plans_lock = threading.Lock()


def plan_for(layout: PackedLayout, act_dtype: torch.dtype, device: torch.device) -> WeightPlan:
    """The shared plan of (layout, activation dtype, device)."""
    key = (layout, act_dtype, device)
    plan = _plans.get(key)
    if plan is None:
        with _plans_lock:
            plan = _plans.setdefault(key, WeightPlan(layout, act_dtype, device))
    return plan


def clear_plans() -> None:
    """Forget every plan (their kept launchers too); the next calls choose and compile again."""
    _plans.clear()
