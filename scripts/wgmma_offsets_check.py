"""Which leading/stride byte offsets wgmma's descriptor takes for the core-matrix form: the shared-memory dot
test program with the emitter's offsets, then with them swapped (a diagnostic; GPU)."""

import sys

import torch

sys.path.insert(0, "tests/lang")
from test_dot_shared import SharedDot  # noqa: E402

import anybit.cuda.emit.dot as dot  # noqa: E402

original = dot.core_matrix_offsets
for name, offsets in (("as emitted", original), ("swapped", lambda n, e=2: original(n, e)[::-1])):
    dot.core_matrix_offsets = offsets
    for m, n, k, warps in ((64, 8, 16, 4), (128, 16, 64, 4), (256, 16, 128, 8)):
        a = torch.randn(m, k, device="cuda").half()
        b = torch.randn(k, n, device="cuda").half()
        c = torch.zeros(m, n, device="cuda")
        try:
            SharedDot(m, n, k, warps)(a, b, c)
            error = float((c.double() - a.double() @ b.double()).norm() / (a.double() @ b.double()).norm())
        except Exception as failure:  # a diagnostic: report and go on
            error = f"{type(failure).__name__}: {str(failure)[:200]}"
        print(f"{name}: M={m} N={n} K={k} warps={warps}: relative error {error}", flush=True)
