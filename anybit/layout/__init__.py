"""anybit.layout: register layouts (an algebra over threads and local elements), shared and global layouts.

See ``docs/layouts.md`` for a guide with pictures.
"""

from .algebra import (
    compose,
    concat,
    divide,
    divides,
    flatten,
    left_divide,
    permute,
    product,
    reduce,
    reshape,
    squeeze,
    unsqueeze,
)
from .bank_conflicts import (
    bank_conflicts,
    cp_async_addresses,
    ldmatrix_addresses,
    ldmatrix_x4_origins,
    wavefronts,
)
from .errors import LayoutError, LayoutParseError
from .expression import to_expression
from .global_layout import GlobalLayout, global_column_major, global_row_major, global_strided
from .parse import parse_layout
from .primitives import column_local, column_spatial, local, spatial
from .register import RegisterLayout
from .render import cli_main, draw, show_layout, table
from .shared import (
    SharedLayout,
    XorSwizzle,
    shared_column_major,
    shared_core_matrices,
    shared_padded,
    shared_row_major,
    shared_strided,
    shared_swizzled,
)

__all__ = [
    "GlobalLayout",
    "LayoutError",
    "LayoutParseError",
    "RegisterLayout",
    "SharedLayout",
    "XorSwizzle",
    "bank_conflicts",
    "cli_main",
    "column_local",
    "column_spatial",
    "compose",
    "concat",
    "cp_async_addresses",
    "divide",
    "divides",
    "draw",
    "flatten",
    "global_column_major",
    "global_row_major",
    "global_strided",
    "ldmatrix_addresses",
    "ldmatrix_x4_origins",
    "left_divide",
    "local",
    "parse_layout",
    "permute",
    "product",
    "reduce",
    "reshape",
    "shared_column_major",
    "shared_padded",
    "shared_row_major",
    "shared_core_matrices",
    "shared_strided",
    "shared_swizzled",
    "show_layout",
    "spatial",
    "squeeze",
    "table",
    "to_expression",
    "unsqueeze",
    "wavefronts",
]
