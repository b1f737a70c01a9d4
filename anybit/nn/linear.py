"""``QuantizedLinear``: a drop-in ``torch.nn.Linear`` whose weight is packed at any 1–8 bits.

The module holds the :class:`~anybit.kernels.PackedWeight`'s tensors as buffers — ``packed`` (the bytes),
``scales``, ``zeros`` (unsigned types with zero points only) and ``input_permutation`` (act-order checkpoints
only) — plus ``bias``, so ``.to()``, ``state_dict()`` and ``load_state_dict()`` move and save the packed form,
never a float weight. The weight type, group size, activation dtype and packing (the
:class:`~anybit.kernels.PackedLayout`'s fields) travel as the module's extra state, so a layer loads in the
packing it was saved with even after :func:`anybit.kernels.choose_layout`'s default changes.

``forward`` calls :func:`anybit.ops.quantized_matmul`: the GPU kernels for CUDA tensors, the interpreter on
the CPU (exact, but slow: tiny layers only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

import anybit
from anybit import kernels, ops
from anybit.kernels.layout import MAX_BYTES_PER_THREAD

# The kernels take float16 or bfloat16 activations; the scales, zeros and bias are stored in the same dtype.
ACTIVATION_DTYPES = (torch.float16, torch.bfloat16)

# The tensors that make up the packed weight; optional ones are None when absent (and then not saved).
PACKED_BUFFERS = ("packed", "scales", "zeros", "input_permutation")
#: Version of the saved packed form: 3 since every layer records its packing (the default packing changed
#: to operand "a"); version 2 files (2- and 4-bit codes pair-interleaved) name their packing only when it
#: was not that version's default, operand "b", and load as such; version 1 files hold the plain order and
#: are refused rather than misread.
STATE_VERSION = 6
READABLE_STATE_VERSIONS = (2, 3, 4, 5, 6)
#: The PackedLayout fields a saved layer records (beyond type, group size and shape); version 4 adds
#: ``gated`` (a gated pair, :mod:`anybit.kernels.gated`), False in older files; version 5 adds ``planes``
#: (the bit-plane widths, a list; empty: codes stored whole), empty in older files (they packed codes whole);
#: version 6 adds ``top_plane_stride`` (a top plane's bit spacing), 1 in older files.
PACKING_FIELDS = ("k_chunk", "n_per_warp", "bytes_per_thread", "operand")
GATED_FIELD = "gated"
PLANES_FIELD = "planes"
STRIDE_FIELD = "top_plane_stride"


def default_act_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """The activation dtype for a layer whose float weight has ``weight_dtype``: itself for fp16/bf16,
    else float16 (the kernels compute in fp16 or bf16 only)."""
    return weight_dtype if weight_dtype in ACTIVATION_DTYPES else torch.float16


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} B"


class QuantizedLinear(nn.Module):
    """y = x @ Wᵀ + b with W [out_features, in_features] quantized group-wise to a 1–8-bit anybit type.

    Build one with :meth:`from_linear` (quantize a float layer), :meth:`from_quantized` (codes, scales and
    zeros you already have, e.g. from a GPTQ/AWQ checkpoint) or :meth:`from_packed`. The plain constructor
    makes an empty layer of the right shape (buffers allocated, contents undefined) to load a state dict into.

    Parameters
    ----------
    in_features, out_features
        K and N, as for ``torch.nn.Linear``.
    bias
        Whether the layer has a bias.
    dtype
        The weight type: an anybit 1–8-bit type or its name (``"int4"``, ``"uint4"``, ``"float6_e3m2"``...).
    group_size
        Consecutive input features sharing one scale; ``-1`` for one scale per output feature.
    zero_point
        Whether the layer has zero points (unsigned types only). None: True for unsigned types.
    act_dtype
        torch.float16 or torch.bfloat16: the dtype the kernels compute in (inputs are cast to it and outputs
        back to the input's dtype).
    act_order
        Whether the layer permutes its input features first (GPTQ act-order checkpoints).
    device
        Where the buffers live.

    Raises
    ------
    ValueError
        For a shape, group size or type the kernels cannot take (the message names the required multiples).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = "int4",
        group_size: int = 128,
        zero_point: bool | None = None,
        act_dtype: torch.dtype = torch.float16,
        act_order: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self._configure(dtype, group_size, act_dtype)
        if zero_point is None:
            zero_point = self.weight_dtype.kind == "uint"
        groups = in_features // self.layout.group_size
        self.register_buffer(
            "packed", torch.empty(self.layout.packed_shape, dtype=torch.uint8, device=device)
        )
        self.register_buffer("scales", torch.empty(groups, out_features, dtype=act_dtype, device=device))
        zeros = torch.empty(groups, out_features, dtype=act_dtype, device=device) if zero_point else None
        self.register_buffer("zeros", zeros)
        permutation = torch.arange(in_features, device=device) if act_order else None
        self.register_buffer("input_permutation", permutation)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=act_dtype, device=device), False)
        else:
            self.register_parameter("bias", None)

    def _configure(self, dtype: Any, group_size: int, act_dtype: torch.dtype) -> None:
        """Set the weight type, group size, activation dtype and packing (validated by choose_layout)."""
        if act_dtype not in ACTIVATION_DTYPES:
            raise ValueError(f"expected act_dtype torch.float16 or torch.bfloat16, got {act_dtype}")
        weight_dtype = anybit.dtype(dtype)
        try:
            layout = kernels.choose_layout(
                weight_dtype, self.out_features, self.in_features, group_size, act_dtype=act_dtype
            )
        except ValueError as error:
            raise ValueError(
                f"QuantizedLinear(in_features={self.in_features}, out_features={self.out_features}, "
                f"dtype={weight_dtype.name}, group_size={group_size}): {error}"
            ) from error
        self.weight_dtype = weight_dtype
        self.group_size = layout.group_size
        self.act_dtype = act_dtype
        self.layout = layout

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_packed(
        cls,
        packed: kernels.PackedWeight,
        bias: torch.Tensor | None = None,
        *,
        input_permutation: torch.Tensor | None = None,
    ) -> QuantizedLinear:
        """Wrap an already packed weight (its tensors are used as they are, not copied).

        ``input_permutation`` (int64 [K]) makes ``forward`` compute ``x[..., input_permutation] @ Wᵀ``: the
        weight's column j then belongs to original input feature ``input_permutation[j]`` (act-order).
        """
        layout = packed.layout
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = layout.k, layout.n
        layer._configure(layout.dtype, layout.group_size, packed.act_dtype)
        layer.layout = layout  # keep the caller's packing, which may differ from the default
        layer.register_buffer("packed", packed.data)
        layer.register_buffer("scales", packed.scales)
        layer.register_buffer("zeros", packed.zeros)
        if input_permutation is not None:
            if tuple(input_permutation.shape) != (layout.k,):
                raise ValueError(
                    f"expected input_permutation of shape [{layout.k}], got {list(input_permutation.shape)}"
                )
            input_permutation = input_permutation.to(device=packed.data.device, dtype=torch.int64)
        layer.register_buffer("input_permutation", input_permutation)
        if bias is not None:
            if tuple(bias.shape) != (layout.n,):
                raise ValueError(f"expected a bias of shape [{layout.n}], got {list(bias.shape)}")
            bias = bias.detach().to(device=packed.data.device, dtype=packed.act_dtype)
            layer.bias = nn.Parameter(bias, requires_grad=False)
        else:
            layer.register_parameter("bias", None)
        return layer

    @classmethod
    def from_quantized(
        cls,
        quantized: kernels.QuantizedWeight,
        bias: torch.Tensor | None = None,
        *,
        input_permutation: torch.Tensor | None = None,
    ) -> QuantizedLinear:
        """Pack a :class:`~anybit.kernels.QuantizedWeight` (codes [N, K], scales, zeros) into a layer."""
        n, k = quantized.codes.shape
        try:
            layout = kernels.choose_layout(
                quantized.dtype, n, k, quantized.group_size, act_dtype=quantized.act_dtype
            )
        except ValueError as error:
            raise ValueError(
                f"QuantizedLinear(in_features={k}, out_features={n}, dtype={quantized.dtype.name}, "
                f"group_size={quantized.group_size}): {error}"
            ) from error
        packed = kernels.pack(quantized, layout=layout)
        return cls.from_packed(packed, bias, input_permutation=input_permutation)

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        dtype: Any = "int4",
        group_size: int = 128,
        zero_point: bool | None = None,
        *,
        act_dtype: torch.dtype | None = None,
        operand: str | None = None,
        gated: bool | None = None,
        planar: bool | None = None,
    ) -> QuantizedLinear:
        """Quantize a ``torch.nn.Linear`` (round to nearest, group-wise) on the device its weight is on.

        Parameters
        ----------
        linear
            The float layer; it is not modified.
        dtype, group_size, zero_point
            As for the constructor.
        act_dtype
            Default: the linear's dtype when it is float16 or bfloat16, else float16.
        operand
            The packing (:func:`anybit.kernels.choose_layout`): "a" (the default where N is a multiple of 16),
            the weight as the m16 tensor-core operand for the transposed decode kernel, or "b", the weight as
            the n8 operand (docs/quantized-matmul.md).
        gated
            The linear is a gated pair (gate and up rows interleaved, :mod:`anybit.kernels.gated`): the layer
            then returns silu(gate) · up, [..., out_features / 2]. Default: the marker
            ``fuse_projections(..., gated_mlp=True)`` sets on such a linear.
        planar
            Store 3-, 5- and 6-bit codes as bit planes (:func:`anybit.kernels.choose_layout`): True forces
            them, False forbids them, None follows the packing's default.

        Raises
        ------
        ValueError
            Before any work, for a shape the kernels cannot take (naming the multiples they need).
        """
        weight = linear.weight.detach()
        act_dtype = act_dtype or default_act_dtype(weight.dtype)
        n, k = weight.shape
        if gated is None:
            from anybit.nn.fuse import GATED_MARKER

            gated = bool(getattr(linear, GATED_MARKER, False))
        try:  # fail before quantizing: the packing decides which shapes are possible
            layout = kernels.choose_layout(
                dtype, n, k, group_size, operand=operand, gated=gated, planar=planar, act_dtype=act_dtype
            )
        except ValueError as error:
            raise ValueError(
                f"QuantizedLinear.from_linear(in_features={k}, out_features={n}, dtype={dtype}, "
                f"group_size={group_size}): {error}"
            ) from error
        quantized = kernels.quantize(
            weight, dtype, group_size=group_size, zero_point=zero_point, act_dtype=act_dtype
        )
        packed = kernels.pack(quantized, layout=layout)
        return cls.from_packed(packed, linear.bias)

    # --- use ------------------------------------------------------------------------------------------

    @property
    def packed_weight(self) -> kernels.PackedWeight:
        """The packed weight over this module's current buffers (no copy).

        The same object is returned while the buffers stay the same: ``anybit.ops`` remembers its per-weight
        plan by object identity, so a new object per call would redo that work on every forward.
        """
        cached = self.__dict__.get("_packed_weight")
        if (
            cached is None
            or cached.data is not self.packed
            or cached.scales is not self.scales
            or cached.zeros is not self.zeros
            or cached.layout is not self.layout
            or cached.act_dtype is not self.act_dtype
        ):
            cached = kernels.PackedWeight(self.packed, self.scales, self.zeros, self.layout, self.act_dtype)
            self.__dict__["_packed_weight"] = cached
        return cached

    @property
    def zero_point(self) -> bool:
        """Whether the layer has zero points."""
        return self.zeros is not None

    @property
    def act_order(self) -> bool:
        """Whether the input features are permuted before the matmul (act-order checkpoints)."""
        return self.input_permutation is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in_features]`` → ``[..., out_features]`` in x's dtype (computed in ``act_dtype``)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"QuantizedLinear: expected input [..., {self.in_features}], got {list(x.shape)}"
            )
        if self.input_permutation is not None:
            x = x.index_select(-1, self.input_permutation)
        out_dtype = x.dtype
        if out_dtype != self.act_dtype:
            x = x.to(self.act_dtype)
        y = ops.quantized_matmul(x, self.packed_weight, self.bias)
        return y if y.dtype == out_dtype else y.to(out_dtype)

    def quantized(self) -> kernels.QuantizedWeight:
        """The natural quantized weight (codes [N, K], in the permuted input order for act-order layers)."""
        return kernels.unpack(self.packed_weight)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight [out_features, in_features] the layer computes with, in the original input
        order (act-order permutations undone)."""
        weight = kernels.dequantize(self.quantized())
        if self.input_permutation is None:
            return weight
        original = torch.empty_like(weight)
        original[:, self.input_permutation] = weight
        return original

    def to_linear(self) -> nn.Linear:
        """A float ``torch.nn.Linear`` with the dequantized weight (in ``act_dtype``): the reference."""
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.packed.device,
            dtype=self.act_dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(self.dequantize())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    @property
    def nbytes(self) -> int:
        """Bytes of the layer's tensors: packed weight, scales, zeros, permutation and bias."""
        tensors = [self.packed, self.scales, self.zeros, self.input_permutation, self.bias]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight, scales and zeros included (bias and permutation not)."""
        tensors = [self.packed, self.scales, self.zeros]
        stored = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return 8 * stored / (self.in_features * self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, "
            f"dtype={self.weight_dtype.name}, group_size={self.group_size}, zero_point={self.zero_point}, "
            f"act_order={self.act_order}, act_dtype={str(self.act_dtype).removeprefix('torch.')}, "
            f"bytes={format_bytes(self.nbytes)} ({self.bits_per_weight:.2f} bits/weight)"
        )

    # --- state: dtype changes, saving and loading ------------------------------------------------------

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """Moves follow ``fn``; dtype changes keep the packed form consistent.

        ``model.half()`` / ``model.to(torch.bfloat16)`` switch the activation dtype (scales, zeros and bias
        follow); a conversion to a dtype the kernels cannot compute in (``model.float()``) is undone for the
        packed tensors, which is exact because float32 holds every float16/bfloat16 value.
        """
        super()._apply(fn, recurse)
        if self.scales.dtype in ACTIVATION_DTYPES:
            self.act_dtype = self.scales.dtype
        for name in ("scales", "zeros"):
            tensor = getattr(self, name)
            if tensor is not None and tensor.dtype != self.act_dtype:
                setattr(self, name, tensor.to(self.act_dtype))
        if self.bias is not None and self.bias.dtype != self.act_dtype:
            self.bias = nn.Parameter(self.bias.detach().to(self.act_dtype), requires_grad=False)
        return self

    def get_extra_state(self) -> dict[str, Any]:
        """What the buffers do not say: the weight type, group size, activation dtype and packing."""
        return {
            "version": STATE_VERSION,
            "dtype": self.weight_dtype.name,
            "group_size": self.group_size,
            "act_dtype": str(self.act_dtype).removeprefix("torch."),
            "packing": {
                **{name: getattr(self.layout, name) for name in (*PACKING_FIELDS, GATED_FIELD)},
                PLANES_FIELD: list(self.layout.planes),
                STRIDE_FIELD: self.layout.top_plane_stride,
            },
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Adopt a saved layer's type, group size, activation dtype and packing (a version 2 state without
        a packing has that version's default: operand "b", warp tiles of at most 64 bytes a thread; states
        before version 5 hold codes stored whole, ``planes=()``, and before version 6 plain top planes)."""
        version = state.get("version") if isinstance(state, dict) else None
        if version not in READABLE_STATE_VERSIONS:
            raise ValueError(
                f"QuantizedLinear: expected extra state version {STATE_VERSION}, got {state!r}; a layer "
                "saved by an older anybit packs its codes in another order: quantize (or import) it again"
            )
        packing = state.get("packing")
        if packing is None and version >= 3:
            raise ValueError(f"QuantizedLinear: the saved state {state!r} lacks its packing")
        missing = [name for name in PACKING_FIELDS if packing is not None and name not in packing]
        if missing:  # checked before anything changes: a refused state leaves the layer as it was
            raise ValueError(f"QuantizedLinear: the saved packing {packing!r} lacks {missing}")
        planes = packing.get(PLANES_FIELD, []) if packing is not None and version >= 5 else []
        if not isinstance(planes, (list, tuple)) or not all(isinstance(w, int) for w in planes):
            raise ValueError(f"QuantizedLinear: expected the saved planes a list of ints, got {planes!r}")
        before = (self.weight_dtype, self.group_size, self.act_dtype, self.layout)
        try:
            self._configure(state["dtype"], state["group_size"], getattr(torch, state["act_dtype"]))
            if packing is None:  # version 2, saved with its default packing (operand "b", codes whole, 64 B)
                self.layout = kernels.choose_layout(
                    self.weight_dtype,
                    self.out_features,
                    self.in_features,
                    self.group_size,
                    operand="b",
                    planar=False,
                    max_bytes_per_thread=MAX_BYTES_PER_THREAD,
                )
            else:
                fields = {name: packing[name] for name in PACKING_FIELDS}
                fields[GATED_FIELD] = bool(packing.get(GATED_FIELD, False))  # absent before version 4
                fields[PLANES_FIELD] = tuple(planes)  # before version 5 the codes were packed whole
                fields[STRIDE_FIELD] = int(packing.get(STRIDE_FIELD, 1)) if version >= 6 else 1
                self.layout = dataclasses.replace(self.layout, **fields)
        except ValueError:  # a refused state leaves the layer as it was
            self.weight_dtype, self.group_size, self.act_dtype, self.layout = before
            raise

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # A saved layer may differ from this one in type (so in packed shape), in having zero points or a
        # permutation, and in scale dtype: take the saved tensors' shapes and dtypes rather than refusing
        # them, as the packed form is only meaningful as a whole.
        device = self.packed.device
        for name in PACKED_BUFFERS:
            key = prefix + name
            if key in state_dict:
                saved = state_dict[key]
                current = getattr(self, name)
                if current is None or current.shape != saved.shape or current.dtype != saved.dtype:
                    self._buffers[name] = torch.empty_like(saved, device=device)
            elif name in ("zeros", "input_permutation") and prefix + "packed" in state_dict:
                self._buffers[name] = None
        bias_key = prefix + "bias"
        if self.bias is not None and bias_key in state_dict and state_dict[bias_key].dtype != self.bias.dtype:
            self.bias = nn.Parameter(self.bias.detach().to(state_dict[bias_key].dtype), requires_grad=False)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if device.type == "cuda":
            # The copies just made are kernels; the decode kernel reads the weight before waiting for the
            # kernel ahead of it (wait_prior_grids), so they must be complete before the first forward.
            torch.cuda.synchronize(device)
