"""QuantizedLinear: construction, forward against the dequantized reference, state round trips, errors."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from anybit import kernels
from anybit.nn import QuantizedLinear

TYPES = ["int4", "uint4", "int3", "float6_e3m2"]


def make_linear(k: int = 128, n: int = 32, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias)


@pytest.mark.parametrize("dtype", TYPES)
def test_from_linear_matches_kernels_quantize(dtype: str) -> None:
    linear = make_linear()
    layer = QuantizedLinear.from_linear(linear, dtype, group_size=64)
    expected = kernels.dequantize(
        kernels.quantize(linear.weight.detach(), dtype, group_size=64, act_dtype=torch.float16)
    )
    assert torch.equal(layer.dequantize(), expected)
    assert layer.weight_dtype.name == dtype
    assert layer.zero_point == (dtype == "uint4")
    assert layer.bias.dtype == torch.float16


@pytest.mark.parametrize("dtype", ["int4", "uint4", "float6_e3m2"])
def test_forward_matches_dequantized_reference(dtype: str) -> None:
    linear = make_linear()
    layer = QuantizedLinear.from_linear(linear, dtype, group_size=128)
    x = torch.randn(2, 128)
    y = layer(x)
    assert y.dtype == torch.float32 and y.shape == (2, 32)  # computed in fp16, returned in x's dtype
    x16 = x.half().float()
    reference = x16 @ layer.dequantize().t() + layer.bias.float()
    assert torch.allclose(y, reference, atol=2e-2, rtol=1e-2), (y - reference).abs().max()


def test_forward_keeps_leading_dims_and_no_bias() -> None:
    layer = QuantizedLinear.from_linear(make_linear(bias=False), "int4", group_size=128)
    assert layer.bias is None
    x = torch.randn(2, 1, 128, dtype=torch.float16)
    y = layer(x)
    assert y.shape == (2, 1, 32) and y.dtype == torch.float16
    reference = x.float() @ layer.dequantize().t()
    assert torch.allclose(y.float(), reference, atol=2e-2, rtol=1e-2)


def test_repr_names_type_group_and_bytes() -> None:
    text = repr(QuantizedLinear.from_linear(make_linear(), "int3", group_size=64))
    for part in (
        "in_features=128",
        "out_features=32",
        "dtype=int3",
        "group_size=64",
        "bytes=",
        "bits/weight",
    ):
        assert part in text


def test_bits_per_weight_counts_scales() -> None:
    layer = QuantizedLinear.from_linear(make_linear(k=256, n=64), "int4", group_size=128)
    assert layer.bits_per_weight == pytest.approx(4 + 16 / 128)


def test_state_dict_round_trip_into_empty_layer_of_other_type() -> None:
    source = QuantizedLinear.from_linear(make_linear(), "uint4", group_size=64)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert not any("weight" == key for key in state)  # only the packed form is saved
    target = QuantizedLinear(128, 32, dtype="int8", group_size=128)  # other type, group, no zeros
    target.load_state_dict(state)
    assert target.weight_dtype.name == "uint4" and target.group_size == 64 and target.zero_point
    assert torch.equal(target.dequantize(), source.dequantize())
    assert torch.equal(target.bias, source.bias)


@pytest.mark.parametrize(
    "packing", [{"operand": "b"}, {"max_bytes_per_thread": 128}], ids=["operand-b", "wide-tiles"]
)
def test_a_non_default_packing_survives_the_state_dict(packing: dict) -> None:
    """A layer made from a weight packed another way records that packing: a fresh layer loads it and
    computes the same outputs (without it, same-shaped bytes would be read in the default order)."""
    linear = make_linear(k=256, n=64)
    q = kernels.quantize(linear.weight.detach(), "int4", group_size=128, act_dtype=torch.float16)
    packed = kernels.pack(q, layout=kernels.choose_layout("int4", 64, 256, 128, **packing))
    source = QuantizedLinear.from_packed(packed, bias=linear.bias.detach().half())
    assert source.layout == packed.layout and source.get_extra_state()["packing"]
    target = QuantizedLinear(256, 64, dtype="int4", group_size=128)
    assert target.layout != packed.layout
    target.load_state_dict(source.state_dict())
    assert target.layout == packed.layout
    x = torch.randn(3, 256).half()
    assert torch.equal(target(x), source(x))
    broken = {**source.get_extra_state(), "packing": {"operand": "a"}}
    with pytest.raises(ValueError, match="lacks"):
        target.set_extra_state(broken)
    assert torch.equal(target.dequantize(), kernels.dequantize(q))


def test_a_version_2_state_loads_with_that_version_default_packing() -> None:
    """Layers saved before the default packing became operand "a" (state version 2, no packing recorded
    for the then-default operand "b") load their bytes in operand "b" order and compute what they did."""
    linear = make_linear(k=256, n=64)
    q = kernels.quantize(linear.weight.detach(), "uint4", group_size=128, act_dtype=torch.float16)
    packed = kernels.pack(q, layout=kernels.choose_layout("uint4", 64, 256, 128, operand="b"))
    source = QuantizedLinear.from_packed(packed, bias=linear.bias.detach().half())
    old_state = source.state_dict()
    extra = {key: value for key, value in old_state["_extra_state"].items() if key != "packing"}
    old_state["_extra_state"] = {**extra, "version": 2}
    target = QuantizedLinear(256, 64, dtype="uint4", group_size=128)
    assert target.layout.operand == "a"
    target.load_state_dict(old_state)
    assert target.layout == packed.layout
    x = torch.randn(3, 256).half()
    assert torch.equal(target(x), source(x))
    with pytest.raises(ValueError, match="lacks its packing"):
        target.set_extra_state({**extra, "version": 3})


def test_a_version_2_state_of_a_large_layer_keeps_the_narrow_tiles_it_was_saved_with() -> None:
    """Version 2 predates the wide default for large 5-, 6- and 8-bit weights: its bytes are in 64-byte
    warp tiles, so the layout it loads with is too (a meta-device layer: no bytes to allocate)."""
    layer = QuantizedLinear(8192, 16384, dtype="int6", group_size=128, device="meta")
    assert layer.layout.bytes_per_thread == 96  # today's default for 2^27 int6 weights
    state = {key: value for key, value in layer.get_extra_state().items() if key != "packing"}
    layer.set_extra_state({**state, "version": 2})
    assert layer.layout == kernels.choose_layout(
        "int6", 16384, 8192, 128, operand="b", planar=False, max_bytes_per_thread=64
    )
    assert layer.layout.bytes_per_thread == 48


@pytest.mark.parametrize("dtype", ["int3", "uint5", "float6_e2m3"])
def test_a_planar_packing_survives_the_state_dict(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer packed as bit planes records them (state version 6, ``planes`` a list, the top plane's bit
    stride: 4 for float6_e2m3 with float16): a fresh layer loads the same layout, unpacks the same codes and
    computes the same product (CPU interpreter)."""
    linear = make_linear(k=256, n=64)
    q = kernels.quantize(linear.weight.detach(), dtype, group_size=128, act_dtype=torch.float16)
    layout = kernels.choose_layout(dtype, 64, 256, 128, planar=True, act_dtype=torch.float16)
    source = QuantizedLinear.from_packed(kernels.pack(q, layout=layout), bias=linear.bias.detach().half())
    assert source.layout.planar and source.layout == layout
    extra = source.get_extra_state()
    assert extra["version"] == 6 and extra["packing"]["planes"] == list(layout.planes)
    assert (
        extra["packing"]["top_plane_stride"]
        == layout.top_plane_stride
        == (4 if dtype == "float6_e2m3" else 1)
    )
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    with monkeypatch.context() as patch:  # a fresh layer of codes stored whole, which the load replaces
        patch.setattr(kernels.layout, "PLANAR_BY_DEFAULT", False)
        target = QuantizedLinear(256, 64, dtype=dtype, group_size=128)
    assert not target.layout.planar
    target.load_state_dict(torch.load(buffer, weights_only=True))
    assert target.layout == layout
    assert torch.equal(target.quantized().codes, q.codes)
    assert torch.equal(target.dequantize(), kernels.dequantize(q))
    x = torch.randn(3, 256).half()
    expected = x.double() @ target.dequantize().double().t() + linear.bias.double()
    got = target(x).double()
    assert torch.isfinite(got).all() and float((got - expected).norm() / expected.norm()) < 2e-3
    dense = QuantizedLinear.from_linear(linear, dtype, group_size=128, planar=False)
    assert not dense.layout.planar and dense.get_extra_state()["packing"]["planes"] == []
    assert dense.packed.shape == source.packed.shape and not torch.equal(dense.packed, source.packed)
    planar = QuantizedLinear.from_linear(linear, dtype, group_size=128, planar=True)
    assert planar.layout == layout and torch.equal(planar.packed, source.packed)


def test_older_states_load_as_codes_stored_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """States before version 5 packed every code whole: they load with planes=(), even into a planar layer
    and once planes are the default; a bad ``planes`` is refused and leaves the layer as it was."""
    monkeypatch.setattr(kernels.layout, "PLANAR_BY_DEFAULT", True)
    linear = make_linear(k=256, n=64)
    q = kernels.quantize(linear.weight.detach(), "int3", group_size=128, act_dtype=torch.float16)
    dense = kernels.pack(q, layout=kernels.choose_layout("int3", 64, 256, 128, planar=False))
    source = QuantizedLinear.from_packed(dense, bias=linear.bias.detach().half())
    old_state = source.state_dict()
    extra = old_state["_extra_state"]
    packing = {key: value for key, value in extra["packing"].items() if key != "planes"}
    version_2 = kernels.pack(q, layout=kernels.choose_layout("int3", 64, 256, 128, operand="b", planar=False))
    cases = {  # version 2 records no packing and holds that version's default, operand "b"
        2: ({key: value for key, value in extra.items() if key != "packing"}, version_2),
        3: ({**extra, "packing": packing}, dense),
        4: ({**extra, "packing": packing}, dense),
    }
    for version, (saved, expected) in cases.items():
        target = QuantizedLinear(256, 64, dtype="int3", group_size=128)
        assert target.layout.planes == (2, 1)  # planes by default (monkeypatched)
        state = {**old_state, "packed": expected.data, "_extra_state": {**saved, "version": version}}
        target.load_state_dict(state)
        assert target.layout == expected.layout and target.layout.planes == ()
        assert torch.equal(target.quantized().codes, q.codes)
    layout = target.layout
    uint5 = QuantizedLinear.from_linear(linear, "uint5", group_size=128, act_dtype=torch.bfloat16)
    for other in (extra, uint5.get_extra_state()):  # the same type, and another type and act dtype
        for planes in ([2, 2], [4, 2], "21"):
            with pytest.raises(ValueError, match="planes"):
                target.set_extra_state({**other, "packing": {**other["packing"], "planes": planes}})
            assert target.layout is layout and target.weight_dtype.name == "int3"
            assert target.act_dtype == torch.float16


def test_load_drops_zeros_absent_from_state() -> None:
    source = QuantizedLinear.from_linear(make_linear(), "int4", group_size=128)
    target = QuantizedLinear(128, 32, dtype="uint4", group_size=128)
    assert target.zero_point
    target.load_state_dict(source.state_dict())
    assert not target.zero_point and target.weight_dtype.name == "int4"


def test_dtype_changes_keep_packed_form() -> None:
    layer = QuantizedLinear.from_linear(make_linear(), "uint4", group_size=128)
    before = layer.dequantize()
    layer.float()  # the kernels cannot compute in float32: scales stay float16
    assert layer.act_dtype == torch.float16 and layer.scales.dtype == torch.float16
    assert layer.packed.dtype == torch.uint8 and torch.equal(layer.dequantize(), before)
    layer.to(torch.bfloat16)  # a bfloat16 model: the layer computes in bfloat16
    assert layer.act_dtype == torch.bfloat16 and layer.zeros.dtype == torch.bfloat16
    assert layer.bias.dtype == torch.bfloat16


def test_bfloat16_linear_gives_bfloat16_layer() -> None:
    linear = make_linear().to(torch.bfloat16)
    layer = QuantizedLinear.from_linear(linear, "int4", group_size=128)
    assert layer.act_dtype == torch.bfloat16 and layer.scales.dtype == torch.bfloat16
    y = layer(torch.randn(1, 128, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def test_to_linear_is_the_reference() -> None:
    layer = QuantizedLinear.from_linear(make_linear(), "int4", group_size=128)
    linear = layer.to_linear()
    assert linear.weight.dtype == torch.float16
    assert torch.equal(linear.weight.float(), layer.dequantize().half().float())


def test_unsupported_shapes_say_what_is_needed() -> None:
    with pytest.raises(ValueError, match=r"in_features=100.*expected"):
        QuantizedLinear.from_linear(nn.Linear(100, 32), "int4", group_size=128)
    with pytest.raises(ValueError, match="QuantizedLinear"):
        QuantizedLinear.from_linear(nn.Linear(128, 30), "int4", group_size=128)
    with pytest.raises(ValueError, match="int9"):
        QuantizedLinear.from_linear(nn.Linear(128, 32), "int9")


def test_wrong_input_width_is_refused() -> None:
    layer = QuantizedLinear.from_linear(make_linear(), "int4", group_size=128)
    with pytest.raises(ValueError, match=r"expected input \[\.\.\., 128\]"):
        layer(torch.randn(1, 64))


def test_a_version_5_state_keeps_its_plain_top_plane() -> None:
    """States before version 6 stored every top plane plainly: a float6_e2m3 layer saved so loads with
    top_plane_stride 1 into a fresh layer (whose default spreads it for float16) and keeps its codes."""
    linear = make_linear(k=256, n=64)
    q = kernels.quantize(linear.weight.detach(), "float6_e2m3", group_size=128, act_dtype=torch.float16)
    plain = kernels.pack(q, layout=kernels.choose_layout("float6_e2m3", 64, 256, 128, planar=True))
    state = QuantizedLinear.from_packed(plain).state_dict()
    extra = state["_extra_state"]
    packing = {key: value for key, value in extra["packing"].items() if key != "top_plane_stride"}
    state["_extra_state"] = {**extra, "version": 5, "packing": packing}
    target = QuantizedLinear(256, 64, dtype="float6_e2m3", group_size=128, bias=False)
    assert target.layout.top_plane_stride == 4
    target.load_state_dict(state)
    assert target.layout == plain.layout and target.layout.top_plane_stride == 1
    assert torch.equal(target.quantized().codes, q.codes)
