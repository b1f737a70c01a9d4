"""The int8 route's choice at M = 1 (:mod:`anybit.ops.int8_choice`): which weights may take it and what the
first call times (the choice's storing and pinning: tests/ops/test_route_choice.py)."""

from __future__ import annotations

import pytest
import torch

import anybit
from anybit.kernels import choose_layout
from anybit.ops import int8_choice

ARCH = "sm_90a"
F16 = torch.float16


def layout(type_name: str, n: int = 8192, k: int = 8192, group: int = 128, **options):
    return choose_layout(anybit.dtype(type_name), n, k, group, **options)


@pytest.mark.parametrize("type_name", ["uint1", "uint2", "uint4"])
def test_one_row_of_the_default_packing_of_1_2_4_bit_codes_may_take_it(type_name):
    assert int8_choice.eligible(layout(type_name), F16, 1, has_bias=False)
    assert int8_choice.eligible(layout(type_name), torch.bfloat16, 1, has_bias=False)
    assert not int8_choice.eligible(layout(type_name), F16, 2, has_bias=False)  # the columns form: M = 1
    assert not int8_choice.eligible(layout(type_name), F16, 1, has_bias=True)


@pytest.mark.parametrize(
    ("type_name", "options"),
    [
        ("int4", {}),  # signed codes
        ("uint3", {}),  # 3-bit: stored as planes
        ("uint8", {}),
        ("uint4", {"group": 64}),  # chunks of 64: not the columns form's
        ("uint2", {"k": 4096 + 512}),  # K not whole runs of 8 chunks
    ],
)
def test_other_weights_do_not(type_name, options):
    k = options.pop("k", 8192)
    assert not int8_choice.eligible(layout(type_name, k=k, **options), F16, 1, has_bias=False)


def test_the_timed_configurations_divide_n_and_take_two_m16_tiles_a_warp():
    for type_name, tiles in (("uint1", 2), ("uint2", 2), ("uint4", 2)):
        found = int8_choice.candidates(layout(type_name))
        assert found and all(c["tiles"] == tiles and c["route"] == "int8" for c in found)
        assert {c["warps"] for c in found} == set(int8_choice.WARPS)
        assert {c["split"] for c in found} == set(int8_choice.SPLITS)
    narrow = int8_choice.candidates(layout("uint2", n=6272, k=1024))  # 49·128: 8 warps do not divide it
    assert {c["warps"] for c in narrow} == {4} and {c["split"] for c in narrow} == {1}  # one run of 8 chunks
