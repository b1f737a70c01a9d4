"""anybit: a Python virtual machine for GPU kernels over low-precision data of any bit width.

Each subsystem re-exports its public names here, one section per subsystem.
"""

__version__ = "0.1.0"

# --- data types (anybit.dtypes) ---
from anybit import dtypes as dtypes
from anybit.dtypes import DataType as DataType
from anybit.dtypes import all_types as all_types
from anybit.dtypes import dtype as dtype

globals().update({_type.name: _type for _type in all_types()})  # anybit.int4, anybit.float6_e3m2, ...

# --- layouts (anybit.layout) ---
from anybit import layout as layout  # noqa: E402
from anybit.layout import GlobalLayout as GlobalLayout  # noqa: E402
from anybit.layout import LayoutError as LayoutError  # noqa: E402
from anybit.layout import RegisterLayout as RegisterLayout  # noqa: E402
from anybit.layout import SharedLayout as SharedLayout  # noqa: E402
from anybit.layout import parse_layout as parse_layout  # noqa: E402

# --- the virtual machine (anybit.ir, anybit.lang, anybit.interp) ---
from anybit import ir as ir  # noqa: E402
from anybit import lang as lang  # noqa: E402
from anybit.ir import Program as Program  # noqa: E402
from anybit.ir import PointerType as PointerType  # noqa: E402
from anybit.ir.errors import KernelDefinitionError as KernelDefinitionError  # noqa: E402
from anybit.ir.errors import LayoutInferenceError as LayoutInferenceError  # noqa: E402
from anybit.ir.errors import ProgramError as ProgramError  # noqa: E402
from anybit.ir.errors import VerificationError as VerificationError  # noqa: E402
from anybit.lang import Script as Script  # noqa: E402
from anybit.lang import ptr as ptr  # noqa: E402
from anybit.lang import runtime_helper as runtime_helper  # noqa: E402
from anybit.interp import interpret as interpret  # noqa: E402

# --- runtime (anybit.runtime) ---
from anybit.runtime.autotune import autotune as autotune  # noqa: E402
from anybit.runtime.compiler import ArgSpec as ArgSpec  # noqa: E402
from anybit.runtime.compiler import compile as compile  # noqa: E402

# --- models (anybit.nn) ---
from anybit.nn import QuantizedLinear as QuantizedLinear  # noqa: E402
from anybit.nn import fold_norms as fold_norms  # noqa: E402
from anybit.nn import fuse_attention as fuse_attention  # noqa: E402
from anybit.nn import fuse_mlp as fuse_mlp  # noqa: E402
from anybit.nn import fuse_projections as fuse_projections  # noqa: E402
from anybit.nn import quantize_model as quantize_model  # noqa: E402
