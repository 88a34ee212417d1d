"""Small statistics the report needs: medians of runs, percentiles of latencies, ratios."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def median(values: Sequence[float]) -> float | None:
    """The median of the runs that produced a figure (None when none did)."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return None
    mid = len(xs) // 2
    if len(xs) % 2:
        return xs[mid]
    return (xs[mid - 1] + xs[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (pct in 0..100), as numpy's default method."""
    xs = sorted(values)
    if not xs:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    pos = (len(xs) - 1) * pct / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ratio(postern: float | None, peer: float | None, *, higher_is_better: bool) -> float | None:
    """How many times better Postern is than the peer (>1 = Postern better).

    For throughput that is postern/peer; for a latency or a duration it is peer/postern.
    """
    if postern is None or peer is None:
        return None
    num, den = (postern, peer) if higher_is_better else (peer, postern)
    if den <= 0:
        return None
    return num / den


# Latency histograms: log-spaced buckets (2 % wide) from 1 µs, so p99 is within 2 % of the
# exact value, however many commands a run has, and load generator processes can add
# their histograms up (percentiles of percentiles would not be percentiles of the whole).
BUCKET_GROWTH = 1.02
_LOG_GROWTH = math.log(BUCKET_GROWTH)


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency: bucket b holds [1.02**b, 1.02**(b+1)) µs."""
    micros = max(1.0, seconds * 1e6)
    return int(math.log(micros) / _LOG_GROWTH)


def bucket_seconds(bucket: int) -> float:
    """A bucket's representative latency (its geometric middle), in seconds."""
    return float(BUCKET_GROWTH ** (bucket + 0.5) / 1e6)


def merge_histograms(hists: Sequence[Mapping[Any, int]]) -> dict[int, int]:
    """The sum of histograms (bucket keys may be JSON's strings)."""
    out: dict[int, int] = {}
    for h in hists:
        for b, n in h.items():
            out[int(b)] = out.get(int(b), 0) + int(n)
    return out


def histogram_percentile(hist: dict[int, int], pct: float) -> float | None:
    """The pct-th percentile (nearest rank) of a latency histogram, in seconds."""
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return bucket_seconds(b)
    return bucket_seconds(max(hist))  # not reached: seen ends at total ≥ rank
