"""Layout inference: give every register tensor without a layout one, from the instructions around it.

Constraint propagation to a fixed point. Sources: layouts the author wrote (``layout=``), ``annotate_layout``
and ``dot`` (MMA operand layouts, see ``layout_rules``). Rules, applied in both directions where they can be:

* element-wise ops and ``where``: the result and every full-shape operand share one layout; an operand
  broadcast along some dimensions gets ``reduce(result_layout, dims, keepdims=True)`` (replicated);
* ``cast`` keeps the layout; ``view`` keeps it when the shape and bit width stay, else a 1-D side gets each
  thread's bits as contiguous elements (``layout_rules.view_layout``);
* reductions: the result gets ``reduce(operand_layout, [dim])``; masks share their tile's layout;
* loads have no rule of their own: they take the layout of the instructions that consume their result;
* ``assign`` copies a layout only to fill an unknown side (it may move data between layouts).

When the fixed point leaves tensors undecided, the largest one gets the default layout and propagation
resumes. Every rule is then checked once more; a violation raises :class:`LayoutInferenceError` naming the
tensor, both instructions with their source lines, and the two layouts.
"""

from __future__ import annotations

import math

from anybit.ir.errors import LayoutInferenceError, where
from anybit.ir.instructions import (
    AnnotateLayoutInst,
    AssignInst,
    AtomicAddGlobalInst,
    BinaryInst,
    CastInst,
    DotInst,
    DotSharedInst,
    Instruction,
    LoadGlobalInst,
    ReduceInst,
    StoreGlobalInst,
    UnaryInst,
    ViewInst,
    WhereInst,
    register_operand_tensors,
)
from anybit.ir.rewrite import substitute
from anybit.ir.statements import Program, instructions
from anybit.ir.tensors import RegisterTensor
from anybit.layout import LayoutError, RegisterLayout, reduce
from anybit.passes.layout_rules import default_layout, mma_layouts, view_layout


class _Solver:
    """Layouts decided so far (by tensor identity), with the reason each was decided."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.layouts: dict[int, RegisterLayout] = {}
        self.reasons: dict[int, str] = {}
        self.tensors: dict[int, RegisterTensor] = {}
        self.checking = False
        self.changed = False

    def reason(self, inst: Instruction | None, why: str) -> str:
        if inst is None:
            return why
        return f"`{inst.name}` at {where(inst.source)} ({why})"

    def get(self, tensor) -> RegisterLayout | None:
        return self.layouts.get(id(tensor)) if isinstance(tensor, RegisterTensor) else None

    def set(self, tensor, layout: RegisterLayout, inst: Instruction, why: str, *, soft: bool = False) -> None:
        """Decide ``tensor``'s layout; a different earlier decision is a conflict (unless ``soft``)."""
        if not isinstance(tensor, RegisterTensor):
            return
        current = self.layouts.get(id(tensor))
        if current is None:
            if self.checking:
                return
            if tuple(layout.shape) != tuple(tensor.shape):
                raise LayoutInferenceError(
                    f"layout {layout} of shape {list(layout.shape)} does not fit register tensor "
                    f"{tensor.name} "
                    f"of shape {list(tensor.shape)} ({why})",
                    instruction=inst.name,
                    source=inst.source,
                )
            self.layouts[id(tensor)] = layout
            self.reasons[id(tensor)] = self.reason(inst, why)
            self.changed = True
        elif current != layout and not soft:
            raise LayoutInferenceError(
                f"layout conflict for register tensor {tensor.name} "
                f"({tensor.dtype.name}{list(tensor.shape)}): "
                f"this instruction needs {layout} ({why}), but it has {current} from "
                f"{self.reasons[id(tensor)]}; annotate one of them or convert with self.assign",
                instruction=inst.name,
                source=inst.source,
            )

    def fail(self, inst: Instruction, message: str) -> LayoutInferenceError:
        return LayoutInferenceError(message, instruction=inst.name, source=inst.source)

    # ----------------------------------------------------------------------------------------- rules
    def apply(self, inst: Instruction) -> None:
        if isinstance(inst, CastInst):
            self._cast(inst)
        elif isinstance(inst, UnaryInst):
            self._same(inst, [inst.output, inst.operand], "same layout as its operand")
        elif isinstance(inst, (BinaryInst, WhereInst)):
            self._elementwise(inst)
        elif isinstance(inst, ViewInst):
            self._view(inst)
        elif isinstance(inst, DotInst):
            self._dot(inst)
        elif isinstance(inst, DotSharedInst):
            self._dot_shared(inst)
        elif isinstance(inst, ReduceInst):
            known = self.get(inst.operand)
            if known is not None:
                self.set(
                    inst.output,
                    reduce(known, [inst.dim], keepdims=inst.keepdim),
                    inst,
                    f"{inst.op} over dimension {inst.dim} of {inst.operand.name}",
                )
        elif isinstance(inst, LoadGlobalInst):
            if inst.mask is not None:
                self._same(inst, [inst.output, inst.mask], "a mask has its tile's layout")
        elif isinstance(inst, (StoreGlobalInst, AtomicAddGlobalInst)):
            if inst.mask is not None:
                self._same(inst, [inst.value, inst.mask], "a mask has its tile's layout")
        elif isinstance(inst, AssignInst):
            for source, target in ((inst.operand, inst.output), (inst.output, inst.operand)):
                known = self.get(source)
                if known is not None:
                    self.set(target, known, inst, f"copied from {source.name}", soft=True)
        elif isinstance(inst, AnnotateLayoutInst):
            self.set(inst.tensor, inst.layout, inst, "annotated")

    def _same(self, inst: Instruction, tensors: list, why: str) -> None:
        known = next((self.get(t) for t in tensors if self.get(t) is not None), None)
        if known is not None:
            for tensor in tensors:
                self.set(tensor, known, inst, why)

    def _cast(self, inst: CastInst) -> None:
        """The operand's layout, or a given output layout holding the same elements per thread in another
        local order (a cast that reorders, e.g. pair-interleaved codes into tensor-core order); ``subtract``
        gets the output's layout reduced over its broadcast dimensions."""
        for plane in (inst.operand,) if inst.high is None else (inst.operand, inst.high):
            if plane.rank > inst.output.rank:  # a uint1 plane [..., h]: its layout is its view's own
                continue
            output, operand = self.get(inst.output), self.get(plane)
            reorders = output is not None and operand is not None and output.holds_same_elements(operand)
            if not reorders:
                self._same(inst, [inst.output, plane], "same layout as its operand")
        subtract, known = inst.subtract, self.get(inst.output)
        if subtract is not None and known is not None:
            pairs = enumerate(zip(subtract.shape, inst.output.shape, strict=True))
            dims = [d for d, (a, b) in pairs if a != b]
            why = f"broadcast along dimensions {dims}: {inst.output.name}'s layout reduced over them"
            self.set(subtract, reduce(known, dims, keepdims=True) if dims else known, inst, why)

    def _elementwise(self, inst: Instruction) -> None:
        output = inst.output
        operands = [v for v in register_operand_tensors(inst) if v is not output]
        full = [output] + [v for v in operands if tuple(v.shape) == tuple(output.shape)]
        self._same(inst, full, "element-wise operands and result share a layout")
        known = self.get(output)
        if known is None:
            return
        for operand in operands:
            if tuple(operand.shape) != tuple(output.shape):
                pairs = enumerate(zip(operand.shape, output.shape, strict=True))
                dims = [d for d, (a, b) in pairs if a != b]
                self.set(
                    operand,
                    reduce(known, dims, keepdims=True),
                    inst,
                    f"broadcast along dimensions {dims}: {output.name}'s layout reduced over them",
                )

    def _view(self, inst: ViewInst) -> None:
        a, b = inst.operand, inst.output
        if a.dtype.nbits == b.dtype.nbits and tuple(a.shape) == tuple(b.shape):
            if self.get(a) is not None and self.get(b) is not None:
                return  # both given: the view reinterprets the registers (e.g. a square tile transposed)
            self._same(inst, [a, b], "a view with the same shape and bit width keeps the layout")
            return
        for known_tensor, other in ((a, b), (b, a)):
            known = self.get(known_tensor)
            if known is not None and self.get(other) is None and not self.checking:
                layout = view_layout(known, known_tensor.dtype.nbits, tuple(other.shape), other.dtype.nbits)
                if layout is None:
                    raise self.fail(
                        inst,
                        f"cannot infer the layout of {other.name} "
                        f"({other.dtype.name}{list(other.shape)}) from {known_tensor.name}'s "
                        f"{known}; pass layout= to self.view or annotate {other.name}",
                    )
                self.set(
                    other,
                    layout,
                    inst,
                    f"each thread's bits of {known_tensor.name} as contiguous {other.dtype.name} elements",
                )

    def _dot(self, inst: DotInst) -> None:
        (m, k), n = inst.a.shape[-2:], inst.b.shape[-1]
        batch = inst.a.shape[0] if inst.a.rank == 3 else None
        if inst.a.dtype is not inst.b.dtype:
            raise self.fail(
                inst,
                f"expected operands a and b of one dtype, got {inst.a.dtype.name} and {inst.b.dtype.name}",
            )
        b = self._mma_roles(inst, m, n, k, batch)
        self.set(inst.b, b, inst, "tensor-core operand B")

    def _dot_shared(self, inst: DotSharedInst) -> None:
        """a and c in registers take the tensor cores' A and C layouts (b is read from shared memory)."""
        (m, k), n = inst.a.shape, inst.b.shape[2]
        self._mma_roles(inst, m, n, k, None)

    def _mma_roles(self, inst, m: int, n: int, k: int, batch: int | None) -> RegisterLayout:
        """Give a dot's a, c and output the tensor-core A and C layouts; returns the B layout."""
        layouts = mma_layouts(m, n, k, inst.a.dtype, self.program.num_warps, batch)
        if isinstance(layouts, str):
            raise self.fail(inst, layouts)
        a, b, c = layouts
        self.set(inst.a, a, inst, "tensor-core operand A")
        self.set(inst.c, c, inst, "tensor-core accumulator C")
        self.set(inst.output, c, inst, "tensor-core result")
        return b

    # ----------------------------------------------------------------------------------------- solve
    def solve(self) -> dict[int, RegisterTensor]:
        insts = list(instructions(self.program.body))
        for inst in insts:
            for tensor in register_operand_tensors(inst):
                self.tensors.setdefault(id(tensor), tensor)
                if tensor.layout is not None and id(tensor) not in self.layouts:
                    self.layouts[id(tensor)] = tensor.layout
                    self.reasons[id(tensor)] = f"the layout given where {tensor.name} was created"
        try:
            while True:
                self.changed = True
                while self.changed:
                    self.changed = False
                    for inst in insts:
                        self.apply(inst)
                undecided = [t for t in self.tensors.values() if id(t) not in self.layouts]
                if not undecided:
                    break
                tensor = max(undecided, key=lambda t: math.prod(t.shape))
                self.layouts[id(tensor)] = default_layout(
                    tuple(tensor.shape), tensor.dtype, self.program.num_threads
                )
                self.reasons[id(tensor)] = f"the default layout for {tensor.name}"
            self.checking = True
            for inst in insts:
                self.apply(inst)
        except LayoutError as error:
            raise LayoutInferenceError(f"layout algebra failed: {error}") from error
        return {
            key: RegisterTensor(tensor.name, tensor.dtype, tensor.shape, self.layouts[key])
            for key, tensor in self.tensors.items()
            if tensor.layout is None
        }


def infer_layouts(program: Program) -> Program:
    """``program`` with a layout for every register tensor (see the module docstring for the rules)."""
    return substitute(program, _Solver(program).solve())


def inferred_layouts(program: Program) -> dict[str, RegisterLayout]:
    """Tensor name -> layout, as inference decides them (for inspection and tests)."""
    solver = _Solver(program)
    solver.solve()
    return {tensor.name: solver.layouts[key] for key, tensor in solver.tensors.items()}
