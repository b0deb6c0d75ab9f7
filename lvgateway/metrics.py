"""The gateway's Prometheus metrics: one registry, and helpers that keep every metric to the rules.

The rules (docs/design.md): every name starts with ``lvgateway_``; counters end in
``_total``; durations are in ``_seconds`` and every quantity in base units;
labels have bounded cardinality (never a call id or a phone number); and every
label combination is registered at start, so each series exists, at zero,
before its first event and a rate over it never starts from nothing.

Every part creates its metrics through :func:`counter`, :func:`gauge` and
:func:`histogram` on the registry :func:`new_registry` made, which the control
listener's ``/metrics`` serves. The module lives outside every part so that any
part may use it without importing another::

    calls = counter(
        registry, "lvgateway_sip_invites_total", "INVITEs answered, by final code class.",
        labels={"outcome": ["accepted", "refused", "failed"]},
    )
    calls.labels(outcome="accepted").inc()

A counter is named as it is exposed, with its ``_total``; ``prometheus_client``
strips the suffix when it builds the counter and adds it back on the way out.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Literal, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics import MetricWrapperBase, disable_created_metrics

__all__ = ["counter", "gauge", "histogram", "new_registry", "check_name", "gateway_version"]

PREFIX = "lvgateway_"

#: Bounds of the buckets of a duration histogram, in seconds, unless told otherwise.
DEFAULT_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_NAME = re.compile(r"^lvgateway_[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_LABEL = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
# Series names prometheus_client derives from a metric; a metric named so would collide.
_DERIVED_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
# Units that are not base units: durations are seconds, sizes bytes, ratios 0..1.
_NOT_BASE_UNITS = frozenset(
    {
        "ms",
        "msec",
        "millis",
        "milliseconds",
        "us",
        "microseconds",
        "nanoseconds",
        "minutes",
        "hours",
        "days",
        "kb",
        "kilobytes",
        "mb",
        "megabytes",
        "kib",
        "mib",
        "percent",
        "pct",
    }
)
# Label names that would carry a value per call or per caller.
_UNBOUNDED_LABELS = frozenset(
    {
        "call_id",
        "session_id",
        "transaction_id",
        "ani",
        "dnis",
        "caller",
        "callee",
        "phone",
        "phone_number",
        "number",
        "contact",
        "account",
        "account_number",
    }
)

Kind = Literal["counter", "gauge", "histogram", "info"]
M = TypeVar("M", bound=MetricWrapperBase)


def check_name(name: str, kind: Kind) -> None:
    """Raise :class:`ValueError` unless ``name`` follows the rules for a metric of ``kind``.

    :param name: the name as it is exposed; for a counter, with its ``_total``.
    :param kind: ``"counter"``, ``"gauge"``, ``"histogram"`` or ``"info"``.
    """
    if not _NAME.match(name):
        raise ValueError(
            f"metric name {name!r} must start with {PREFIX!r} and be lower-case words"
            " joined by single underscores"
        )
    words = name[len(PREFIX) :].split("_")
    bad_units = _NOT_BASE_UNITS.intersection(words)
    if bad_units:
        raise ValueError(
            f"metric name {name!r} uses {sorted(bad_units)}: use base units"
            " (seconds, bytes, ratios)"
        )
    if kind == "counter":
        if not name.endswith("_total") or name.endswith("_total_total"):
            raise ValueError(f"counter name {name!r} must end in a single '_total'")
    elif kind == "info":
        if not name.endswith("_info"):
            raise ValueError(f"info metric name {name!r} must end in '_info'")
    elif name.endswith(_DERIVED_SUFFIXES):
        raise ValueError(
            f"{kind} name {name!r} must not end in one of {list(_DERIVED_SUFFIXES)}:"
            " prometheus_client derives those series itself"
        )


def _check_labels(name: str, labels: Mapping[str, Sequence[str]]) -> None:
    for label, values in labels.items():
        if not _LABEL.match(label):
            raise ValueError(f"metric {name!r}: label name {label!r} is not snake_case")
        if label in _UNBOUNDED_LABELS:
            raise ValueError(
                f"metric {name!r}: label {label!r} would carry a value per call or caller;"
                " labels must have bounded cardinality"
            )
        if isinstance(values, str) or not values:
            raise ValueError(
                f"metric {name!r}: label {label!r} needs a non-empty list of every value it"
                " may take, so each series can be registered at start"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"metric {name!r}: label {label!r} lists a value twice")


def _register_every_series(metric: M, labels: Mapping[str, Sequence[str]]) -> M:
    if not labels:
        return metric  # a metric without labels is its own one series
    for combination in itertools.product(*labels.values()):
        metric.labels(*combination)
    return metric


def counter(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    labels: Mapping[str, Sequence[str]] | None = None,
) -> Counter:
    """Create a counter whose every label combination is exposed, at zero, from the start.

    :param registry: the gateway's registry, from :func:`new_registry`.
    :param name: the exposed name, ending in ``_total``, such as
        ``lvgateway_wrapup_steps_total``.
    :param documentation: one sentence for the ``# HELP`` line.
    :param labels: each label name with every value it may take, in order;
        the series of every combination of values are registered.
    :raises ValueError: if the name or a label breaks the rules.
    """
    labels = labels or {}
    check_name(name, "counter")
    _check_labels(name, labels)
    metric = Counter(name, documentation, labelnames=list(labels), registry=registry)
    return _register_every_series(metric, labels)


def gauge(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    labels: Mapping[str, Sequence[str]] | None = None,
) -> Gauge:
    """Create a gauge whose every label combination is exposed, at zero, from the start.

    :param registry: the gateway's registry, from :func:`new_registry`.
    :param name: the exposed name, such as ``lvgateway_agents`` or
        ``lvgateway_calls_in_progress``.
    :param documentation: one sentence for the ``# HELP`` line.
    :param labels: each label name with every value it may take, in order.
    :raises ValueError: if the name or a label breaks the rules.
    """
    labels = labels or {}
    check_name(name, "gauge")
    _check_labels(name, labels)
    metric = Gauge(name, documentation, labelnames=list(labels), registry=registry)
    return _register_every_series(metric, labels)


def histogram(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    labels: Mapping[str, Sequence[str]] | None = None,
    buckets: Sequence[float] = DEFAULT_SECONDS_BUCKETS,
) -> Histogram:
    """Create a histogram whose every label combination is exposed, empty, from the start.

    :param registry: the gateway's registry, from :func:`new_registry`.
    :param name: the exposed name in base units, such as
        ``lvgateway_livevox_request_duration_seconds``.
    :param documentation: one sentence for the ``# HELP`` line.
    :param labels: each label name with every value it may take, in order.
    :param buckets: upper bounds of the buckets, in the metric's unit.
    :raises ValueError: if the name or a label breaks the rules.
    """
    labels = labels or {}
    check_name(name, "histogram")
    _check_labels(name, labels)
    metric = Histogram(
        name, documentation, labelnames=list(labels), buckets=buckets, registry=registry
    )
    return _register_every_series(metric, labels)


def gateway_version() -> str:
    """Return the installed version of lvgateway, or ``"unknown"`` when run from a source tree."""
    try:
        return metadata.version("lvgateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def new_registry(version: str | None = None, process_metrics: bool = True) -> CollectorRegistry:
    """Create the gateway's registry, holding ``lvgateway_build_info`` from the start.

    :param version: the version to expose; by default the installed one.
    :param process_metrics: also expose the standard ``process_*`` and
        ``python_*`` series (CPU, memory, file descriptors, garbage collection).
    """
    # No "_created" series (a counter's or histogram's creation time): a third of
    # the samples, read by no dashboard or alert. The switch is the library's
    # and process-wide; the gateway's process has only this registry.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    check_name("lvgateway_build_info", "info")
    # Info appends "_info" to the name it is given.
    Info("lvgateway_build", "The running lvgateway's version.", registry=registry).info(
        {"version": version if version is not None else gateway_version()}
    )
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry
