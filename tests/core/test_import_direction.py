"""The core's imports run one way: patterns know no kernel, kernels know no bias class."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "longseq"


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, at any depth: imports
    inside functions count, relative imports are resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _file_imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return _imported_modules(path.read_text(), package)


def _hits(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in paths:
        bad = sorted(m for m in _file_imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_patterns_import_nothing_from_the_kernels() -> None:
    files = sorted(PACKAGE.glob("patterns*.py")) + [PACKAGE / "geometry.py", PACKAGE / "lsh.py"]
    assert len(files) >= 4
    assert _hits(files, ("longseq.kernels", "longseq.attention", "longseq.routes", "longseq.layers")) == {}


def test_kernels_import_no_bias_class_and_no_layer() -> None:
    files = sorted((PACKAGE / "kernels").rglob("*.py"))
    assert PACKAGE / "kernels" / "window2d.py" in files
    assert _hits(files, ("longseq.positions", "longseq.layers", "longseq.attention")) == {}


def test_import_checker_sees_function_level_and_relative_imports() -> None:
    src = "def f():\n    from longseq.positions import ALiBi\nfrom .. import layers\nfrom .plan import Plan\n"
    mods = _imported_modules(src, "longseq.kernels")
    assert {"longseq.positions", "longseq.layers", "longseq.kernels.plan"} <= mods


def _fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_patterns_loads_no_kernel() -> None:
    out = _fresh("import sys, longseq.patterns; "
                 "print(sorted(m for m in sys.modules if m.startswith('longseq.kernels')))")
    assert out == "[]"
    out = _fresh("import sys, longseq, longseq.positions, longseq.lsh; "
                 "print(sorted(m for m in sys.modules if m.startswith(('longseq.kernels', 'longseq.layers'))))")
    assert out == "[]"


def test_top_level_names_load_on_first_use() -> None:
    out = _fresh(
        "import longseq\n"
        "from longseq import attend, explain, Route\n"
        "import longseq.attention as a, longseq.routes as r\n"
        "assert attend is longseq.attend is a.attend and explain is a.explain and Route is r.Route\n"
        "assert longseq.layers.Encoder and longseq.kernels.use_backend\n"
        "assert {'attend', 'explain', 'layers'} <= set(dir(longseq))\n"
        "print('ok')"
    )
    assert out == "ok"
    import longseq

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        longseq.nothing_here  # noqa: B018


def test_lsh_is_one_class_under_every_path() -> None:
    import longseq.lsh
    import longseq.patterns
    from longseq.kernels.registry import attention_for

    assert longseq.lsh.LSH is longseq.patterns.LSH
    assert attention_for(longseq.patterns.LSH(seed=0)) is not None
    assert attention_for(longseq.patterns.SlidingWindow(2)) is None


def test_tiling_registry_lookup_and_extension() -> None:
    from dataclasses import dataclass

    from longseq.kernels.plan import Tiling, register_tiling, tiling_for
    from longseq.patterns import Dense, Pattern, SlidingWindow

    cpu = torch.device("cpu")
    assert len(tiling_for(SlidingWindow(3), 40, cpu).parts) == 1
    assert len(tiling_for(Dense(), 40, cpu).parts) == 1

    @dataclass(frozen=True)
    class Unknown(Pattern):
        def allowed(self, i, j):
            return i == j

    with pytest.raises(NotImplementedError, match="Unknown has no blocked-kernel tiling"):
        tiling_for(Unknown(), 8, cpu)

    @dataclass(frozen=True)
    class Diagonal(Unknown):
        pass

    sentinel = Tiling(parts=[])
    register_tiling(Diagonal)(lambda pattern, L, device: sentinel)
    assert tiling_for(Diagonal(), 8, cpu) is sentinel

    @dataclass(frozen=True)
    class OwnTiling(SlidingWindow):  # a pattern's own method wins over its base's builder
        def tiling(self, L, device):
            return sentinel

    assert tiling_for(OwnTiling(2), 8, cpu) is sentinel
