"""The dtype() resolver: names, aliases, numpy/ml_dtypes/torch dtypes, and its errors."""

import ml_dtypes
import numpy as np
import pytest
import torch

import anybit
from anybit import dtype

ALIASES = {
    "int3": "int3", "i3": "int3", "INT3": "int3", "u4": "uint4", "uint4": "uint4", "u1": "uint1",
    "f6e3m2": "float6_e3m2", "float6_e3m2": "float6_e3m2", "fp6_e3m2": "float6_e3m2", "e3m2": "float6_e3m2",
    "float6_e3m2fn": "float6_e3m2", "float4_e2m1fn": "float4_e2m1", "fp8_e4m3": "float8_e4m3",
    "float8_e4m3fn": "float8_e4m3", "e4m3fn": "float8_e4m3", "fp8_e5m2": "float8_e5m2", "e1m0": "float2_e1m0",
    "fp16": "float16", "f16": "float16", "half": "float16", "float16": "float16", "e5m10": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float": "float32", "f32": "float32",
    "fp64": "float64", "double": "float64", "f64": "float64", "i8": "int8", "u8": "uint8", "i16": "int16",
    "i32": "int32", "u32": "uint32", "i64": "int64", "bool": "boolean", "boolean": "boolean",
}  # fmt: skip


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_names_and_aliases(alias, name):
    assert dtype(alias) is getattr(anybit, name)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (torch.float16, "float16"), (torch.half, "float16"), (torch.bfloat16, "bfloat16"),
        (torch.float32, "float32"), (torch.float64, "float64"), (torch.int8, "int8"), (torch.uint8, "uint8"),
        (torch.int16, "int16"), (torch.int32, "int32"), (torch.uint32, "uint32"), (torch.int64, "int64"),
        (torch.bool, "boolean"), (torch.float8_e4m3fn, "float8_e4m3"), (torch.float8_e5m2, "float8_e5m2"),
        (np.float16, "float16"), (np.float32, "float32"), (np.dtype("float64"), "float64"), (np.int8, "int8"),
        (np.uint8, "uint8"), (np.int16, "int16"), (np.int32, "int32"), (np.uint32, "uint32"),
        (np.int64, "int64"), (np.bool_, "boolean"), (float, "float64"), (bool, "boolean"),
        (ml_dtypes.bfloat16, "bfloat16"), (ml_dtypes.float8_e4m3fn, "float8_e4m3"),
        (ml_dtypes.float8_e5m2, "float8_e5m2"), (ml_dtypes.float6_e2m3fn, "float6_e2m3"),
        (ml_dtypes.float6_e3m2fn, "float6_e3m2"), (ml_dtypes.float4_e2m1fn, "float4_e2m1"),
        (np.dtype(ml_dtypes.int4), "int4"), (ml_dtypes.int2, "int2"), (ml_dtypes.uint4, "uint4"),
        (ml_dtypes.uint2, "uint2"), (anybit.int4, "int4"),
    ],
    ids=repr,
)  # fmt: skip
def test_library_dtypes(value, name):
    assert dtype(value) is getattr(anybit, name)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("int9", "no such integer type"),
        ("int1", "no such integer type"),
        ("uint16", "no such integer type"),
        ("float9_e4m4", "N = 1 \\+ X \\+ Y ≤ 8"),
        ("float4_e0m3", "at least 1 exponent bit"),
        ("float4_e2m2", "N must be 1 \\+ X \\+ Y = 5"),
        ("float8_e5m2fn", "has inf"),
        ("int4x", "unknown data type name"),
        ("", "unknown data type name"),
        (3.5, "got 3.5"),
        (None, "got None"),
        (np.uint16, "numpy dtype uint16 has no anybit equivalent"),
        (ml_dtypes.float8_e4m3, "numpy dtype float8_e4m3 has no anybit equivalent"),  # IEEE variant, has inf
        (ml_dtypes.float8_e4m3fnuz, "has no anybit equivalent"),
        (torch.float8_e4m3fnuz, "torch dtype torch.float8_e4m3fnuz has no anybit equivalent"),
        (torch.complex64, "has no anybit equivalent"),
    ],
    ids=repr,
)
def test_bad_input_names_the_problem_and_lists_types(value, problem):
    with pytest.raises(ValueError, match=problem) as error:
        dtype(value)
    assert "uint1…uint8, int2…int8, floatN_eXmY with X≥1, Y≥0, N=1+X+Y≤8" in str(error.value)
    assert "bfloat16" in str(error.value) and "int64" in str(error.value)
