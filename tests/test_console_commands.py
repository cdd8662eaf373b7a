"""Every console command pyproject.toml declares points at a module with ``main``, and a
``scripts/`` wrapper runs the same ``main``."""

import importlib
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_console_command_target_has_main(name):
    module, _, attr = COMMANDS[name].partition(":")
    assert attr == "main" and callable(getattr(importlib.import_module(module), "main"))
    installed = Path(sys.executable).with_name(name)
    if any(Path(sys.executable).parent.glob("longseq-*")):  # the package is installed in this environment
        assert installed.exists(), f"{name} is declared but not installed: pip install -e ."


def test_every_script_wraps_a_console_command():
    targets = {target.partition(":")[0] for target in COMMANDS.values()}
    for script in sorted((REPO / "scripts").glob("*.py")):
        match = re.search(r"^from ([\w.]+) import main$", script.read_text(), re.M)
        assert match and match.group(1) in targets, f"{script.name} does not wrap a declared console command"
