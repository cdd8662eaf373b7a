"""The project's own text: no development-history words, a short README with the two
Quick-start commands, links that resolve, and documented commands that exist.

Pure text checks: nothing is imported from the project and nothing is run.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"

# ---------------------------------------------------------------------------------------
# (a) no development-history words
# ---------------------------------------------------------------------------------------

HISTORY_WORDS = re.compile(r"\b(sessions?|the issue|the spec|targets? met)\b", re.IGNORECASE)
# pytest's fixture scope is the one legitimate use of the word.
ALLOWED = re.compile(r"""scope\s*=\s*["']session["']""")
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".txt", ".c", ".toml"}
SCANNED_DIRS = ("docs", "longseq", "vision", "genomics", "configs", "scripts")


def _text_files() -> list[Path]:
    files = [README]
    for name in SCANNED_DIRS:
        root = REPO / name
        if root.is_dir():
            files += sorted(p for p in root.rglob("*")
                            if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts)
    return files


def history_word_hits(files: list[Path]) -> list[str]:
    """``file:line:text`` for every line with a development-history word."""
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if HISTORY_WORDS.search(ALLOWED.sub("", line)):
                hits.append(f"{path.relative_to(REPO)}:{number}:{line.strip()}")
    return hits


def test_history_words_detector():
    assert HISTORY_WORDS.search("as measured in session 16")
    assert HISTORY_WORDS.search("Sessions 1-4 ran on a Xeon")
    assert HISTORY_WORDS.search("target met")
    assert HISTORY_WORDS.search("both Targets met")
    assert HISTORY_WORDS.search("quoted from the issue")
    assert HISTORY_WORDS.search("The spec says")
    assert not HISTORY_WORDS.search("the specific layout")
    assert not HISTORY_WORDS.search("a target metric")
    assert not HISTORY_WORDS.search("sessionless")
    assert not HISTORY_WORDS.search(ALLOWED.sub("", '@pytest.fixture(scope="session")'))
    assert not HISTORY_WORDS.search(ALLOWED.sub("", "@pytest.fixture(scope='session', autouse=True)"))


def test_no_development_history_words():
    hits = history_word_hits(_text_files())
    assert not hits, "development-history words (history belongs in commit messages):\n" + "\n".join(hits)


# ---------------------------------------------------------------------------------------
# (b) the README: short, and Quick start is exactly `make demo` and `make test`
# ---------------------------------------------------------------------------------------

def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^##\s+{re.escape(title)}\s*$(.*?)(?=^##\s|\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def _code_blocks(markdown: str) -> list[str]:
    """Bodies of fenced code blocks."""
    return [m.group(1) for m in re.finditer(r"^```[^\n]*\n(.*?)^```\s*$", markdown, re.MULTILINE | re.DOTALL)]


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; keep it a manual of at most 160 (details go to docs/)"


def test_readme_quick_start_is_make_demo_and_make_test():
    quick = _section(README.read_text(encoding="utf-8"), "Quick start")
    blocks = _code_blocks(quick)
    assert len(blocks) == 1, f"Quick start should hold one code block, found {len(blocks)}"
    commands = [line.split("#", 1)[0].strip() for line in blocks[0].splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["make demo", "make test"], f"Quick start commands are {commands}"


# ---------------------------------------------------------------------------------------
# (c) relative links resolve
# ---------------------------------------------------------------------------------------

def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _without_code(markdown: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    markdown = re.sub(r"^```.*?^```\s*$", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", markdown)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _relative_links(markdown: str) -> list[str]:
    return [t for t in LINK.findall(_without_code(markdown))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]  # skip http:, mailto:, ...


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```\s*$", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.MULTILINE):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def test_slug_matches_github():
    assert _slug("Long-range check (`--task needle`)") == "long-range-check---task-needle"
    assert _slug("Every pattern at 1,048,576 tokens, fp32") == "every-pattern-at-1048576-tokens-fp32"
    assert _slug("LSH") == "lsh"


@pytest.mark.parametrize("md", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(md: Path):
    broken = []
    for target in _relative_links(md.read_text(encoding="utf-8")):
        path_part = target.split("#", 1)[0]
        if path_part and not (md.parent / path_part).exists():
            broken.append(target)
    assert not broken, f"{md.relative_to(REPO)} links to files that do not exist: {broken}"


@pytest.mark.parametrize("md", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_link_anchors_resolve(md: Path):
    broken = []
    for target in _relative_links(md.read_text(encoding="utf-8")):
        path_part, _, anchor = target.partition("#")
        if not anchor:
            continue
        dest = (md.parent / path_part) if path_part else md
        if dest.suffix == ".md" and dest.exists() and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{md.relative_to(REPO)} links to headings that do not exist: {broken}"


# ---------------------------------------------------------------------------------------
# (d) documented commands exist
# ---------------------------------------------------------------------------------------

# The console commands the README documents; each must be declared in pyproject.toml.
CONSOLE_COMMANDS = {
    "longseq-train-dna", "longseq-score-dna", "longseq-train-vit", "longseq-bench",
    "longseq-train-detector", "longseq-train-yolo",
}


def _command_lines(markdown: str) -> list[str]:
    """Code-block lines with their leading ``VAR=value`` environment settings removed
    (continuation lines joined)."""
    lines = []
    for block in _code_blocks(markdown):
        block = re.sub(r"\\\n\s*", " ", block)
        for line in block.splitlines():
            words = line.strip().split()
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$", words[0]):
                words.pop(0)
            if words:
                lines.append(" ".join(words))
    return lines


def _documented() -> list[tuple[str, str]]:
    return [(str(md.relative_to(REPO)), line) for md in _markdown_files()
            for line in _command_lines(md.read_text(encoding="utf-8"))]


def test_documented_scripts_exist():
    missing = []
    for where, line in _documented():
        match = re.match(r"^python\s+(scripts/\S+)", line)
        if match and not (match.group(1).endswith(".py") and (REPO / match.group(1)).is_file()):
            missing.append(f"{where}: {line}")
    assert not missing, "documented scripts that do not exist in scripts/:\n" + "\n".join(missing)


def _inline_console_names(markdown: str) -> list[str]:
    return re.findall(r"`(longseq-[a-z0-9-]+)", markdown)


def test_documented_console_commands_exist():
    """Every ``longseq-*`` command in the docs (code blocks and inline code) is one of the
    console commands above or another one pyproject.toml declares."""
    known = CONSOLE_COMMANDS | _declared_console_scripts()
    unknown = []
    for md in _markdown_files():
        text = md.read_text(encoding="utf-8")
        names = [shlex.split(line)[0] for line in _command_lines(text) if line.startswith("longseq-")]
        names += _inline_console_names(text)
        unknown += [f"{md.relative_to(REPO)}: {n}" for n in names if n not in known]
    assert not unknown, f"console commands not among {sorted(known)}:\n" + "\n".join(unknown)


def _declared_console_scripts() -> set[str]:
    """Names under ``[project.scripts]`` in pyproject.toml (a plain reading: no tomllib on 3.10)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    if not match:
        return set()
    return set(re.findall(r"^\s*\"?([A-Za-z0-9_.-]+)\"?\s*=", match.group(1), re.MULTILINE))


def test_console_commands_are_declared():
    """The README says ``pip install -e .`` exposes these commands: pyproject.toml declares them."""
    missing = sorted(CONSOLE_COMMANDS - _declared_console_scripts())
    assert not missing, f"documented console commands missing from pyproject.toml [project.scripts]: {missing}"
