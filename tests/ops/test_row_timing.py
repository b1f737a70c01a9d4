"""Decode candidates timed in a row (``anybit.ops.row_timing``): how many weight copies a row reads, the
folded kernels' own tuners, and on the GPU a row of real launches replayed from a CUDA graph."""

from __future__ import annotations

import pytest
import torch

import anybit.kernels as kernels
from anybit.kernels import choose_layout
from anybit.ops.row_timing import ROW_LAUNCHES, graph_row, row_arguments, row_copies
from anybit.ops.tuning import tuner_for

from .helpers import relative_error

L2 = 50 * 2**20


@pytest.mark.parametrize(
    ("weight_bytes", "copies"),
    [(1, ROW_LAUNCHES), (8_700_000, ROW_LAUNCHES), (30_300_000, 4), (60_600_000, 2), (235_000_000, 1)],
)
def test_a_row_reads_twice_the_l2_before_it_repeats_a_weight(weight_bytes, copies):
    assert row_copies(weight_bytes, L2) == copies


def test_folded_kernels_are_tuned_by_tuners_of_their_own():
    layout = choose_layout("int4", 4096, 4096, 128)
    plain = tuner_for(layout, torch.float16, False, False)
    assert tuner_for(layout, torch.float16, False, False, accumulate=False, rms_eps=None) is plain
    added = tuner_for(layout, torch.float16, False, False, accumulate=True)
    normed = tuner_for(layout, torch.float16, False, False, rms_eps=1e-5, rms_rows=1, rms_k=4096)
    assert added is not plain and normed is not plain and normed is not added
    assert added.fixed["accumulate"] is True and "accumulate" not in plain.fixed
    assert (normed.fixed["rms_eps"], normed.fixed["rms_rows"], normed.fixed["rms_k"]) == (1e-5, 1, 4096)
    assert len({plain.identity, added.identity, normed.identity}) == 3  # separate records on disk
    assert normed.instance(normed.configs[0]).rms_rows == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
@pytest.mark.parametrize("zero_point", [False, True])
def test_a_row_of_launches_replays_from_a_cuda_graph_on_scratch_outputs(zero_point):
    """Every launch of the row computes the product (the copies hold the same weight), into a scratch
    output: the caller's y keeps its poison."""
    from anybit.runtime.compiler import launch_script

    dtype = "uint4" if zero_point else "int4"
    w = torch.randn(1024, 2048, device="cuda") * 0.02
    q = kernels.quantize(w, dtype, group_size=128, zero_point=zero_point)
    p = kernels.pack(q)
    x = torch.randn(1, 2048, device="cuda").half()
    y = torch.full((1, 1024), float("nan"), device="cuda", dtype=torch.float16)
    zeros = p.zeros if zero_point else p.scales
    args = (x, p.data, p.scales, zeros, p.scales, y, 1, 1024, 2048)
    tuner = tuner_for(p.layout, torch.float16, zero_point, False)
    rows = row_arguments(args, zero_point)
    assert len(rows) == ROW_LAUNCHES
    assert len({r[1].data_ptr() for r in rows}) == ROW_LAUNCHES  # 1 MB weights: a copy a launch
    assert all(torch.equal(r[1], p.data) and torch.equal(r[2], p.scales) for r in rows)
    scratch = rows[0][5]
    assert scratch.data_ptr() != y.data_ptr() and all(r[5] is scratch for r in rows)
    instance = tuner.instance(tuner.configs[0])
    run = graph_row(lambda launch_args: launch_script(instance, launch_args), rows)
    assert run.launches == ROW_LAUNCHES
    scratch.fill_(float("nan"))
    run()
    torch.cuda.synchronize()
    expected = x.double() @ kernels.dequantize(q).double().t()
    assert relative_error(scratch, expected) < 2e-3
    assert torch.isnan(y).all()


def test_a_full_gpu_times_the_row_on_fewer_weight_copies(monkeypatch):
    """Copies the GPU has no memory for are left out (the row then repeats the ones it has); the row keeps
    its launches and never writes the caller's y."""
    from types import SimpleNamespace

    from anybit.ops import row_timing

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(L2_cache_size=L2))
    made = []

    def copy_until_full(tensor):
        if len(made) >= 3:  # one copy (weight, scales, zeros) fits, the next does not
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        made.append(tensor)
        return tensor.clone()

    monkeypatch.setattr(row_timing, "_copy", copy_until_full)
    weight = torch.randint(0, 255, (1024,), dtype=torch.uint8)
    scales, zeros = torch.randn(8), torch.randn(8)
    y = torch.full((1, 16), float("nan"))
    rows = row_arguments((torch.randn(1, 64), weight, scales, zeros, scales, y, 1, 16, 64), has_zeros=True)
    assert len(rows) == ROW_LAUNCHES
    assert len({r[1].data_ptr() for r in rows}) == 2  # the caller's and one copy
    assert all(r[5] is rows[0][5] and r[5].data_ptr() != y.data_ptr() for r in rows)
