"""The tuning shipped with anybit (``anybit/runtime/tunings``) matches the decode kernels it was tuned for.

A record applies only to the kernel revision that made it (its identity hashes the kernel's source), so a
change to the decode kernels silently stops the shipped H200 configurations of the Llama-3-8B model (int4;
int2 and float6_e3m2) from applying: this test fails instead, naming how to make the files again.
"""

from __future__ import annotations

import pytest
import torch

from anybit import kernels
from anybit.ops.plan import WeightPlan
from anybit.ops.tuning import TUNE_BIAS_AFTER_DOT_VARIABLE, TUNE_SPLIT_IN_CLUSTER_VARIABLE
from anybit.runtime import autotune

H200 = "NVIDIA H200|sm_90a"
REGENERATE = (
    "the decode kernels changed since the shipped H200 tuning was made: on an H200 run `python "
    "benchmarks/e2e.py --compile --fuse --gated-mlp --fold-norms --fuse-attention quantized --greedy anybit "
    "--types <the file's types> --batches 1,16 --out DIR` with ANYBIT_SHIPPED_TUNING=0 (for int4 also "
    "ANYBIT_TUNE_SPLIT_IN_CLUSTER=1 ANYBIT_TUNE_BIAS_AFTER_DOT=1), and copy DIR/tuning.json over the "
    "file in anybit/runtime/tunings/ (nvidia-h200-int4-llama-3-8b.json, "
    "nvidia-h200-int2-float6_e3m2-llama-3-8b.json; or delete it); where the change leaves the generated CUDA "
    "alone, `python scripts/rekey_shipped_tuning.py <worktree of the file's commit>` carries it over"
)
#: The folded int4 model's decode launches: (name, N, K, gated, residual added, row RMS folded).
LLAMA_3_8B = (
    ("qkv", 6144, 4096, False, False, True),
    ("o", 4096, 4096, False, True, False),
    ("gate_up", 28672, 4096, True, False, True),
    ("down", 4096, 14336, False, True, False),
)


#: The weight types a shipped file may hold records of: the end-to-end benchmark's and the suite's.
WEIGHT_TYPES = (
    *("int2", "int3", "int4", "int6", "int8"),
    *("uint1", "uint2", "uint3", "uint4", "uint5"),
    *("float4_e2m1", "float5_e2m2", "float6_e3m2", "float6_e2m3", "float8_e4m3", "float8_e5m2"),
)


def llama_tuners(m: int, dtype: str = "int4") -> dict[str, autotune.TunedKernel]:
    """The tuners the folded Llama-3-8B model's projections select from at M rows, its weights quantized to
    ``dtype`` as ``quantize_model`` does (zero points for unsigned types; any norm epsilon: it is not part of
    the identity)."""
    tuners = {}
    for name, n, k, gated, residual, rms in LLAMA_3_8B:
        layout = kernels.choose_layout(dtype, n, k, 128, gated=gated)
        plan = WeightPlan(layout, torch.float16, torch.device("cpu"))
        zeros = dtype.startswith("u")
        tuners[name] = plan.fused_tuner(m, zeros, False, residual, 1e-5 if rms else None)
    return tuners


@pytest.fixture
def shipped_h200(monkeypatch) -> dict:
    """The shipped records for the H200, the opt-in tuning variables unset (a user's default)."""
    for variable in (TUNE_SPLIT_IN_CLUSTER_VARIABLE, TUNE_BIAS_AFTER_DOT_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv(autotune.SHIPPED_TUNING_VARIABLE, raising=False)
    autotune._shipped_records.cache_clear()
    records = {key: config for key, config in autotune.shipped_tuning().items() if key[1] == H200}
    assert records, "no shipped H200 tuning: is anybit/runtime/tunings/*.json installed as package data?"
    return records


#: The models the shipped files were tuned for (one file each: int4, then int2 and float6_e3m2 together).
SHIPPED_TYPES = ("int4", "int2", "float6_e3m2")


@pytest.mark.parametrize("dtype", SHIPPED_TYPES)
@pytest.mark.parametrize("m", [1, 16])
def test_every_projection_of_the_shipped_models_has_an_h200_configuration(shipped_h200, m, dtype):
    for name, tuner in llama_tuners(m, dtype).items():
        n, k = next((n, k) for label, n, k, *_ in LLAMA_3_8B if label == name)
        bucket = autotune.bucket_text([m, n, k])
        config = shipped_h200.get((tuner.identity, H200, bucket))
        assert config is not None, f"{dtype} {name} at M = {m}: {REGENERATE}"
        # Runs without the ANYBIT_TUNE_* variables set, whichever variant the tuning picked.
        assert tuner.accepts(config), (name, m, config)
        built = tuner.built(config, (None,) * 6 + (m, n, k), "sm_90a")
        assert isinstance(built, tuple), (name, m, config, built)  # traced, verified, CUDA generated
        assert tuner.unsuited(config, (None,) * 6 + (m, n, k)) is None, (name, m, config)


def test_every_shipped_record_belongs_to_a_current_kernel(shipped_h200):
    current = {
        tuner.identity for dtype in WEIGHT_TYPES for m in (1, 16) for tuner in llama_tuners(m, dtype).values()
    }
    stale = sorted({kernel for kernel, _, _ in shipped_h200} - current)
    assert not stale, f"records of kernels that no longer exist {stale}: {REGENERATE}"


def test_a_norm_epsilon_does_not_change_the_tuning_identity():
    layout = kernels.choose_layout("int4", 6144, 4096, 128)
    plan = WeightPlan(layout, torch.float16, torch.device("cpu"))
    identities = {plan.fused_tuner(1, False, False, False, eps).identity for eps in (1e-5, 1e-6)}
    assert len(identities) == 1
    assert plan.fused_tuner(1, False, False, False, None).identity not in identities
