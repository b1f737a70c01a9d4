"""``anybit.runtime_helper``: a helper method with run-time loops, branches and ``==`` is transpiled like
``__call__``, gives the program the same code written inline gives, and keeps ``__call__``'s rules."""

import numpy as np
import pytest

import anybit
from anybit import float32, int32
from anybit.ir import KernelDefinitionError

N = 64


class PrefixSums(anybit.Script):
    """y = x·(1 + count), doubled where codes == 2, zero when count is 0 (a run-time loop, a run-time ``if``
    and ``==`` in one helper, or the same inline)."""

    def __init__(self, helper: bool) -> None:
        super().__init__()
        self.helper = helper

    def __call__(
        self, x: anybit.ptr(float32), codes: anybit.ptr(int32), y: anybit.ptr(float32), count: anybit.int32
    ):
        self.attrs.blocks = [1]
        self.attrs.warps = 2
        values = self.load_global(self.global_view(x, float32, [N]), [0], [N])
        kinds = self.load_global(self.global_view(codes, int32, [N]), [0], [N])
        gy = self.global_view(y, float32, [N])
        if self.helper:
            self.store_global(gy, self._sums(values, kinds, count), [0])
        else:
            total = self.register_tensor(float32, [N], init=0.0)
            total += values
            for _ in self.range(count):
                total += values
            if count == 0:
                total = total * 0.0
            self.store_global(gy, self.where(kinds == 2, total * 2.0, total), [0])

    @anybit.runtime_helper
    def _sums(self, values, kinds, count):
        """The inline branch's work, as a helper."""
        total = self.register_tensor(float32, [N], init=0.0)
        total += values
        for _ in self.range(count):
            total += values
        if count == 0:
            total = total * 0.0
        return self.where(kinds == 2, total * 2.0, total)


class ReturnInsideALoop(anybit.Script):
    def __call__(self, x: anybit.ptr(float32), count: anybit.int32):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        gx = self.global_view(x, float32, [32])
        self.store_global(gx, self._first(self.load_global(gx, [0], [32]), count), [0])

    @anybit.runtime_helper
    def _first(self, values, count):
        for _ in self.range(count):
            return values
        return values


@pytest.mark.parametrize("count", [0, 1, 5])
def test_a_runtime_helper_computes_what_inline_code_computes(count):
    rng = np.random.default_rng()
    x = rng.standard_normal(N).astype(np.float32)
    codes = rng.integers(0, 3, N).astype(np.int32)
    expected = x.astype(np.float64) * (1 + count) if count else np.zeros(N)
    expected = np.where(codes == 2, 2 * expected, expected)
    for helper in (False, True):
        y = np.full(N, np.nan, dtype=np.float32)
        anybit.interpret(PrefixSums(helper), x, codes, y, count)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_a_runtime_helper_generates_the_inline_code():
    from anybit.runtime.compiler import generate_source

    inline, helper = (
        generate_source(PrefixSums(flag).program(None, None, None, None), "sm_90a").source
        for flag in (False, True)
    )
    assert inline == helper


def test_a_runtime_helper_keeps_the_rules_of_call():
    with pytest.raises(KernelDefinitionError, match="return"):
        ReturnInsideALoop().program(None, 4)
    assert PrefixSums._sums.__doc__.startswith("The inline branch")
