"""The DataType record and the generated registry."""

import copy
import dataclasses
import pickle

import ml_dtypes
import numpy as np
import pytest
import torch

import anybit
from anybit import dtypes
from anybit.dtypes import DataType, all_types, packed_types, standard_types, types_of_kind

STANDARD_NAMES = {"float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "uint32",
                  "int64", "boolean"}  # fmt: skip


def test_every_family_member_exists_once():
    names = [t.name for t in all_types()]
    expected_floats = {
        f"float{1 + x + y}_e{x}m{y}" for x in range(1, 8) for y in range(0, 8) if 1 + x + y <= 8
    }
    assert len(names) == len(set(names))
    assert {f"uint{n}" for n in range(1, 9)} <= set(names)
    assert {f"int{n}" for n in range(2, 9)} <= set(names)
    assert {t.name for t in types_of_kind("float") if t.nbits <= 8} == expected_floats
    assert len(expected_floats) == 28
    assert len(names) == 8 + 7 + 28 + 9
    assert {t.name for t in standard_types()} == STANDARD_NAMES
    assert set(packed_types()) == set(all_types()) - set(standard_types())


@pytest.mark.parametrize("data_type", all_types(), ids=str)
def test_attributes_and_interning(data_type: DataType):
    assert getattr(dtypes, data_type.name) is data_type
    assert getattr(anybit, data_type.name) is data_type
    assert anybit.dtype(data_type.name) is data_type
    assert anybit.dtype(data_type.short_name) is data_type
    assert repr(data_type) == f"anybit.{data_type.name}"
    assert pickle.loads(pickle.dumps(data_type)) is data_type
    assert copy.deepcopy(data_type) is data_type
    assert hash(data_type) == hash(dataclasses.replace(data_type)) and data_type == dataclasses.replace(
        data_type
    )
    assert data_type.code_dtype.kind == "u" and data_type.code_dtype.itemsize * 8 >= data_type.nbits
    assert data_type.is_packed == (data_type.name not in STANDARD_NAMES)
    assert data_type.is_subbyte == (data_type.nbits < 8)
    if data_type.is_packed:
        assert data_type.numpy_dtype == np.uint8
    if data_type.is_float:
        assert data_type.nbits == 1 + data_type.exponent_bits + data_type.mantissa_bits
        assert data_type.exponent_bias == 2 ** (data_type.exponent_bits - 1) - 1
        assert data_type.min_value == -data_type.max_value
    else:
        assert data_type.exponent_bits == data_type.mantissa_bits == 0
        assert data_type.smallest_subnormal is None and data_type.smallest_normal is None


def test_record_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        anybit.int4.nbits = 5  # type: ignore[misc]
    assert anybit.int4 != anybit.uint4 and len({anybit.int4, anybit.dtype("i4"), anybit.uint4}) == 2


def test_kinds_and_flags():
    assert anybit.int3.kind == "int" and anybit.int3.is_signed and anybit.int3.is_integer
    assert anybit.uint4.kind == "uint" and not anybit.uint4.is_signed
    assert anybit.float6_e3m2.is_float and anybit.float6_e3m2.is_signed and not anybit.float6_e3m2.is_integer
    assert anybit.boolean.kind == "bool" and not anybit.boolean.is_integer and anybit.boolean.nbits == 1
    assert (anybit.int3.min_value, anybit.int3.max_value) == (-4, 3)
    assert (anybit.uint5.min_value, anybit.uint5.max_value) == (0, 31)
    assert anybit.float8_e4m3.has_nan and not anybit.float8_e4m3.has_inf
    assert anybit.float8_e5m2.has_nan and anybit.float8_e5m2.has_inf
    assert not any(
        t.has_inf or t.has_nan for t in packed_types() if t.name not in ("float8_e4m3", "float8_e5m2")
    )
    assert anybit.float2_e1m0.smallest_subnormal is None  # no mantissa, so no subnormals
    with pytest.raises(ValueError, match="expected a kind"):
        types_of_kind("complex")  # type: ignore[arg-type]


ML_FLOATS = ["float8_e4m3", "float8_e5m2", "float6_e2m3", "float6_e3m2", "float4_e2m1", "bfloat16"]


@pytest.mark.parametrize("name", ML_FLOATS + ["float16", "float32", "float64"])
def test_float_range_matches_finfo(name):
    data_type = getattr(anybit, name)
    info = ml_dtypes.finfo(data_type.ml_dtype if data_type.ml_dtype is not None else data_type.numpy_dtype)
    assert data_type.max_value == float(info.max)
    assert data_type.min_value == float(info.min)
    assert data_type.smallest_normal == float(info.smallest_normal)
    assert data_type.smallest_subnormal == float(info.smallest_subnormal)


INTEGERS = ["int2", "int4", "uint2", "uint4", "int8", "uint8", "int16", "int32", "uint32", "int64"]


@pytest.mark.parametrize("name", INTEGERS)
def test_integer_range_matches_iinfo(name):
    data_type = getattr(anybit, name)
    info = ml_dtypes.iinfo(data_type.ml_dtype if data_type.ml_dtype is not None else data_type.numpy_dtype)
    assert (data_type.min_value, data_type.max_value) == (int(info.min), int(info.max))


def test_storage_dtypes():
    assert anybit.float16.numpy_dtype == np.float16 and anybit.float16.torch_dtype is torch.float16
    assert anybit.bfloat16.numpy_dtype == ml_dtypes.bfloat16 and anybit.bfloat16.torch_dtype is torch.bfloat16
    assert anybit.boolean.numpy_dtype == np.bool_ and anybit.boolean.torch_dtype is torch.bool
    assert anybit.int64.numpy_dtype == np.int64 and anybit.uint32.torch_dtype is torch.uint32
    assert anybit.float8_e4m3.torch_dtype is torch.float8_e4m3fn
    assert anybit.float8_e5m2.torch_dtype is torch.float8_e5m2
    assert anybit.int4.torch_dtype is None and anybit.float6_e3m2.torch_dtype is None
    assert anybit.float4_e2m1.ml_dtype == ml_dtypes.float4_e2m1fn and anybit.float5_e2m2.ml_dtype is None
    sizes = {1: 8, 4: 8, 8: 8, 16: 16, 32: 32, 64: 64}
    for data_type in all_types():
        if data_type.nbits in sizes:
            assert data_type.code_dtype == np.dtype(f"uint{sizes[data_type.nbits]}")
