"""The ptxas report parser and how its numbers merge with the cubin's (no compiler needed)."""

from __future__ import annotations

from anybit.runtime.resources import ResourceUsage, merge_resources, parse_resource_report

LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'first' for 'sm_90a'
ptxas info    : Function properties for first
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'second' for 'sm_90a'
ptxas info    : Function properties for second
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 18 registers, 0 bytes smem
"""


def test_parse_report_picks_the_named_function():
    first = parse_resource_report(LOG, "first")
    assert (first.registers, first.shared_memory_bytes, first.stack_frame_bytes) == (40, 2048, 8)
    assert (first.spill_store_bytes, first.spill_load_bytes, first.barriers) == (4, 12, 1)
    assert first.constant_memory_bytes == 400 and first.spills is True
    second = parse_resource_report(LOG, "second")
    assert second.registers == 18 and second.spills is False
    assert parse_resource_report(LOG).registers == 40


def test_a_missing_report_is_none_not_zero():
    assert parse_resource_report("") is None
    assert parse_resource_report("no report") is None
    assert parse_resource_report(LOG, "third") is None  # another kernel's numbers would be wrong


def test_unknown_spills_are_none_and_print_as_unknown():
    usage = ResourceUsage(registers=10)
    assert usage.spills is None and usage.spill_store_bytes is None
    assert "spills unknown" in str(usage) and "10 registers" in str(usage)


def test_merge_takes_the_cubin_numbers_and_the_log_spills():
    from_cubin = ResourceUsage(registers=32, shared_memory_bytes=1200, stack_frame_bytes=168, barriers=1)
    from_log = ResourceUsage(registers=99, spill_store_bytes=164, spill_load_bytes=160)
    merged = merge_resources(from_cubin, from_log)
    assert merged.registers == 32 and merged.shared_memory_bytes == 1200 and merged.barriers == 1
    assert (merged.spill_store_bytes, merged.spill_load_bytes, merged.spills) == (164, 160, True)
    assert merge_resources(from_cubin, None) == from_cubin
    assert merge_resources(None, from_log) == from_log
    assert merge_resources(None, None) == ResourceUsage()


def test_static_shared_memory_counts_toward_the_opt_in():
    """The default 48 KiB covers static and dynamic bytes together: 128 B static beside exactly 48 KiB
    dynamic fails to launch (CUDA_ERROR_INVALID_VALUE on the H200) unless the kernel opts in."""
    from anybit.runtime.module import needs_shared_opt_in

    assert needs_shared_opt_in(128, 48 * 1024)
    assert needs_shared_opt_in(0, 48 * 1024 + 16)
    assert not needs_shared_opt_in(0, 48 * 1024)
    assert not needs_shared_opt_in(1024, 47 * 1024)
