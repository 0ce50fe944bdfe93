"""The ranges every number and every file crossrt reads must fall in, checked before any work.

A number outside its range is a typo or an attack, never a request: ``--duration-s 1e300``
would time one cell forever, ``--threads 10000`` start ten thousand threads, a 95-byte PNG of
1x5000 pixels would be resized to 256x1,280,000. Each is refused up front with one line that
names the flag and the range (README: Limits).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import UsageError

_CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of one flag's value."""

    flag: str
    low: float
    high: float
    unit: str = ""

    def check(self, value: float | None) -> None:
        """Refuse ``value`` outside the range (and NaN); None means the flag was not given."""
        if value is None:
            return
        if not (self.low <= value <= self.high):  # NaN fails both comparisons
            unit = f" {self.unit}" if self.unit else ""
            raise UsageError(f"{self.flag} must be between {_number(self.low)} and "
                             f"{_number(self.high)}{unit}, got {_number(value)}")


def _number(value: float) -> str:
    """1000000 as 1,000,000; 0.5 as 0.5; inf as inf."""
    whole = math.isfinite(value) and abs(value) < 1e15 and value == int(value)
    return f"{int(value):,}" if whole else f"{value:g}"


DURATION_S = Range("--duration-s", 0, 3600, "s")  # an hour per bench cell
WARMUP_MS = Range("--warmup-ms", 0, 600_000, "ms")  # ten minutes of warm-up
MIN_ITERATIONS = Range("--min-iterations", 1, 1_000_000)
THREADS = Range("--threads", 1, 4 * _CPUS)  # more threads than 4 per CPU only contend
WORKERS = Range("--workers", 0, 4 * _CPUS)
RANDOM = Range("--random", 0, 10_000)
SEED = Range("--seed", 0, 2**32 - 1)
LIMIT = Range("--limit", 1, math.inf)

IMAGE_BYTES = 256 << 20  # a photograph file
IMAGE_PIXELS = 100_000_000  # 100 megapixels, decoded
IMAGE_ASPECT = 20  # long side / short side: resized to the short side, the long one stays sane
TEXT_BYTES = 256 << 20  # list files (--labels)


def check_file_size(path: Path, limit: int, what: str) -> int:
    """``path``'s size, refused past ``limit`` bytes before anything reads it."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror}") from None
    if size > limit:
        raise UsageError(f"{what} {path} is {size / (1 << 20):,.0f} MiB, past crossrt's limit of "
                         f"{limit >> 20} MiB for it; is it the right file?")
    return size


def check_image_size(path: str | Path, width: int, height: int) -> None:
    """An image's decoded size within IMAGE_PIXELS and IMAGE_ASPECT."""
    if width < 1 or height < 1 or width * height > IMAGE_PIXELS or \
            max(width, height) > IMAGE_ASPECT * min(width, height):
        raise UsageError(f"image {path} is {width}x{height} pixels: crossrt reads images of at "
                         f"most {IMAGE_PIXELS // 1_000_000} megapixels whose long side is at most "
                         f"{IMAGE_ASPECT}x the short one; resize or crop it first")
