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

# --- the virtual machine (anybit.ir, anybit.lang, anybit.interp) ---
