"""anybit data types: the `DataType` registry, exact numpy encode/decode, and bit-packing.

Every type is a module attribute (``anybit.dtypes.int4``, ``anybit.dtypes.float6_e3m2``, …), generated from
the families in `anybit.dtypes.datatype`; `dtype` resolves names, aliases and numpy/torch dtypes.
"""

from anybit.dtypes.codes import check_codes
from anybit.dtypes.conversion import decode, encode, scaling_is_exact
from anybit.dtypes.datatype import DataType, all_types, packed_types, standard_types, types_of_kind
from anybit.dtypes.packing import pack, pack_values, packed_size, unpack, unpack_values
from anybit.dtypes.resolve import dtype
from anybit.dtypes.table import types_table

# One attribute per type, generated from the registry rather than listed by hand.
globals().update({data_type.name: data_type for data_type in all_types()})

__all__ = [
    "DataType",
    "all_types",
    "check_codes",
    "decode",
    "dtype",
    "encode",
    "pack",
    "pack_values",
    "packed_size",
    "packed_types",
    "scaling_is_exact",
    "standard_types",
    "types_of_kind",
    "types_table",
    "unpack",
    "unpack_values",
    *(data_type.name for data_type in all_types()),
]
