"""Package layout: lazy re-exports that match their modules, and imports without cycles."""

import importlib
import subprocess
import sys

import pytest

import genomics
import genomics.data

SUBPACKAGES = ("genomics.io", "genomics.models", "genomics.tasks", "genomics.baselines")


@pytest.mark.parametrize("module", sorted(genomics.data.EXPORTS))
def test_data_exports_match_each_module(module):
    mod = importlib.import_module(f"genomics.data.{module}")
    assert sorted(genomics.data.EXPORTS[module]) == sorted(mod.__all__)
    for name in mod.__all__:
        assert getattr(genomics.data, name) is getattr(mod, name)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackages_export_what_they_list(package):
    mod = importlib.import_module(package)
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_top_level_names_resolve():
    for name in genomics.__all__:
        assert getattr(genomics, name) is not None
    assert genomics.DNALanguageModel.__module__ == "genomics.models.language_model"
    with pytest.raises(AttributeError):
        genomics.no_such_name  # noqa: B018


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_genomics_does_no_work():
    proc = _fresh("import sys, genomics, genomics.data, genomics.cli; "
                  "print(sorted(m for m in ('torch', 'lightning', 'Bio', 'numpy') if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_any_module_imports_first():
    """Each module imported first in a fresh interpreter (io and data import each other's modules)."""
    modules = ("genomics.io.cache", "genomics.data.tokenizers", "genomics.data.needle", "genomics.models",
               "genomics.tasks")
    code = "; ".join(f"import subprocess as s, sys; r = s.run([sys.executable, '-c', 'import {m}']); "
                     f"assert r.returncode == 0, '{m}'" for m in modules)
    proc = _fresh(code)
    assert proc.returncode == 0, proc.stderr
