"""longseq: one efficient-attention core for million-token images and genomes.

Patterns and positional encodings import eagerly; everything that needs the kernels
(``attend``, ``explain``, ``Route``, ``layers``) is imported on first use (PEP 562), so
``import longseq.patterns`` does not load :mod:`longseq.kernels`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from longseq import patterns, positions
from longseq.patterns import Dense, Pattern, SlidingWindow, Window2D

if TYPE_CHECKING:
    from longseq import attention, kernels, layers
    from longseq.attention import attend, explain
    from longseq.routes import Route

__version__ = "0.1.0"

__all__ = ["attend", "explain", "Route", "patterns", "positions", "layers", "Pattern", "Dense", "SlidingWindow",
           "Window2D"]

# name -> (module, attribute); attribute None = the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "attend": ("longseq.attention", "attend"),
    "explain": ("longseq.attention", "explain"),
    "Route": ("longseq.routes", "Route"),
    "layers": ("longseq.layers", None),
    "attention": ("longseq.attention", None),
    "kernels": ("longseq.kernels", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'longseq' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
