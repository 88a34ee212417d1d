"""Median of runs, percentiles and the ratio convention of the report."""

from __future__ import annotations

import math

import pytest

from bench.stats import median, percentile, ratio


def test_median_of_three_is_the_middle_run() -> None:
    assert median([310.0, 120.0, 205.0]) == 205.0


def test_median_of_two_is_their_mean() -> None:
    assert median([100.0, 200.0]) == 150.0


def test_median_ignores_missing_runs_and_nan() -> None:
    assert median([]) is None
    assert median([math.nan, 4.0]) == 4.0


def test_percentile_interpolates_like_numpy() -> None:
    xs = [10.0, 20.0, 30.0, 40.0]
    assert percentile(xs, 50) == 25.0
    assert percentile(xs, 0) == 10.0
    assert percentile(xs, 100) == 40.0
    assert percentile(xs, 95) == pytest.approx(38.5)
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_ratio_favours_postern_above_one_for_throughput_and_latency() -> None:
    assert ratio(600.0, 300.0, higher_is_better=True) == 2.0
    assert ratio(50.0, 100.0, higher_is_better=False) == 2.0  # half the latency
    assert ratio(None, 1.0, higher_is_better=True) is None
    assert ratio(1.0, 0.0, higher_is_better=True) is None


def test_histogram_percentiles_are_within_two_percent_of_the_exact_ones() -> None:
    import random

    from bench.stats import histogram_percentile, latency_bucket

    rng = random.Random(3)
    xs = [rng.lognormvariate(-6, 1.2) for _ in range(5000)]  # seconds, ~2.5 ms median
    hist: dict[int, int] = {}
    for x in xs:
        b = latency_bucket(x)
        hist[b] = hist.get(b, 0) + 1
    for pct in (50, 90, 99, 99.9):
        exact = sorted(xs)[math.ceil(pct / 100 * len(xs)) - 1]  # nearest rank
        assert histogram_percentile(hist, pct) == pytest.approx(exact, rel=0.02)


def test_histograms_add_up_with_json_keys() -> None:
    from bench.stats import histogram_percentile, latency_bucket, merge_histograms

    a = {str(latency_bucket(0.001)): 3}
    b = {latency_bucket(0.001): 1, latency_bucket(0.5): 1}
    merged = merge_histograms([a, b])
    assert merged == {latency_bucket(0.001): 4, latency_bucket(0.5): 1}
    assert histogram_percentile(merged, 80) == pytest.approx(0.001, rel=0.02)
    assert histogram_percentile(merged, 81) == pytest.approx(0.5, rel=0.02)
    assert histogram_percentile({}, 50) is None
    assert latency_bucket(0.0) == 0  # below 1 µs: the first bucket
    with pytest.raises(ValueError):
        histogram_percentile(merged, 101)
