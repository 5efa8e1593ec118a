"""Statistics over timing samples: medians, spreads and speed ratios.

A sample is one worker process's result for one workload on one loop. The
reported figure is the median of the samples and the spread is their full
range (min-max): with a handful of processes per cell an interquartile range
says little. Speed is compared on medians: ``speedup(baseline, candidate)``
is ``baseline / candidate``, how many times faster the candidate ran, so a
value above 1 means the candidate is faster.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Summary", "geomean", "speedup"]


@dataclass(frozen=True)
class Summary:
    """Median and range of a non-empty set of samples, in seconds."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    @property
    def relative_range(self) -> float:
        """(max - min) / median: 0.05 means the samples span 5% of the median."""
        return (self.high - self.low) / self.median


def speedup(baseline: float, candidate: float) -> float:
    """How many times faster ``candidate`` ran than ``baseline`` (> 1: faster)."""
    return baseline / candidate


def geomean(values: Iterable[float]) -> float | None:
    """Geometric mean of positive values; None when there are none."""
    logs = [math.log(v) for v in values]
    return math.exp(sum(logs) / len(logs)) if logs else None
