"""The verifier: one test per rule; every message names the instruction and the author's line."""

import dataclasses

import pytest

import anybit
from anybit import float16, float32, int32
from anybit.ir import CastInst, Program, VerificationError
from anybit.layout import spatial
from anybit.passes import infer_layouts, verify

from .kernels import MatmulInt6


def _replace_first(program: Program, cls, **changes) -> Program:
    body = list(program.body)
    for i, stmt in enumerate(body):
        if isinstance(stmt, cls):
            body[i] = dataclasses.replace(stmt, **changes)
            break
    return dataclasses.replace(program, body=tuple(body))


class Shared(anybit.Script):
    def __call__(self, p: anybit.ptr(float16), mode: int):
        self.attrs.blocks = [1]
        g = self.global_view(p, float16, [64, 64])
        s = self.shared_tensor(float16, [2, 32, 32])
        if mode == 0:
            self.store_shared(s[1], self.load_global(g, [0, 0], [32, 32]))
        else:
            self.copy_async(g, s[1], [0, 0])
            self.copy_async_commit_group()
            if mode == 2:
                self.copy_async_wait_group(0)
        x = self.load_shared(s[1])
        self.store_global(g, x, [0, 0])


@pytest.mark.parametrize(
    "mode, fix", [(0, r"add self\.sync\(\)"), (1, r"wait for it"), (2, r"add self\.sync")]
)
def test_shared_read_after_write_without_sync(mode, fix):
    with pytest.raises(VerificationError, match=fix) as info:
        verify(Shared().trace(mode=mode))
    assert info.value.instruction == "load_shared"
    assert info.value.source.text == "x = self.load_shared(s[1])"


def test_writes_to_other_stages_are_not_reported():
    """Only provable hazards are errors: a different constant stage, or a run-time stage index that is not
    the same expression (a pipeline's prefetch into ``s[(k + 1) % 2]`` while reading ``s[k % 2]``)."""

    class Pipelined(Shared):
        def __call__(self, p: anybit.ptr(float16)):
            self.attrs.blocks = [1]
            g = self.global_view(p, float16, [64, 64])
            s = self.shared_tensor(float16, [2, 32, 32])
            self.store_shared(s[0], self.load_global(g, [0, 0], [32, 32]))
            self.sync()
            self.store_shared(s[1], self.load_shared(s[0]))
            for k in self.range(4):
                self.copy_async(g, s[(k + 1) % 2], [0, 0])
                self.copy_async_commit_group()
                self.store_global(g, self.load_shared(s[k % 2]), [0, 0])
                self.copy_async_wait_group(0)
                self.sync()

    verify(infer_layouts(Pipelined().trace()))


def test_shared_read_after_sync_is_fine():
    class Synced(Shared):
        def __call__(self, p: anybit.ptr(float16)):
            self.attrs.blocks = [1]
            g = self.global_view(p, float16, [64, 64])
            s = self.shared_tensor(float16, [2, 32, 32])
            for k in self.range(4):
                self.copy_async(g, s[k % 2], [0, 0])
                self.copy_async_commit_group()
                self.copy_async_wait_group(0)
                self.sync()
                self.store_global(g, self.load_shared(s[k % 2]), [0, 0])
                self.sync()

    verify(infer_layouts(Synced().trace()))


class Views(anybit.Script):
    def __call__(self, p: anybit.ptr(anybit.uint8), threads_ok: bool):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        g = self.global_view(p, anybit.uint8, [96])
        x = self.load_global(g, [0], [96], layout=spatial(32).local(3))
        bad = spatial(8, 4).local(1, 2) if threads_ok else spatial(16).local(8)
        self.view(x, anybit.int6, layout=bad)


def test_view_bits_per_thread_and_threads():
    with pytest.raises(
        VerificationError, match=r"in `view`: expected the same bits per thread, got 24 .* 12"
    ):
        verify(Views().trace(threads_ok=True))
    with pytest.raises(VerificationError, match=r"expected a view over the same threads"):
        verify(Views().trace(threads_ok=False))


def test_cast_must_keep_layout():
    program = infer_layouts(MatmulInt6().trace(n=64, k=64))
    loop = program.body[5]
    cast = next(s for s in loop.body if isinstance(s, CastInst))
    other = dataclasses.replace(cast.output, layout=spatial(32).local(4))
    bad_loop = dataclasses.replace(
        loop, body=tuple(dataclasses.replace(s, output=other) if s is cast else s for s in loop.body)
    )
    bad = dataclasses.replace(program, body=(*program.body[:5], bad_loop, *program.body[6:]))
    with pytest.raises(VerificationError, match=r"in `cast`: expected cast to keep the layout"):
        verify(bad)


def test_dot_with_incompatible_layout():
    class BadDot(anybit.Script):
        def __call__(self, p: anybit.ptr(float16)):
            self.attrs.blocks = [1]
            self.attrs.warps = 1
            g = self.global_view(p, float16, [16, 16])
            a = self.load_global(g, [0, 0], [16, 16], layout=spatial(8, 4).local(2, 4))
            b = self.load_global(g, [0, 0], [16, 8])
            self.dot(a, b, self.register_tensor(float32, [16, 8], init=0))

    with pytest.raises(
        VerificationError,
        match=r"in `dot`: operand a has layout .* incompatible with the "
        r"tensor-core A layout",
    ) as info:
        verify(BadDot().trace())
    assert "self.dot(a, b" in info.value.source.text


def test_dot_with_unsupported_dtype():
    class F32Dot(anybit.Script):
        def __call__(self):
            self.attrs.blocks = [1]
            a = self.register_tensor(float32, [16, 16], init=0)
            b = self.register_tensor(float32, [16, 8], init=0)
            self.dot(a, b, self.register_tensor(float32, [16, 8], init=0))

    message = r"in `dot`: expected float16, bfloat16, int8, uint8 or uint1"
    with pytest.raises(VerificationError, match=message):
        verify(F32Dot().trace())


def test_load_offsets_and_dtype_mismatch():
    program = MatmulInt6().trace(n=64, k=64)
    from anybit.ir import StoreGlobalInst

    store = next(s for s in program.body if isinstance(s, StoreGlobalInst))
    with pytest.raises(VerificationError, match=r"in `store_global`: expected 2 offsets .* got 1"):
        verify(_replace_first(program, StoreGlobalInst, offsets=store.offsets[:1]))
    value = dataclasses.replace(store.value, dtype=float32)
    with pytest.raises(VerificationError, match=r"to have one dtype, got float32 and float16"):
        verify(_replace_first(program, StoreGlobalInst, value=value))


def test_use_of_value_defined_inside_runtime_body():
    class Leak(anybit.Script):
        def __call__(self, p: anybit.ptr(float32), n: int32):
            self.attrs.blocks = [1]
            g = self.global_view(p, float32, [128])
            for _ in self.range(n):
                x = self.load_global(g, [0], [128])
            self.store_global(g, x, [0])

    with pytest.raises(
        VerificationError, match=r"tensor x is used where it is not defined on every path"
    ) as info:
        verify(Leak().trace())
    assert info.value.source.text == "self.store_global(g, x, [0])"


def test_view_shape_mismatch_is_caught_when_built():
    with pytest.raises(anybit.KernelDefinitionError, match=r"in `view`: expected int6\[4\] to hold"):

        class Wrong(anybit.Script):
            def __call__(self):
                self.attrs.blocks = [1]
                self.view(self.register_tensor(int32, [4]), anybit.int6, shape=[4])

        Wrong().trace()


def test_validate_env_verifies_after_every_pass(monkeypatch):
    calls = []
    import anybit.passes as passes

    monkeypatch.setenv("ANYBIT_VALIDATE", "1")
    monkeypatch.setattr(passes, "verify", lambda program, **kw: calls.append(kw) or program)
    passes.run_passes(MatmulInt6().trace(n=64, k=64), passes.DEFAULT_PASSES)
    assert len(calls) == 1 + len(passes.DEFAULT_PASSES)
    monkeypatch.setenv("ANYBIT_VALIDATE", "0")
    calls.clear()
    passes.run_passes(MatmulInt6().trace(n=64, k=64), passes.DEFAULT_PASSES)
    assert calls == []
