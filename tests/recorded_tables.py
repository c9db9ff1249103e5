"""A device fingerprint and a latency table as a profiler recorded them, for tests without timing."""

from dataclasses import replace

from profilers.fingerprint import DeviceFingerprint
from profilers.stats import summarize
from profilers.table import LatencyTable


def fingerprint(**changes) -> DeviceFingerprint:
    base = DeviceFingerprint("Test CPU 9000", "cpu", "", "", "onnxruntime-cpu", "1.32.0", "fp32", 1, 224, 2,
                             "2.14.1", "x86_64")
    return replace(base, **changes)


def recorded_table(**fp_changes) -> LatencyTable:
    """A table as a profiler recorded it (values from an EfficientNet-Lite0 run, rounded)."""
    savings = {"b1": [0.30, 0.32, 0.31], "b2": [0.10, 0.12, 0.11], "b3": [0.20, 0.19, 0.21], "b4": [-0.01, 0.0, 0.01]}
    return LatencyTable("net", "abc123", fingerprint(**fp_changes), summarize([4.0, 4.1, 3.9]),
                        {k: summarize(v) for k, v in savings.items()}, {"rounds": 3}, "2026-11-25T00:00:00Z")
