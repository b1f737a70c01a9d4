"""Comparisons inside helper methods: ``==`` and ``!=`` are element-wise only in a transpiled ``__call__``
(the transpiler rewrites them); helpers use ``self.eq`` / ``self.ne`` (and ``self.lt`` …), and a Python bool
reaching ``where`` as its condition — what ``tensor != 0`` gives there — is an error, not a silent no-op."""

import numpy as np
import pytest

import anybit
from anybit import float32, int32
from anybit.ir import KernelDefinitionError


class KeepNonzero(anybit.Script):
    """y[i] = x[i] where codes[i] != 0 (and where codes[i] == 2 doubled), else -1: the choice in a helper."""

    def __call__(self, x: anybit.ptr(float32), codes: anybit.ptr(int32), y: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        gx, gc = self.global_view(x, float32, [64]), self.global_view(codes, int32, [64])
        values, kinds = self.load_global(gx, [0], [64]), self.load_global(gc, [0], [64])
        self.store_global(self.global_view(y, float32, [64]), self._choose(values, kinds), [0])

    def _choose(self, values, kinds):
        doubled = self.where(self.eq(kinds, 2), values * 2.0, values)
        return self.where(self.ne(kinds, 0), doubled, -1.0)


class PythonBoolCondition(anybit.Script):
    def __call__(self, x: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        gx = self.global_view(x, float32, [32])
        self.store_global(gx, self._wrong(self.load_global(gx, [0], [32])), [0])

    def _wrong(self, values):
        return self.where(values != 0, values, 1.0)  # a Python bool outside __call__


def test_eq_and_ne_methods_compare_element_wise_in_helpers():
    rng = np.random.default_rng()
    x = rng.standard_normal(64).astype(np.float32)
    codes = rng.integers(0, 3, 64).astype(np.int32)
    y = np.full(64, np.nan, dtype=np.float32)
    anybit.interpret(KeepNonzero(), x, codes, y)
    expected = np.where(codes != 0, np.where(codes == 2, 2 * x, x), -1.0).astype(np.float32)
    np.testing.assert_array_equal(y, expected)


def test_a_python_bool_condition_names_the_fix():
    with pytest.raises(KernelDefinitionError, match="self.ne"):
        PythonBoolCondition().program(None)
