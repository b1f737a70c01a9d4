"""``quantize_model``: replace a model's ``torch.nn.Linear`` layers by :class:`QuantizedLinear` in place.

Which layers and how, per layer name (``model.named_modules()`` names, e.g.
``model.layers.3.mlp.down_proj`` in a Hugging Face Llama):

* ``skip`` patterns: left in floating point (``lm_head`` by default: the output projection is the layer most
  sensitive to quantization and, for small vocabularies, a small share of the bytes);
* ``overrides``: pattern → dtype name / ``DataType``, or a dict of ``QuantizedLinear.from_linear`` arguments
  (``{"dtype": "int3", "group_size": 64}``), or None to skip. When several patterns match, the **last** one in
  the dict wins (as in .gitignore: list general patterns first, exceptions after);
* everything else gets the call's ``dtype`` / ``group_size`` / ``zero_point``.

A pattern is an ``fnmatch`` pattern matched against the full name or any dotted suffix of it: ``"lm_head"``,
``"*.mlp.*"`` and ``"mlp.*"`` all work on ``model.layers.0.mlp.up_proj``-style names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from torch import nn
from tqdm.auto import tqdm

import anybit
from anybit.nn.linear import QuantizedLinear, format_bytes

logger = logging.getLogger("anybit.nn")


@dataclass(frozen=True)
class LayerQuantization:
    """One replaced layer: its name, shape, settings and bytes before (float weight + bias) and after."""

    name: str
    in_features: int
    out_features: int
    dtype: str
    group_size: int
    zero_point: bool
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class QuantizationSummary:
    """What :func:`quantize_model` did: replaced layers, skipped layers with the reason, model bytes."""

    layers: tuple[LayerQuantization, ...]
    skipped: tuple[tuple[str, str], ...]
    model_bytes_before: int
    model_bytes_after: int

    @property
    def linear_bytes_before(self) -> int:
        """Bytes of the replaced layers before quantization."""
        return sum(layer.bytes_before for layer in self.layers)

    @property
    def linear_bytes_after(self) -> int:
        """Bytes of the replaced layers after quantization."""
        return sum(layer.bytes_after for layer in self.layers)

    def by_dtype(self) -> dict[str, int]:
        """Number of replaced layers per weight type."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.dtype] = counts.get(layer.dtype, 0) + 1
        return counts

    def __str__(self) -> str:
        types = ", ".join(f"{count} × {name}" for name, count in self.by_dtype().items()) or "none"
        lines = [
            f"quantized {len(self.layers)} linear layers ({types}); skipped {len(self.skipped)}",
            f"  linear layers: {format_bytes(self.linear_bytes_before)} → "
            f"{format_bytes(self.linear_bytes_after)}",
            f"  whole model:   {format_bytes(self.model_bytes_before)} → "
            f"{format_bytes(self.model_bytes_after)} "
            f"({self.model_bytes_before / max(self.model_bytes_after, 1):.2f}× smaller)",
        ]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (tied/shared tensors counted once)."""
    tensors = list(model.parameters()) + list(model.buffers())
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def pattern_matches(name: str, pattern: str) -> bool:
    """Whether ``pattern`` (fnmatch, case-sensitive) matches ``name`` or one of its dotted suffixes."""
    return fnmatchcase(name, pattern) or fnmatchcase(name, "*." + pattern)


def _settings_for(
    name: str,
    base: dict[str, Any],
    skip: Iterable[str],
    overrides: Mapping[str, Any],
) -> dict[str, Any] | str:
    """The ``from_linear`` keyword arguments for layer ``name``, or the reason it is skipped."""
    settings: dict[str, Any] | None = dict(base)
    reason = "skipped by pattern"
    for pattern in skip:
        if pattern_matches(name, pattern):
            settings, reason = None, f"matches skip pattern {pattern!r}"
    for pattern, value in overrides.items():
        if not pattern_matches(name, pattern):
            continue
        if value is None:
            settings, reason = None, f"override {pattern!r} → None"
        elif isinstance(value, Mapping):
            unknown = set(value) - {"dtype", "group_size", "zero_point", "act_dtype", "operand"}
            if unknown:
                raise ValueError(
                    f"override {pattern!r}: expected keys dtype, group_size, zero_point, act_dtype, operand, "
                    f"got {sorted(unknown)}"
                )
            settings = {**base, **value}
        else:
            settings = {**base, "dtype": value}
    return settings if settings is not None else reason


def quantize_model(
    model: nn.Module,
    dtype: Any = "int4",
    group_size: int = 128,
    skip: Iterable[str] = ("lm_head",),
    overrides: Mapping[str, Any] | None = None,
    *,
    zero_point: bool | None = None,
    operand: str | None = None,
    on_unsupported: str = "skip",
    progress: bool = True,
) -> QuantizationSummary:
    """Replace ``model``'s ``torch.nn.Linear`` layers by :class:`QuantizedLinear`, in place.

    Each layer is quantized on the device its weight is on (a model on the GPU quantizes on the GPU), and its
    float weight is released as soon as it is replaced, so peak memory stays near the float model's.

    Parameters
    ----------
    model
        Any module; a Hugging Face ``transformers`` model above all.
    dtype, group_size, zero_point, operand
        The default settings (see :class:`QuantizedLinear` and :meth:`QuantizedLinear.from_linear`).
    skip
        fnmatch patterns of layer names to leave in floating point.
    overrides
        Pattern → dtype, or → dict of settings, or → None (skip); the last matching pattern wins. Mixed
        precision in one call: ``{"*.mlp.*": "int3", "*.self_attn.*": "int4"}``.
    on_unsupported
        ``"skip"`` (default): a layer whose shape the kernels cannot take stays in floating point, with a
        warning and the reason in the summary; ``"raise"``: the ValueError propagates.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    QuantizationSummary
        The replaced and skipped layers and the model's bytes before and after (also logged at INFO).

    Examples
    --------
    >>> summary = anybit.quantize_model(model, "int4", overrides={"*.mlp.*": "int3"})  # doctest: +SKIP
    >>> print(summary)  # doctest: +SKIP
    """
    if on_unsupported not in ("skip", "raise"):
        raise ValueError(f"expected on_unsupported 'skip' or 'raise', got {on_unsupported!r}")
    base = {"dtype": dtype, "group_size": group_size, "zero_point": zero_point, "operand": operand}
    overrides = dict(overrides or {})
    skip = tuple(skip)
    # Validate every type named before any work: a typo should not surface after half the model is done.
    for value in [dtype, *overrides.values()]:
        name = value.get("dtype") if isinstance(value, Mapping) else value
        if name is not None:
            anybit.dtype(name)
    bytes_before = model_bytes(model)
    # Names, not modules: holding no reference lets each float weight go as soon as its layer is replaced.
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    layers: list[LayerQuantization] = []
    skipped: list[tuple[str, str]] = []
    for name in tqdm(names, desc="quantizing", unit="layer", disable=not progress):
        linear = model.get_submodule(name)
        settings = _settings_for(name, base, skip, overrides)
        if isinstance(settings, str):
            skipped.append((name, settings))
            continue
        try:
            quantized = QuantizedLinear.from_linear(linear, **settings)
        except ValueError as error:
            if on_unsupported == "raise":
                raise ValueError(f"layer {name}: {error}") from error
            logger.warning("anybit.quantize_model: leaving %s in floating point: %s", name, error)
            skipped.append((name, str(error)))
            continue
        _set_submodule(model, name, quantized)
        bias_bytes = 0 if linear.bias is None else linear.bias.numel() * linear.bias.element_size()
        layers.append(
            LayerQuantization(
                name=name,
                in_features=linear.in_features,
                out_features=linear.out_features,
                dtype=quantized.weight_dtype.name,
                group_size=quantized.group_size,
                zero_point=quantized.zero_point,
                bytes_before=linear.weight.numel() * linear.weight.element_size() + bias_bytes,
                bytes_after=quantized.nbytes,
            )
        )
        del linear, quantized
    summary = QuantizationSummary(tuple(layers), tuple(skipped), bytes_before, model_bytes(model))
    logger.info("anybit.quantize_model:\n%s", summary)
    return summary


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` (``set_submodule`` exists only in newer torch)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
