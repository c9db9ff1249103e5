"""Compare JSON-like records that two runs wrote: what they decided exactly, what they computed within a tolerance.

Two processes (torchrun ranks against one process, a subprocess against this one) need not round float32
arithmetic alike: a run times its own training layout (channels-last or contiguous round differently), and
kernels may differ by process. Strings, ints, bools, None, keys and list lengths (blocks, plans, precisions,
the deployed network) must be equal; floats must be within the tolerance the calling test states and justifies.
"""

from __future__ import annotations

import math
from typing import Any


def record_differences(a: Any, b: Any, *, rel: float, abs: float = 0.0, path: str = "$") -> list[str]:
    """Where `a` and `b` differ: a float pair beyond math.isclose(rel_tol=rel, abs_tol=abs), anything else unequal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(map(str, a.keys() ^ b.keys()))} in only one of them"]
        return [d for k in a for d in record_differences(a[k], b[k], rel=rel, abs=abs, path=f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in record_differences(x, y, rel=rel, abs=abs, path=f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        if math.isclose(a, b, rel_tol=rel, abs_tol=abs) or (math.isnan(a) and math.isnan(b)):
            return []
        return [f"{path}: {a!r} against {b!r} (rel {rel:g}, abs {abs:g})"]
    if type(a) is not type(b) or a != b:  # exact: True is not 1, a count 4 is not 4.0, "0.5" is not 0.5
        return [f"{path}: {a!r} against {b!r} (compared exactly)"]
    return []


def assert_records_close(a: Any, b: Any, *, rel: float, abs: float = 0.0) -> None:
    """`record_differences` is empty; otherwise an AssertionError naming the first differences."""
    differences = record_differences(a, b, rel=rel, abs=abs)
    assert not differences, f"{len(differences)} difference(s):\n" + "\n".join(differences[:20])

