"""Tests for lvgateway.metrics: names follow the rules, every series exists from the start."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest

from lvgateway import metrics


def exposition(registry: object) -> str:
    """Return the registry's text exposition."""
    return generate_latest(registry).decode("utf-8")  # type: ignore[arg-type]


def test_every_label_combination_is_exposed_before_any_event() -> None:
    """A counter's series exist, at zero, for every combination of its label values."""
    registry = metrics.new_registry(version="1.2.3", process_metrics=False)
    metrics.counter(
        registry,
        "lvgateway_test_invites_total",
        "INVITEs answered.",
        labels={"outcome": ["accepted", "refused"], "leg": ["livevox", "vendor"]},
    )
    text = exposition(registry)
    for outcome in ("accepted", "refused"):
        for leg in ("livevox", "vendor"):
            assert f'lvgateway_test_invites_total{{leg="{leg}",outcome="{outcome}"}} 0.0' in text


def test_gauge_and_histogram_series_exist_from_the_start() -> None:
    """Gauge and histogram children are registered for every label value."""
    registry = metrics.new_registry(process_metrics=False)
    metrics.gauge(registry, "lvgateway_test_agents", "Agents.", labels={"state": ["ready", "busy"]})
    metrics.histogram(
        registry, "lvgateway_test_setup_seconds", "Setup time.", labels={"vendor": ["a"]}
    )
    text = exposition(registry)
    assert 'lvgateway_test_agents{state="ready"} 0.0' in text
    assert 'lvgateway_test_agents{state="busy"} 0.0' in text
    assert 'lvgateway_test_setup_seconds_count{vendor="a"} 0.0' in text


def test_counter_named_with_total_is_exposed_once_with_total() -> None:
    """The ``_total`` given in the name is exposed exactly once, and counts."""
    registry = metrics.new_registry(process_metrics=False)
    events = metrics.counter(registry, "lvgateway_test_events_total", "Events.")
    events.inc()
    text = exposition(registry)
    assert "lvgateway_test_events_total 1.0" in text
    assert "_total_total" not in text


def test_build_info_carries_the_version() -> None:
    """``lvgateway_build_info`` holds the version it was given."""
    registry = metrics.new_registry(version="9.8.7", process_metrics=False)
    assert 'lvgateway_build_info{version="9.8.7"} 1.0' in exposition(registry)


def test_registry_is_not_the_global_one() -> None:
    """Two registries may hold the same name, and the global registry holds neither."""
    first = metrics.new_registry(process_metrics=False)
    second = metrics.new_registry(process_metrics=False)
    metrics.counter(first, "lvgateway_test_twice_total", "Twice.")
    metrics.counter(second, "lvgateway_test_twice_total", "Twice.")
    assert "lvgateway_test_twice_total" not in generate_latest(REGISTRY).decode("utf-8")


def test_process_metrics_are_exposed_by_default() -> None:
    """The default registry also carries the standard ``python_*`` series."""
    assert "python_info" in exposition(metrics.new_registry())


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("counter", "calls_total"),  # no prefix
        ("counter", "lvgateway_calls"),  # counter without _total
        ("counter", "lvgateway_calls_total_total"),
        ("counter", "lvgateway_Calls_total"),  # not lower case
        ("counter", "lvgateway__calls_total"),
        ("gauge", "lvgateway_calls_total"),  # a gauge that reads like a counter
        ("gauge", "lvgateway_queue_count"),
        ("histogram", "lvgateway_setup_ms"),  # not a base unit
        ("histogram", "lvgateway_setup_milliseconds"),
        ("gauge", "lvgateway_memory_megabytes"),
        ("info", "lvgateway_build"),
    ],
)
def test_bad_name_is_rejected(kind: metrics.Kind, name: str) -> None:
    """A name that breaks a naming rule raises ValueError."""
    with pytest.raises(ValueError):
        metrics.check_name(name, kind)


@pytest.mark.parametrize(
    "name",
    ["lvgateway_calls_total", "lvgateway_wrapup_step_duration_seconds_total"],
)
def test_good_counter_name_is_accepted(name: str) -> None:
    """Well-formed counter names pass the check."""
    metrics.check_name(name, "counter")


def test_bad_name_is_rejected_before_anything_is_registered() -> None:
    """The helpers check the name, and a refused metric leaves the registry untouched."""
    registry = metrics.new_registry(process_metrics=False)
    with pytest.raises(ValueError, match="_total"):
        metrics.counter(registry, "lvgateway_test_calls", "Calls.")
    assert "lvgateway_test_calls" not in exposition(registry)


@pytest.mark.parametrize(
    "labels",
    [
        {"call_id": ["a"]},  # unbounded
        {"ani": ["a"]},
        {"outcome": []},  # no values to register
        {"outcome": "accepted"},  # a string, not a list of values
        {"Outcome": ["a"]},
        {"outcome": ["a", "a"]},
    ],
)
def test_bad_labels_are_rejected(labels: dict[str, list[str]]) -> None:
    """Unbounded label names and labels without a list of values raise ValueError."""
    registry = metrics.new_registry(process_metrics=False)
    with pytest.raises(ValueError):
        metrics.counter(registry, "lvgateway_test_labelled_total", "Labelled.", labels=labels)
