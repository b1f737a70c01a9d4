"""Dispatch: the threshold, its environment variable, which path each M takes, the kept launch state."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import anybit.ops as ops
from anybit.ops import plan as plan_module
from anybit.ops.plan import WeightPlan

from .helpers import packed_weight, reference, relative_error


def test_threshold_defaults_to_16_and_can_be_set():
    assert ops.decode_max_m() == 16
    assert ops.choose_path(1) == "decode" and ops.choose_path(16) == "decode"
    assert ops.choose_path(17) == "dequantize"
    assert ops.set_decode_max_m(4) == 16
    assert ops.choose_path(5) == "dequantize"
    with pytest.raises(ValueError, match="non-negative int"):
        ops.set_decode_max_m(-1)


def test_threshold_from_the_environment():
    code = "import anybit.ops as o; print(o.decode_max_m())"
    env = {"ANYBIT_DECODE_MAX_M": "8", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "8", result.stderr


@pytest.mark.parametrize("m, path", [(1, "decode"), (16, "decode"), (17, "dequantize"), (64, "dequantize")])
def test_each_m_takes_its_path(monkeypatch, m, path):
    taken = []
    monkeypatch.setattr(
        WeightPlan, "decode_reference", lambda self, *a: taken.append("decode") or a[0][..., :1]
    )
    monkeypatch.setattr(
        WeightPlan, "dequantize_matmul", lambda self, *a: taken.append("dequantize") or a[0][..., :1]
    )
    _, p = packed_weight("uint4", 32, 128)
    ops.quantized_matmul(torch.randn(m, 128).half(), p)
    assert taken == [path]


def test_leading_dimensions_count_as_rows(monkeypatch):
    taken = []
    monkeypatch.setattr(WeightPlan, "dequantize_matmul", lambda self, *a: taken.append(a[0].shape) or a[0])
    _, p = packed_weight("uint4", 32, 128)
    ops.quantized_matmul(torch.randn(3, 6, 128).half(), p)  # 18 rows > 16
    assert taken == [torch.Size([3, 6, 128])]


def test_forced_paths_agree():
    q, p = packed_weight("int4", 32, 256)
    x = torch.randn(5, 256).half()
    expected = reference(x, q)
    for path in ("decode", "dequantize"):
        assert relative_error(ops.quantized_matmul_path(x, p, path=path), expected) < 2e-3
    with pytest.raises(ValueError, match="expected path 'decode', 'dequantize'"):
        ops.quantized_matmul_path(x, p, path="fast")


def test_one_plan_per_layout_and_weights_found_by_identity():
    _, p = packed_weight("uint4", 32, 128, seed=1)
    _, p2 = packed_weight("uint4", 32, 128, seed=2)
    assert ops.plan_of(p) is ops.plan_of(p) is ops.plan_of(p2)
    _, other = packed_weight("uint4", 64, 128)
    assert ops.plan_of(other) is not ops.plan_of(p)


class FakeCompiled:
    """Stands in for a CompiledKernel: records launches."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.launches = []
        self.bindings = []
        self.launcher = self
        self.user_params = [SimpleNamespace(name=name) for name in plan_module.DECODE_PARAMETERS]

    def launch(self, args: tuple) -> None:
        self.launches.append(args)

    def bind(self, args: tuple, positions: tuple) -> object:
        """A bound launch recording its calls (each binding in ``bindings``: args, positions, calls)."""
        calls = []
        self.bindings.append((args, positions, calls))
        return calls.append


class FakeTuner:
    def __init__(self) -> None:
        self.selected = []

    def select(self, args: tuple) -> dict:
        self.selected.append(args)
        return {"warps": 1, "stages": 3}  # N = 32 is one 32-column warp tile (uint4)

    def instance(self, config: dict) -> str:
        return f"instance {config}"

    fixed: dict = {}

    def script_class(self, **config) -> str:
        return f"fused instance {config}"


def test_gpu_path_tunes_once_then_launches_the_kept_kernel(monkeypatch):
    """The CUDA branch of a plan, on CPU tensors with the tuner and the launch faked: argument order, and
    that only the first call of each M selects a configuration."""
    import anybit.runtime.compiler as compiler

    tuner, compiled = FakeTuner(), FakeCompiled()
    first = []
    monkeypatch.setattr(plan_module, "tuner_for", lambda *a: tuner)
    monkeypatch.setattr(
        compiler, "launch_script", lambda kernel, args: first.append((kernel, args)) or compiled
    )
    _, p = packed_weight("uint4", 32, 128)
    plan = ops.plan_of(p)
    plan.on_cuda = True
    bias = torch.randn(32).half()
    x = torch.randn(2, 128).half()
    ops.quantized_matmul(x, p, bias)
    assert len(tuner.selected) == 1 and first[0][0] == "instance {'warps': 1, 'stages': 3}"
    args = first[0][1]
    assert (
        args[0] is x and args[1] is p.data and args[2] is p.scales and args[3] is p.zeros and args[4] is bias
    )
    assert args[5].shape == (2, 32) and args[6:] == (2, 32, 128)
    # Its first call also bound its launch; the checked launch takes the same arguments in the same order.
    y = ops.quantized_matmul_path(x, p, bias, path="decode")
    assert len(tuner.selected) == 1 and len(compiled.launches) == 1
    launched = compiled.launches[0]
    assert launched[0] is x and launched[4] is bias and launched[5] is y and launched[6:] == (2, 32, 128)
    y = ops.quantized_matmul(x, p)  # without bias: another specialisation, selected and bound once more
    assert len(tuner.selected) == 2 and first[1][1][4] is p.scales
    (with_bias, positions, bias_calls), (bound_to, positions, calls) = compiled.bindings
    assert with_bias[4] is bias and bound_to[4] is p.scales and bound_to[5] is y
    assert positions == tuple(range(9)) and bias_calls == calls == []
    x2 = torch.randn(2, 128).half()
    y2 = ops.quantized_matmul(x2, p)  # later calls: the bound launch alone
    ((called),) = calls
    assert called[0] is x2 and called[1] is p.data and called[3] is p.zeros and called[5] is y2
    assert called[6:] == (2, 32, 128) and len(compiled.launches) == 1
    y2 = ops.quantized_matmul(x2, p, bias)
    ((called),) = bias_calls
    assert called[4] is bias and called[5] is y2 and len(compiled.launches) == 1
    ops.quantized_matmul(x2, p, torch.randn(64).half()[1:33])  # a misaligned bias: the checked launch
    assert len(bias_calls) == 1 and len(compiled.launches) == 2
    for leading in [(), (1, 2), (2, 1, 1)]:  # the output keeps x's leading dimensions, its dtype and device
        y = ops.quantized_matmul(torch.randn(*leading, 128).half(), p)
        assert y.shape == (*leading, 32) and y.dtype == torch.float16 and y.is_contiguous()
        again = ops.quantized_matmul(torch.randn(*leading, 128).half(), p)  # made like a kept template
        assert again.shape == y.shape and again.is_contiguous() and again.data_ptr() != y.data_ptr()


def test_the_output_shape_replaces_the_last_extent():
    for shape in [(7,), (2, 7), (2, 3, 7), (2, 3, 4, 7)]:
        assert plan_module.output_shape(torch.Size(shape), 5) == (*shape[:-1], 5)


def test_a_weight_whose_tensors_are_misaligned_is_never_launched_unchecked():
    """Registration notes whether a weight's tensors are 16-byte aligned; one that is not keeps the checked
    launch (whose alignment check then names the problem on the GPU)."""
    import dataclasses

    from anybit.ops import matmul

    _, p = packed_weight("uint4", 32, 128)
    storage = torch.empty(p.data.numel() + 1, dtype=torch.uint8)
    shifted = storage[1:].view(p.data.shape)
    shifted.copy_(p.data)
    misaligned = dataclasses.replace(p, data=shifted)
    assert matmul._register(p)[2] and not matmul._register(misaligned)[2]
    x = torch.randn(1, 128).half()
    torch.testing.assert_close(ops.quantized_matmul(x, misaligned), ops.quantized_matmul(x, p))


def test_fused_eager_calls_bind_their_launch_too(monkeypatch):
    """quantized_matmul_rms and quantized_matmul_add_ on a registered weight bind each M's fused launch at
    its first call, per (zero points, bias, add, rms_eps); an output to add into that does not fit the bound
    launch (misaligned) goes the checked way."""
    import anybit.runtime.compiler as compiler

    tuner, compiled = FakeTuner(), FakeCompiled()
    monkeypatch.setattr(plan_module, "tuner_for", lambda *a, **k: tuner)
    monkeypatch.setattr(compiler, "launch_script", lambda kernel, args: compiled)
    _, p = packed_weight("int4", 32, 128, operand="a")
    plan = ops.plan_of(p)
    plan.on_cuda = True
    x = torch.randn(1, 128).half()
    ops.quantized_matmul_rms(x, p, 1e-5)
    ops.quantized_matmul_rms(x, p, 1e-6)  # another eps: another kernel, another binding
    assert len(compiled.bindings) == 2
    y = ops.quantized_matmul_rms(x, p, 1e-5)
    (called,) = compiled.bindings[0][2]
    assert called[0] is x and called[5] is y and compiled.bindings[1][2] == []
    out = torch.randn(1, 32).half()
    ops.quantized_matmul_add_(out, x, p)  # binds
    assert ops.quantized_matmul_add_(out, x, p) is out
    (called,) = compiled.bindings[2][2]
    assert called[5] is out
    shifted = torch.randn(40).half()[1:33].view(1, 32)
    ops.quantized_matmul_add_(shifted, x, p)  # misaligned: the checked launch
    assert len(compiled.bindings[2][2]) == 1 and compiled.launches[-1][5] is shifted
