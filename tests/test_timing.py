"""The timing statistics on synthetic durations and the measuring loop on a fake clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from validation.timing import NOISY_CV, Method, collect, measure, summarize


def test_statistics_match_numpy_on_synthetic_timings():
    durations = list(np.random.default_rng(3).gamma(4.0, 2.0, size=257))
    stats = summarize(durations, batch_size=4)
    assert stats.min_ms == pytest.approx(min(durations))
    assert stats.max_ms == pytest.approx(max(durations))
    assert stats.median_ms == pytest.approx(np.median(durations))
    assert stats.mean_ms == pytest.approx(np.mean(durations))
    assert stats.p90_ms == pytest.approx(np.percentile(durations, 90))
    assert stats.p99_ms == pytest.approx(np.percentile(durations, 99))
    assert stats.cv == pytest.approx(np.std(durations, ddof=1) / np.mean(durations))
    assert stats.throughput_ips == pytest.approx(4 * 1000 / np.mean(durations))
    assert stats.iterations == 257 and stats.batch_size == 4
    assert stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_order_of_durations_does_not_matter():
    assert summarize([5.0, 1.0, 3.0]) == summarize([1.0, 3.0, 5.0])


def test_steady_timings_are_not_noisy():
    stats = summarize([2.0] * 50)
    assert stats.cv == 0.0 and not stats.noisy and stats.warning is None
    assert stats.as_dict()["noisy"] is False


def test_high_variation_is_flagged_with_advice():
    stats = summarize([1.0, 1.2] * 20)  # cv about 9%
    assert stats.cv > NOISY_CV and stats.noisy
    assert "lock clocks" in stats.warning and "9." in stats.warning


def test_single_sample_and_bad_input():
    one = summarize([3.0], batch_size=8)
    assert (one.min_ms, one.median_ms, one.p99_ms, one.cv) == (3.0, 3.0, 3.0, 0.0)
    assert one.throughput_ips == pytest.approx(8 / 0.003)
    with pytest.raises(ValueError, match="no timings"):
        summarize([])
    with pytest.raises(ValueError, match="batch size"):
        summarize([1.0], batch_size=0)


class FakeClock:
    """Time advances only when the timed function runs, by ``step_ns`` each call."""

    def __init__(self, step_ns: int):
        self.now, self.step_ns, self.runs = 0, step_ns, 0

    def __call__(self) -> int:
        return self.now

    def run(self) -> None:
        self.runs += 1
        self.now += self.step_ns


def test_loop_warms_up_by_time_then_meets_duration_and_iterations():
    clock = FakeClock(step_ns=2_000_000)  # 2 ms per run
    durations = collect(clock.run, Method(warmup_ms=10, duration_s=0.1, min_iterations=5),
                        clock=clock)
    assert len(durations) == 50  # 0.1 s of 2 ms runs; more than min_iterations
    assert all(d == pytest.approx(2.0) for d in durations)
    assert clock.runs == 5 + 50  # 10 ms of warm-up runs were not recorded


def test_min_iterations_wins_over_a_short_duration():
    clock = FakeClock(step_ns=30_000_000)
    stats = measure(clock.run, batch_size=2,
                    method=Method(warmup_ms=0, duration_s=0.01, min_iterations=7), clock=clock)
    assert stats.iterations == 7
    assert stats.median_ms == pytest.approx(30.0)
    assert clock.runs == 1 + 7  # warm-up runs at least once
    assert math.isclose(stats.throughput_ips, 2 / 0.030)


def test_method_is_stated_in_words():
    text = Method(warmup_ms=150, duration_s=2, min_iterations=12).describe()
    assert "150 ms" in text and "12 iterations" in text and "2 s" in text
    assert "resident on the device" in text
    assert "copied to the device" in Method(include_transfers=True).describe()
