"""Lazy re-exports for package ``__init__`` modules (PEP 562 ``__getattr__``).

A package lists which submodule holds each public name; the submodule is imported on first
access, so ``import genomics.data`` costs nothing until a name is used (the data modules
pull in Lightning), and submodules that import each other's packages cannot form a cycle
through an ``__init__``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]], submodules: Sequence[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``.

    ``exports`` maps a submodule's name relative to ``package`` (``"datasets"``) to the
    public names it defines; ``submodules`` names submodules reachable as attributes.
    """
    where = {name: module for module, names in exports.items() for name in names}
    names = sorted([*where, *submodules])

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__, names
