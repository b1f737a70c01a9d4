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
import os
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from anybit.kernels import PackedLayout, PackedWeight, decode_matmul, dequantize_weight, gated_reference
from anybit.kernels.launch import default_decode_config, default_rows, rms_options
from anybit.ops import half_choice, int8_choice, route_choice
from anybit.ops.checks import raise_bad_input
from anybit.ops.dispatch import DECODE, DEQUANTIZE, threshold
from anybit.ops.path_choice import MEASURED_MAX_M, PATH_BUDGET_MS, path_chooser
from anybit.ops.tuning import DECODE_PARAMETERS, DecodeTuner, block_columns, m_bucket, tuner_for

_empty_like = torch.empty_like
_FUSED_EPS = (float, type(None))  # the rms_eps a bound fused launch is keyed by (anything else: the checks)


def output_shape(shape: torch.Size, width: int) -> tuple[int, ...]:
    """x's shape with its last extent replaced by ``width``. Indexing the common 2- and 3-D shapes is
    cheaper than ``(*shape[:-1], width)``, whose slice of a ``torch.Size`` made an eager call ~0.8 µs slower
    (CPU, torch 2.13) — about 2 µs on the H200 hosts, where the call's host-time target is 10 µs."""
    rank = len(shape)
    if rank == 2:
        return (shape[0], width)
    if rank == 3:
        return (shape[0], shape[1], width)
    return (*shape[:-1], width)


def rms_normalized(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x², last dim) + eps), in f32 and rounded once to x's dtype, as a Llama RMSNorm does
    before its weight (the torch form of the decode kernel's ``rms_eps`` prologue)."""
    wide = x.float()
    return (wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


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
        self.index = device.index if self.on_cuda else -1  # what x.get_device() gives for x on `device`
        # m -> launch function, one dictionary per (zeros, bias) variant: [has_zeros][has_bias]
        self._launches: tuple[tuple[dict, dict], tuple[dict, dict]] = (({}, {}), ({}, {}))
        # m -> the decode kernel's compiled kernel where no route took its place, [has_zeros][has_bias]
        self._compiled: tuple[tuple[dict, dict], tuple[dict, dict]] = (({}, {}), ({}, {}))
        # m -> the bound launch of registered weights' calls (False: none can be made), [has_zeros][has_bias]
        self._bound: tuple[tuple[dict, dict], tuple[dict, dict]] = (({}, {}), ({}, {}))
        # (has_zeros, has_bias, m) -> the measured path, for decode_max_m < m ≤ MEASURED_MAX_M
        self._paths: dict[tuple[bool, bool, int], str] = {}
        # (has_zeros, has_bias, accumulate, rms_eps) -> m -> launch function of the fused kernels
        self._fused: dict[tuple[bool, bool, bool, float | None], dict[int, Callable[[tuple], None]]] = {}
        # the same key -> m -> the fused kernel's compiled kernel, and its bound launch (False: none)
        self._fused_compiled: dict[tuple[bool, bool, bool, float | None], dict[int, object]] = {}
        self._fused_bound: dict[tuple[bool, bool, bool, float | None], dict[int, object]] = {}
        # x's shape -> an empty tensor of the output's, which bound calls' outputs are made like (_new_output)
        self._templates: dict[torch.Size, torch.Tensor] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        x: torch.Tensor,
        data: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | None,
        bias: torch.Tensor | None,
        path: str | None = None,
        *,
        rms_eps: float | None = None,
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """y [..., N] = x [..., K] @ W^T (+ bias); ``path`` forces "decode" or "dequantize" (default: M).

        ``rms_eps``: x's rows normalised by their RMS first (a Llama RMSNorm whose weight was folded into
        W); ``into``: the product added to this [..., N] tensor in place (a residual stream), returned.
        """
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
        fused = rms_eps is not None or into is not None
        options = {}  # the fused options, passed on only where given
        if fused:
            self._check_fused(shape, rms_eps, into)
            options = {"rms_eps": rms_eps, "into": into}
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
                return self.decode_reference(x, data, scales, zeros, bias, **options)
            if x.data_ptr() & 15:
                x = x.clone()  # the kernel reads x with 16-byte vectors; a view may start anywhere
            y = into if into is not None else x.new_empty(output_shape(shape, self.width))
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
            if fused:
                self._fused_launch(args, zeros is not None, bias is not None, into is not None, rms_eps)
                return y
            launch = self._launches[zeros is not None][bias is not None].get(m)
            if launch is None:
                self._first_launch(args, has_zeros=zeros is not None, has_bias=bias is not None)
            else:
                launch(args)
            return y
        if path == DEQUANTIZE:
            return self.dequantize_matmul(x, data, scales, zeros, bias, **options)
        raise ValueError(f"quantized_matmul: expected path 'decode', 'dequantize' or None, got {path!r}")

    def call_registered(
        self,
        x: torch.Tensor,
        data: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | None,
        bias: torch.Tensor | None,
        rms_eps: float | None = None,
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """y = x @ W^T (+ bias) for a weight :func:`~anybit.ops.matmul.quantized_matmul` registered (its
        tensors checked by ``check_packed_weight``, 16-byte aligned): the eager decode call; ``rms_eps`` and
        ``into`` as :meth:`__call__`'s (the fused kernels).

        x (dtype, device, K, contiguous, 16-byte aligned), a bias (dtype, [N], device, contiguous, 16-byte
        aligned) and ``into`` (dtype, x's leading shape and the width, device, contiguous, aligned) are
        checked here; the first call of an M binds its launch (:meth:`~anybit.runtime.launch.Launcher.bind`:
        the kernel's scalars and grid fixed, the tensors' addresses read without the launcher's per-tensor
        checks, which x, the bias, the output and the registered weight have passed), later ones launch
        through it. Anything else — rows past the decode threshold, an argument that fails a check — takes
        :meth:`__call__`, which says what is wrong.
        """
        shape = x.shape
        if (
            x.dtype is self.act_dtype
            and shape
            and shape[-1] == self.k
            and x.get_device() == self.index
            and x.is_contiguous()
            and (bias is None or self._bias_fits(bias))
        ):
            m = x.numel() // self.k
            if rms_eps is None and into is None:
                bound = self._bound[zeros is not None][bias is not None].get(m)
            elif type(rms_eps) in _FUSED_EPS and (into is None or self._into_fits(into, shape)):
                key = (zeros is not None, bias is not None, into is not None, rms_eps)
                bound = self._fused_bound.get(key, {}).get(m)
            else:
                bound = False
            if (bound or bound is None and self.on_cuda) and 0 < m <= threshold.decode_max_m:
                if not x.data_ptr() & 15:
                    z = scales if zeros is None else zeros  # the kernels' stand-ins for absent tensors
                    b = scales if bias is None else bias
                    if bound:
                        if into is None:
                            template = self._templates.get(shape)
                            y = _empty_like(template) if template is not None else self._new_output(x, shape)
                        else:
                            y = into
                        bound((x, data, scales, z, b, y, m, self.n, self.k))
                        return y
                    y = self(x, data, scales, zeros, bias, rms_eps=rms_eps, into=into)
                    args = (x, data, scales, z, b, y, m, self.n, self.k)
                    self._bind(args, zeros is not None, bias is not None, into is not None, rms_eps)
                    return y
        return self(x, data, scales, zeros, bias, rms_eps=rms_eps, into=into)

    def _new_output(self, x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """A new output for an x of ``shape``; keeps an empty tensor of the output's shape (outside a CUDA
        graph's capture), found by x's shape, as the template later outputs are made like:
        ``torch.empty_like`` takes ~0.5 µs less host time than an allocation from a shape, dtype and device,
        the lookup by x's shape ~0.1 less than making the output's shape (CPU, torch 2.13). One small tensor
        (≤ 16 rows) a shape."""
        out = output_shape(shape, self.width)
        if not (x.is_cuda and torch.cuda.is_current_stream_capturing()):
            self._templates[shape] = x.new_empty(out)
        return x.new_empty(out)

    def _bias_fits(self, bias: object) -> bool:
        """Whether ``bias`` can go to a bound launch as it is: a contiguous, 16-byte aligned [N] tensor of the
        activation dtype on the plan's device."""
        return (
            type(bias) is torch.Tensor
            and bias.dtype is self.act_dtype
            and bias.dim() == 1
            and bias.shape[0] == self.n
            and bias.get_device() == self.index
            and bias.is_contiguous()
            and not bias.data_ptr() & 15
        )

    def _into_fits(self, into: object, shape: torch.Size) -> bool:
        """Whether ``into`` can go to a bound launch as it is: a contiguous, 16-byte aligned tensor of the
        activation dtype on the plan's device, of x's leading shape and the weight's width."""
        return (
            type(into) is torch.Tensor
            and into.dtype is self.act_dtype
            and into.get_device() == self.index
            and into.shape == output_shape(shape, self.width)
            and into.is_contiguous()
            and not into.data_ptr() & 15
        )

    def _bind(
        self,
        args: tuple,
        has_zeros: bool,
        has_bias: bool,
        accumulate: bool = False,
        rms_eps: float | None = None,
    ) -> None:
        """Bind the kept launch of the decode launch's ``args`` (of its M, with or without zero points, bias,
        the residual add and the row RMS: the decode kernel, a fused one, or the route that took the decode
        kernel's place), or remember that none can be bound; nothing before that M's first launch."""
        m = args[DECODE_PARAMETERS.index("m")]
        with self._lock:
            if accumulate or rms_eps is not None:
                key = (has_zeros, has_bias, accumulate, rms_eps)
                launch = self._fused.get(key, {}).get(m)
                compiled = self._fused_compiled.get(key, {}).get(m)
                table = self._fused_bound.setdefault(key, {})
            else:
                launch = self._launches[has_zeros][has_bias].get(m)
                compiled = self._compiled[has_zeros][has_bias].get(m)
                table = self._bound[has_zeros][has_bias]
            if launch is None:
                return  # not launched yet (a CUDA graph's capture launches nothing new)
            if not binds_launches():
                bound = None
            elif isinstance(launch, route_choice.PreparedLaunch):
                bound = launch.bind(args)
            else:
                bound = bound_launch(compiled, args)
            table[m] = bound or False

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
        self, x: torch.Tensor, data: torch.Tensor, scales: torch.Tensor, zeros, bias, **fused
    ) -> torch.Tensor:
        """The decode kernel through :func:`anybit.kernels.decode_matmul` (the interpreter on the CPU)."""
        packed, into, rms_eps = self.packed(data, scales, zeros), fused.get("into"), fused.get("rms_eps")
        return decode_matmul(x, packed, bias, out=into, accumulate=into is not None, rms_eps=rms_eps)

    def dequantize_matmul(
        self, x: torch.Tensor, data: torch.Tensor, scales: torch.Tensor, zeros, bias, **fused
    ) -> torch.Tensor:
        """Dequantize the weight to the activation dtype, then ``F.linear`` (cuBLAS on the GPU); for a gated
        pair then silu(gate) · up (:func:`~anybit.kernels.gated_reference`).

        On the CPU the product runs in float32 and is rounded once to the activation dtype, as the GPU's
        fp32 accumulation does. ``fused``: ``rms_eps`` and ``into`` as :meth:`__call__` takes them (x
        normalised in f32 and rounded, as a Llama RMSNorm does; the product added to ``into``).
        """
        weight = dequantize_weight(self.packed(data, scales, zeros))
        rms_eps, into = fused.get("rms_eps"), fused.get("into")
        if rms_eps is not None:
            x = rms_normalized(x, rms_eps)
        if self.on_cuda:
            result = F.linear(x, weight, bias)
        else:
            result = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        if self.layout.gated:
            result = gated_reference(result)
        if into is not None:
            into += result.to(self.act_dtype)
            return into
        return result.to(self.act_dtype)

    def _first_launch(self, args: tuple, *, has_zeros: bool, has_bias: bool) -> None:
        """Choose (tune if needed) and compile the configuration for the launch ``args`` (in
        :data:`DECODE_PARAMETERS` order), launch it, keep its launcher for this M."""
        from anybit.runtime.compiler import launch_script

        with self._lock:
            tuner = tuner_for(self.layout, self.act_dtype, has_zeros, has_bias)
            config = tuner.select(args)
            if self.n % block_columns(config, self.layout):
                default = default_decode_config(self.layout)  # a stored config that cannot cover this N
                config = dataclasses.asdict(default)  # warps, stages and split, as the default chose them
            compiled = launch_script(tuner.instance(config), args)
            m = args[DECODE_PARAMETERS.index("m")]
            launch = launch_function(compiled)
            route = None
            if self.on_cuda and int8_choice.eligible(self.layout, self.act_dtype, m, has_bias):
                route = self._int8_route(args, launch, tuner.identity, has_zeros)
            if route is None and self.on_cuda and half_choice.eligible(self.layout, self.act_dtype, m):
                route = self._half_route(args, launch, tuner.identity, has_zeros, has_bias, config)
            self._launches[has_zeros][has_bias][m] = route or launch
            if route is None:
                self._compiled[has_zeros][has_bias][m] = compiled

    def _int8_route(
        self, args: tuple, decode_launch: Callable[[tuple], None], identity: str, has_zeros: bool
    ) -> Callable[[tuple], None] | None:
        """The int8 route's launch for this one-row call where it is the faster
        (:mod:`anybit.ops.int8_choice`: stored, else its configurations timed now against ``decode_launch``
        on these arguments), else None."""

        def route(config: dict) -> int8_choice.Int8RouteLaunch:
            return int8_choice.Int8RouteLaunch(self.layout, self.act_dtype, config, has_zeros, self.device)

        def candidates() -> list[dict]:
            return int8_choice.candidates(self.layout)

        chooser = int8_choice.int8_route_chooser(identity)
        return self._measured_route(
            chooser, [1, self.n, self.k], route, candidates, args, decode_launch, has_zeros
        )

    def _half_route(
        self,
        args: tuple,
        decode_launch: Callable[[tuple], None],
        identity: str,
        has_zeros: bool,
        has_bias: bool,
        decode_config: dict,
    ) -> Callable[[tuple], None] | None:
        """The bf16-through-fp16 route's launch for this call where it is the faster
        (:mod:`anybit.ops.half_choice`: stored, else its forms timed now against ``decode_launch`` in the
        fp16 decode kernel's recorded configuration, else in ``decode_config``, the bf16 kernel's, see
        :func:`~anybit.ops.half_choice.fp16_config`), else None."""
        m = args[DECODE_PARAMETERS.index("m")]

        def route(config: dict) -> half_choice.HalfRouteLaunch:
            kernel_config = {key: value for key, value in config.items() if key not in ("route", "factors")}
            return half_choice.HalfRouteLaunch(
                self.layout, kernel_config, has_zeros, has_bias, self.device, m, config["factors"]
            )

        def candidates() -> list[dict]:
            config = half_choice.fp16_config(self.layout, args, has_zeros, has_bias, decode_config)
            forms = half_choice.eligible_forms(self.layout, self.act_dtype, m)
            return [{"route": "half", "factors": form, **config} for form in forms]

        chooser = half_choice.half_route_chooser(identity)
        return self._measured_route(
            chooser, [m_bucket(m), self.n, self.k], route, candidates, args, decode_launch, has_zeros
        )

    def _measured_route(
        self,
        chooser: route_choice.RouteChooser,
        bucket: list,
        route: Callable[[dict], Callable[[tuple], None]],
        candidates: Callable[[], list[dict]],
        args: tuple,
        decode_launch: Callable[[tuple], None],
        has_zeros: bool,
    ) -> Callable[[tuple], None] | None:
        """``chooser``'s route for ``bucket`` where it is the faster — stored, else each of ``candidates()``
        (configurations; ``route(config)`` makes a launch) timed now against ``decode_launch`` on these
        arguments (:func:`~anybit.ops.route_choice.measure`) — compiled and kept; else None (while a CUDA
        graph is being captured nothing is timed or compiled)."""
        from anybit.ops.row_timing import row_arguments
        from anybit.runtime.device import current_arch

        def measure() -> list:
            routes = [(config, route(config)) for config in candidates()]
            route_choice.prebuild([launch for _, launch in routes], args)
            return route_choice.measure(decode_launch, routes, row_arguments(args, has_zeros))

        capturing = torch.cuda.is_current_stream_capturing()
        config = chooser.choose(bucket, current_arch(), None if capturing else measure)
        if config.get("route") != chooser.route:
            return None
        launch = route(config)
        if not capturing:
            launch(args)  # compiles both kernels and keeps their launchers (y written again, the same)
        return launch

    def _check_fused(self, shape: torch.Size, rms_eps: float | None, into: torch.Tensor | None) -> None:
        """Refuse fused options the kernels cannot take, naming the fix."""
        if rms_eps is not None and not (isinstance(rms_eps, float) and rms_eps > 0.0):
            raise ValueError(f"quantized_matmul: expected rms_eps a positive float or None, got {rms_eps!r}")
        if rms_eps is not None and self.layout.operand != "a":
            raise ValueError(
                "quantized_matmul: rms_eps needs the weight packed as the A operand (choose_layout's default "
                "where N is a multiple of 16)"
            )
        if into is None:
            return
        if self.layout.gated:
            raise ValueError("quantized_matmul: a gated pair's product cannot be added into a tensor")
        expected = (*shape[:-1], self.width)
        if (
            not isinstance(into, torch.Tensor)
            or tuple(into.shape) != expected
            or into.dtype is not self.act_dtype
            or into.device != self.device
            or not into.is_contiguous()
        ):
            raise ValueError(
                f"quantized_matmul: expected the tensor to add into contiguous {self.act_dtype} "
                f"{list(expected)} on {self.device}, got {getattr(into, 'dtype', type(into).__name__)} "
                f"{list(getattr(into, 'shape', []))} on {getattr(into, 'device', '?')}"
            )

    def fused_tuner(
        self, m: int, has_zeros: bool, has_bias: bool, accumulate: bool, rms_eps: float | None
    ) -> DecodeTuner:
        """The tuner of the decode kernel with the residual add (``accumulate``) and/or the row RMS
        (``rms_eps``) folded in, for M rows of x."""
        fused = dict(accumulate=accumulate, rms_eps=rms_eps)
        if rms_eps is not None:
            fused.update(rms_options(m, default_rows(m), self.k))
        return tuner_for(self.layout, self.act_dtype, has_zeros, has_bias, **fused)

    def _fused_launch(
        self, args: tuple, has_zeros: bool, has_bias: bool, accumulate: bool, rms_eps: float | None
    ) -> None:
        """Launch the decode kernel with the residual add and/or the row RMS folded in, in the configuration
        tuned for that kernel at this M (timed on scratch outputs: ``accumulate`` reads y); its launcher kept
        per M."""
        from anybit.runtime.compiler import launch_script

        m = args[DECODE_PARAMETERS.index("m")]
        launches = self._fused.setdefault((has_zeros, has_bias, accumulate, rms_eps), {})
        launch = launches.get(m)
        if launch is not None:
            launch(args)
            return
        with self._lock:
            tuner = self.fused_tuner(m, has_zeros, has_bias, accumulate, rms_eps)
            y = args[DECODE_PARAMETERS.index("y")]
            scratch = list(args)
            scratch[DECODE_PARAMETERS.index("y")] = torch.empty_like(y)
            config = tuner.select(tuple(scratch))
            if self.n % block_columns(config, self.layout):
                config = dataclasses.asdict(default_decode_config(self.layout, m))
            instance = tuner.script_class(**tuner.fixed, **config)
            compiled = launch_script(instance, args)
            launches[m] = launch_function(compiled)
            self._fused_compiled.setdefault((has_zeros, has_bias, accumulate, rms_eps), {})[m] = compiled

    def decode_launch(self, m: int, *, has_zeros: bool, has_bias: bool) -> Callable[[tuple], None] | None:
        """The kept launch function for M rows (None before the first decode call of that M)."""
        return self._launches[has_zeros][has_bias].get(m)


PATHS = (DECODE, DEQUANTIZE)


def launch_function(compiled, order: tuple[str, ...] = DECODE_PARAMETERS) -> Callable[[tuple], None]:
    """The compiled kernel's launch, taking the arguments in ``order`` (the kernel's parameter names;
    default :data:`DECODE_PARAMETERS`)."""
    names = tuple(parameter.name for parameter in compiled.launcher.user_params)
    if names == order:
        return compiled.launcher.launch
    positions = tuple(order.index(name) for name in names)  # the code generator dropped some
    launch = compiled.launcher.launch
    return lambda args: launch(tuple(args[i] for i in positions))


def binds_launches() -> bool:
    """False when ``ANYBIT_BIND_LAUNCHES=0``: eager calls then launch through the checked launcher every time
    (for A/B measurements; read when an M's launch would be bound)."""
    return os.environ.get("ANYBIT_BIND_LAUNCHES", "1") != "0"


def bound_launch(
    compiled, args: tuple, order: tuple[str, ...] = DECODE_PARAMETERS
) -> Callable[[tuple], None] | None:
    """The compiled kernel's launch bound to ``args`` (in ``order``, the kernel's parameter names; default
    :data:`DECODE_PARAMETERS`): see :meth:`~anybit.runtime.launch.Launcher.bind`; None where it cannot be."""
    positions = tuple(order.index(parameter.name) for parameter in compiled.launcher.user_params)
    return compiled.launcher.bind(args, positions)


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
