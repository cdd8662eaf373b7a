"""Measured choices kept on disk: small JSON files under ``$LONGSEQ_CACHE_DIR``
(default ``~/.cache/longseq``), one entry per key.

Used for what is measured once per machine and then reused: the training precision
(``precision.json``) and the attention tile backend (``tile_backends.json``). A file that
cannot be read counts as empty, and one that cannot be written is logged and skipped,
so a read-only home only means measuring again next time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["CACHE_ENV", "cache_dir", "read_entries", "write_entry"]

log = logging.getLogger(__name__)

#: The environment variable that moves every cache file.
CACHE_ENV = "LONGSEQ_CACHE_DIR"


def cache_dir() -> Path:
    """``$LONGSEQ_CACHE_DIR``, else ``~/.cache/longseq``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "longseq")


def read_entries(name: str) -> dict[str, Any]:
    """Every entry of the cache file ``name`` (empty when missing or unreadable)."""
    try:
        data = json.loads((cache_dir() / name).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_entry(name: str, key: str, entry: Any) -> bool:
    """Set ``key`` in the cache file ``name`` (written whole, then renamed into place, so a
    reader never sees half a file); False when it could not be written."""
    data = read_entries(name)
    data[key] = entry
    path = cache_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(partial, path)
        return True
    except OSError as exc:
        log.info("cache not written (%s): %s", path, exc)
        return False
