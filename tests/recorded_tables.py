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


EVEN_SAVING = 0.12  # of the full latency, per block


def evened(profile):
    """`profile` (pipeline.latency.profiling.profile_candidates) whose table is really measured, then every block's
    saving set to EVEN_SAVING of the full latency: for tests about what the tool does with a table, whose budgets a
    busy or quiet machine's table could make unreachable (seen: 0.65 asked, 0.73 reachable while another job used
    both cores; a tiny CIFAR ResNet's table predicting 0.805 at best against 0.78)."""
    def even(*args, **kwargs) -> LatencyTable:
        table = profile(*args, **kwargs)
        saving = summarize([EVEN_SAVING * table.full.median_ms] * 3)
        return replace(table, savings={block: saving for block in table.savings})

    return even

