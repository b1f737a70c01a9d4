"""The benchmark harness's CPU parts: splitting a profile into timed regions, and the read ceiling's basis."""

from __future__ import annotations

import pytest

from benchmarks.harness import interleaved_order, spans_between_markers, timing_of, timings_by_region
from benchmarks.matmul_anchors import best_read

SPIN = "void at::cuda::spin_kernel(long)"


def test_each_region_is_its_kernels_first_start_to_last_end():
    events = [
        (0.0, 5.0, "flush"),
        (5.0, 9.0, SPIN),
        (10.0, 14.0, "ab_decode"),
        (14.5, 15.5, "ab_reduce"),  # a second kernel: the gap between them counts
        (15.6, 16.0, SPIN),
        (16.0, 21.0, "flush"),
        (21.0, 25.0, SPIN),
        (26.0, 33.0, "ab_decode"),
        (33.1, 33.5, SPIN),
    ]
    shuffled = events[::2] + events[1::2]  # the order the profiler lists them in does not matter
    assert spans_between_markers(shuffled, SPIN) == [5.5, 7.0]


def test_regions_that_do_not_pair_up_give_nothing():
    assert spans_between_markers([(0.0, 1.0, SPIN), (2.0, 3.0, "k")], SPIN) is None  # no closing marker
    assert spans_between_markers([(0.0, 1.0, SPIN), (2.0, 3.0, SPIN)], SPIN) is None  # an empty region
    assert spans_between_markers([(0.0, 1.0, "k")], SPIN) is None  # no markers at all


def test_timing_of_takes_median_and_percentiles():
    timing = timing_of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (timing.median_us, timing.p10_us, timing.p90_us, timing.runs) == (3.0, 1.0, 5.0, 5)


def test_read_ceiling_is_kernel_time_only_when_every_candidate_has_one():
    events = {"sum": 4.39, "amax": 4.38}
    record = best_read(events, {"sum": 4.41, "amax": 4.45})
    assert (record["basis"], record["best"], record["best_tb_s"]) == ("kernel", "amax", 4.45)
    record = best_read(events, {"sum": 4.41, "amax": None})
    assert (record["basis"], record["best"], record["best_tb_s"]) == ("events", "sum", 4.39)


def test_regions_timed_in_turns_take_each_place_equally_often():
    order = interleaved_order(2, 4)
    assert order == [0, 1, 1, 0, 0, 1, 1, 0]  # A B, B A: neither always runs first after the flush
    three = interleaved_order(3, 3)
    assert sorted(three) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert {three[slot * 3] for slot in range(3)} == {0, 1, 2}  # each region leads one round
    with pytest.raises(ValueError, match="at least one region and one run"):
        interleaved_order(0, 4)


def test_samples_in_turns_go_back_to_their_regions():
    timings = timings_by_region([0, 1, 1, 0, 0, 1], [1.0, 10.0, 12.0, 3.0, 2.0, 11.0])
    assert [t.median_us for t in timings] == [2.0, 11.0] and [t.runs for t in timings] == [3, 3]
    with pytest.raises(ValueError, match="5 samples for 6 timed slots"):
        timings_by_region([0, 1, 1, 0, 0, 1], [1.0] * 5)
