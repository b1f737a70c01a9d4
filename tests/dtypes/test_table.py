"""The `anybit types` table."""

from anybit.dtypes import all_types, types_table
from anybit.dtypes.table import format_code


def test_one_aligned_row_per_type():
    lines = types_table().splitlines()
    assert lines[0].split()[:4] == ["name", "short", "bits", "kind"]
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == [t.name for t in all_types()]
    # Aligned: the short name starts in the same column on every row.
    column = lines[0].index("short")
    assert all(row[column:].split()[0] == t.short_name for row, t in zip(rows, all_types(), strict=True))


def test_rows_show_ranges_specials_and_codes():
    rows = {line.split()[0]: line for line in types_table().splitlines()[2:]}
    assert (
        "448" in rows["float8_e4m3"]
        and " nan " in rows["float8_e4m3"]
        and "0.1111.110" in rows["float8_e4m3"]
    )
    assert "inf, nan" in rows["float8_e5m2"] and "0.01111.00" in rows["float8_e5m2"]
    assert "0x3c00" in rows["float16"] and "65504" in rows["float16"]
    assert rows["int3"].split()[4:6] == ["-4", "3"]


def test_format_code():
    import anybit

    assert format_code(0b0_0111_000, anybit.float8_e4m3) == "0.0111.000"
    assert format_code(0b0_1_0, anybit.float3_e1m1) == "0.1.0"
    assert format_code(0b0_11, anybit.float3_e2m0) == "0.11"
    assert format_code(5, anybit.int4) == "0101"
