"""Every command line in README.md and docs/ parses with the command it names, and every
training command, given ``--print-config``, builds its config from its default YAML.

A command is a code-block line, or an inline code span with arguments, that starts (after any ``VAR=value``
environment prefix) with ``python scripts/<name>.py`` or a ``longseq-*`` console command.
Parsing runs the command's own ``main`` up to its argument parser, so a renamed or
misspelt flag in the docs fails here; training commands run on to ``--print-config``,
which checks every section of the merged config against the signatures it feeds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ENV_PREFIX = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")
START = re.compile(r"^(python scripts/\w+\.py|longseq-[a-z-]+)(?=\s|$)")
# Commands that take --print-config: they run to the merged config instead of stopping at the parser.
CONFIG_COMMANDS = {"train_dna", "train_vit", "train_detector", "train_yolo_baseline"}


def _console_targets() -> dict[str, str]:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


def _script_target(script: str) -> str:
    """The module a ``scripts/<name>.py`` wrapper runs (``from <module> import main``)."""
    text = (REPO / "scripts" / f"{script}.py").read_text()
    match = re.search(r"^from ([\w.]+) import main$", text, re.M)
    assert match, f"scripts/{script}.py is not a thin wrapper around a package module's main"
    return match.group(1)


def _command_text(line: str) -> str | None:
    """The command in ``line`` without env prefix, trailing comment, pipes or redirects."""
    line = ENV_PREFIX.sub("", line.strip().lstrip("$ ").strip())
    if not START.match(line):
        return None
    for stop in (" #", " | ", " && ", " ; ", " > ", " 2>", " >>"):
        line = line.split(stop)[0]
    # "cmd --a ..." or "cmd --out ...": the rest of the flags follow per table row
    line = re.sub(r"(\s--[\w-]+)?\s*(\.\.\.|…)$", "", line.strip())
    return line.strip()


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every command line in README.md and docs/*.md."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        in_block, pending = False, ""
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            if raw.lstrip().startswith("```"):
                in_block, pending = not in_block, ""
                continue
            where = f"{path.relative_to(REPO)}:{number}"
            if in_block:
                text = pending + raw.rstrip()
                if text.endswith("\\"):
                    pending = text[:-1] + " "
                    continue
                pending = ""
                command = _command_text(text)
                if command:
                    found.append((where, command))
            else:
                for span in re.findall(r"`([^`]+)`", raw):
                    command = _command_text(span)
                    if command and " " in command.removeprefix("python "):  # a bare name is a reference
                        found.append((where, command))
    return found


COMMANDS = documented_commands()


def test_docs_hold_commands():
    names = {START.match(c).group(1) for _, c in COMMANDS}
    assert "python scripts/train_dna.py" in names and "python scripts/train_vit.py" in names, names


class _Parsed(Exception):
    """Raised in place of running a command once its arguments parsed."""


def _resolve(command: str) -> tuple[str, str, list[str]]:
    """(module, command name, argv) for a documented command line."""
    argv = shlex.split(command)
    if argv[0] == "python":
        script = Path(argv[1]).stem
        return _script_target(script), script, argv[2:]
    targets = _console_targets()
    assert argv[0] in targets, f"{argv[0]} is not a console command declared in pyproject.toml"
    module = targets[argv[0]]
    return module, module.rsplit(".", 1)[-1], argv[1:]


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w} {c[:60]}" for w, c in COMMANDS])
def test_documented_command_parses(where, command, monkeypatch, tmp_path):
    module_name, name, argv = _resolve(command)
    module = importlib.import_module(module_name)
    monkeypatch.chdir(tmp_path)  # nothing a command might write lands in the repository
    out = io.StringIO()

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"{where}: `{command}` started a process before its arguments parsed")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    if name in CONFIG_COMMANDS:
        with contextlib.redirect_stdout(out):
            try:
                module.main([*argv, "--print-config"])
            except SystemExit as e:
                assert e.code in (0, None), f"{where}: `{command} --print-config` exited {e.code}: {out.getvalue()}"
        assert out.getvalue().strip(), f"{where}: `{command} --print-config` printed nothing"
        return

    parse_args, parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    inside = []

    def parse_then_stop(self, args=None, namespace=None):
        inside.append(True)
        raise _Parsed(parse_args(self, args, namespace))

    def parse_known_then_stop(self, args=None, namespace=None):
        result = parse_known_args(self, args, namespace)
        if not inside:  # called directly: the command forwards what it does not know
            raise _Parsed(result)
        return result

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_then_stop)
    with pytest.raises(_Parsed), contextlib.redirect_stderr(out):
        try:
            module.main(argv)
        except SystemExit as e:
            raise AssertionError(f"{where}: `{command}` does not parse: {out.getvalue()}") from e
