"""The Prometheus text format written by hand."""

from __future__ import annotations

from serving.metrics import ApiMetrics, Counter, Histogram


def test_counter_and_labels() -> None:
    counter = Counter("c_total", "help text", ("a",))
    counter.inc('x"y')
    counter.inc('x"y', amount=2)
    lines = counter.render()
    assert lines[:2] == ["# HELP c_total help text", "# TYPE c_total counter"]
    assert lines[2] == 'c_total{a="x\\"y"} 3'


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram("h_seconds", "h", ("r",), buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 5.0):
        histogram.observe(value, "/x")
    lines = histogram.render()[2:]
    assert lines == [
        'h_seconds_bucket{r="/x",le="0.1"} 1',
        'h_seconds_bucket{r="/x",le="1"} 3',
        'h_seconds_bucket{r="/x",le="+Inf"} 4',
        'h_seconds_sum{r="/x"} 6.05',
        'h_seconds_count{r="/x"} 4',
    ]


def test_model_gauges() -> None:
    metrics = ApiMetrics()
    metrics.serving("lead-scoring", "3")
    text = metrics.render()
    assert 'leadscore_model_info{name="lead-scoring",version="3"} 1' in text
    assert "leadscore_model_loaded 1" in text
    metrics.serving(None, None)
    assert "leadscore_model_loaded 0" in metrics.render()
    assert "lead-scoring" not in metrics.render()
