"""Summaries as strict JSON: what the training scripts print and write for other programs."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """NaN and infinities -> None (JSON has neither; ``json.dumps`` would write a bare ``NaN``
    that strict parsers reject); numpy and torch scalars -> Python numbers; dicts, lists and
    tuples converted all the way down."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
