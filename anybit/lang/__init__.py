"""The kernel author's front end: ``Script`` classes whose ``__call__`` is transpiled into a VM program."""

from anybit.ir.expr import PointerType as ptr
from anybit.lang.builder import Builder, current_builder
from anybit.lang.control import RangeSpec
from anybit.lang.script import Attributes, BlockIndices, Parameter, Script, runtime_helper
from anybit.lang.transpiler import transpile

__all__ = [
    "Script",
    "runtime_helper",
    "ptr",
    "Attributes",
    "BlockIndices",
    "Parameter",
    "RangeSpec",
    "Builder",
    "current_builder",
    "transpile",
]
