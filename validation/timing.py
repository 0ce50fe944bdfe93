"""One small timing module: warm up by time, then measure at least N runs and at least D seconds.

Shaped after timm's ``benchmark.py`` and trtexec: one timer chosen once
(``time.perf_counter_ns``; a GPU runner's ``run_bound`` synchronises before it returns, so
the host clock sees the whole inference), warm-up before anything is recorded, every
iteration timed on its own, and a report of min / median / mean / p90 / p99 / max with the
coefficient of variation, flagged when the machine was too noisy to trust. The statistics
are a pure function of the durations, so they are tested on synthetic timings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

NOISY_CV = 0.05  # trtexec-style warning threshold on the coefficient of variation
NOISY_WARNING = "noisy machine; lock clocks / close other work"
Clock = Callable[[], int]  # nanoseconds


@dataclass(frozen=True)
class Method:
    """How a measurement was taken; stated beside every table so figures can be judged."""

    warmup_ms: float = 200.0
    duration_s: float = 3.0
    min_iterations: int = 10
    include_transfers: bool = False

    def describe(self) -> str:
        inputs = ("inputs copied to the device on every run (--include-transfers)"
                  if self.include_transfers else "inputs resident on the device (bound once)")
        return (f"warm-up {self.warmup_ms:g} ms, then at least {self.min_iterations} iterations "
                f"and at least {self.duration_s:g} s; each iteration timed with "
                f"time.perf_counter_ns around a synchronised inference; {inputs}; "
                f"latency per batch, throughput = batch size / mean latency")


@dataclass(frozen=True)
class TimingStats:
    """Latency statistics of one measured configuration (milliseconds per batch)."""

    min_ms: float
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput_ips: float  # images per second at this batch size
    cv: float  # standard deviation / mean
    iterations: int
    batch_size: int

    @property
    def noisy(self) -> bool:
        return self.cv > NOISY_CV

    @property
    def warning(self) -> str | None:
        if not self.noisy:
            return None
        return f"coefficient of variation {self.cv:.1%} > {NOISY_CV:.0%}: {NOISY_WARNING}"

    def latency_ms(self) -> dict[str, float]:
        return {"min": self.min_ms, "median": self.median_ms, "mean": self.mean_ms,
                "p90": self.p90_ms, "p99": self.p99_ms, "max": self.max_ms}

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "noisy": self.noisy}


def summarize(durations_ms: Sequence[float], batch_size: int = 1) -> TimingStats:
    """Statistics of per-iteration durations (ms); a pure function, no clock involved."""
    if not durations_ms:
        raise ValueError("no timings to summarise: run at least one iteration")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    ordered = sorted(float(d) for d in durations_ms)
    count = len(ordered)
    mean = math.fsum(ordered) / count
    variance = math.fsum((d - mean) ** 2 for d in ordered) / (count - 1) if count > 1 else 0.0
    median, p90, p99 = (float(p) for p in np.percentile(ordered, [50, 90, 99]))  # linear
    return TimingStats(
        min_ms=ordered[0], median_ms=median, mean_ms=mean,
        p90_ms=p90, p99_ms=p99, max_ms=ordered[-1],
        throughput_ips=batch_size * 1000.0 / mean if mean > 0 else math.inf,
        cv=math.sqrt(variance) / mean if mean > 0 else 0.0,
        iterations=count, batch_size=batch_size)


def collect(run: Callable[[], object], method: Method = Method(), *,
            clock: Clock = time.perf_counter_ns) -> list[float]:
    """Warm ``run`` up for ``method.warmup_ms``, then time it; returns durations in ms.

    Stops once both ``min_iterations`` runs and ``duration_s`` seconds are reached. ``clock``
    is injectable so the loop's logic can be tested without real time.
    """
    warmup_ns = method.warmup_ms * 1e6
    start = clock()
    while True:  # at least one warm-up run: first runs allocate, compile, pick kernels
        run()
        if clock() - start >= warmup_ns:
            break
    durations: list[float] = []
    duration_ns = method.duration_s * 1e9
    start = clock()
    now = start
    while len(durations) < method.min_iterations or now - start < duration_ns:
        before = clock()
        run()
        now = clock()
        durations.append((now - before) / 1e6)
    return durations


def measure(run: Callable[[], object], batch_size: int = 1, method: Method = Method(), *,
            clock: Clock = time.perf_counter_ns) -> TimingStats:
    """Time ``run`` (one synchronised inference of ``batch_size`` images) and summarise."""
    return summarize(collect(run, method, clock=clock), batch_size)
