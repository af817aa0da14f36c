"""Small statistics helpers: percentiles of samples and a summary across repeats."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

Value = float | int | bool | str | None


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed sample, never an interpolation."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: list[Value]) -> dict[str, Any]:
    """Median/min/max of the numeric values across repeats; other values are kept as notes.

    A metric that timed out in one repeat and not in another shows both, rather than hiding
    the failure behind a median.
    """
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    flags = [v for v in values if isinstance(v, bool)]
    notes = [str(v) for v in values if isinstance(v, str)]
    out: dict[str, Any] = {"n": len(values)}
    if numbers:
        out |= {"median": statistics.median(numbers), "min": min(numbers), "max": max(numbers)}
    if flags:
        out["all_true"] = all(flags)
    if notes:
        counts = Counter(notes)
        mixed = bool(numbers) or len(counts) > 1  # counts only matter when outcomes differ
        out["notes"] = [f"{note} x{n}" if mixed else note for note, n in counts.items()]
    return out
