"""The README and docs/ stay true to the CLI, their links resolve, and the README stays a short guide.

Every `pipeline COMMAND [SUBCOMMAND]` named in a code span or code block must exist, and every `--option` written
after it must appear in that command's `--help`; an option named on its own (`--recovery-time SECONDS`) must appear
in some command's `--help`. Relative links must reach a file (and a heading, for `#anchor`s into Markdown). The
README holds no dated or machine-specific words: those live in benchmarks/results/. Each checker is also fed a
broken text, so it is shown to fail.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
CHECKED = [README, *DOCS]
LINKED = [*CHECKED, ROOT / "benchmarks" / "results" / "readme_history.md"]
MAX_README_LINES = 250
# Dated runs and machine names belong in benchmarks/results/, not in the guide (matched as whole words, any case)
BANNED = ["Xeon", "EPYC", "H100", "this session", "session", "evening", "afternoon", "morning", "today",
          "quiet machine", "this machine"]
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")

_FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
_INVOCATION = re.compile(r"(?<![\w.-])pipeline((?:\s+--?[a-z][\w-]*)*)\s+([a-z][a-z-]*)((?:\s+[a-z][a-z-]*)?)(.*)")
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


# -- what the CLI offers ---------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def help_options(*path: str) -> frozenset[str] | None:
    """The long options `pipeline PATH... --help` lists, or None when that command does not exist."""
    result = CliRunner().invoke(cli, [*path, "--help"])
    if result.exit_code != 0:
        return None
    return frozenset(_OPTION.findall(result.output))


def _commands() -> dict[str, click.Command]:
    return dict(cli.commands)


@lru_cache(maxsize=None)
def every_option() -> frozenset[str]:
    options = set(help_options() or ())
    for name, command in _commands().items():
        options |= help_options(name) or set()
        for sub in getattr(command, "commands", {}):
            options |= help_options(name, sub) or set()
    return frozenset(options)


# -- what the text names ---------------------------------------------------------------------------------

def code_fragments(text: str) -> list[str]:
    """Inline code spans and code-block lines (shell comments and line continuations removed)."""
    blocks = [m.group(1) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("", text)
    lines = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [re.sub(r"\s#\s.*$", "", line) for line in joined.splitlines()]
    return [*_SPAN.findall(prose), *lines]


def problems_in(text: str) -> list[str]:
    """Commands that do not exist and options their --help does not list, as messages."""
    found = []
    for fragment in code_fragments(text):
        fragment = fragment.replace("\\|", "|")
        invocation = _INVOCATION.search(fragment)
        if invocation is None:
            if fragment.startswith("--"):  # an option named on its own: some command must have it
                for option in _OPTION.findall(fragment)[:1]:
                    if option not in every_option():
                        found.append(f"`{fragment}`: no command has {option}")
            continue
        group_options, command, sub, rest = invocation.groups()
        for option in _OPTION.findall(group_options):
            if option not in (help_options() or ()):
                found.append(f"`{fragment}`: `pipeline` has no {option}")
        if command not in _commands():
            found.append(f"`{fragment}`: no command `pipeline {command}`")
            continue
        path = [command]
        if isinstance(_commands()[command], click.Group) and sub.strip():
            path.append(sub.strip())
        else:
            rest = sub + rest
        options = help_options(*path)
        if options is None:
            found.append(f"`{fragment}`: no command `pipeline {' '.join(path)}`")
            continue
        for option in _OPTION.findall(rest):
            if option not in options:
                found.append(f"`{fragment}`: `pipeline {' '.join(path)} --help` does not list {option}")
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", _FENCE.sub("", path.read_text()), re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def broken_links(path: Path, text: str | None = None) -> list[str]:
    text = path.read_text() if text is None else text
    found = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            found.append(f"{path.name}: {target} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            found.append(f"{path.name}: {target} names no heading of {linked.name}")
    return found


def banned_words(text: str) -> list[str]:
    prose = _LINK.sub(lambda m: m.group(0).split("](")[0], text)  # link targets are file names, not prose
    found = [word for word in BANNED if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", prose, re.I)]
    return found + DATE.findall(prose)


# -- the checks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_and_option_named_exists(path):
    assert problems_in(path.read_text()) == []


def test_the_readme_names_the_commands_it_documents():
    named = {m.group(2) for f in code_fragments(README.read_text()) if (m := _INVOCATION.search(f))}
    assert set(_commands()) <= named, f"commands the README does not name: {set(_commands()) - named}"


@pytest.mark.parametrize("path", LINKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve(path):
    assert broken_links(path) == []


def test_the_readme_is_a_short_guide():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    assert banned_words(text) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_hold_no_dated_or_machine_words(path):
    assert banned_words(path.read_text()) == []


def test_ci_runs_the_readme_test_command_verbatim():
    commands = [line for line in README.read_text().splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2, "the README's two commands each start with `python3 -m venv .venv`"
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()


# -- the checks can fail ---------------------------------------------------------------------------------

def test_the_checks_report_what_is_wrong(tmp_path):
    bad = ("Run `pipeline run --latency-budget 0.5 --no-such-option` or `pipeline frobnicate`, "
           "`pipeline tables sideways FILE`, `pipeline --nodebug runs` and `--made-up-flag N`.\n"
           "```\npipeline export RUN --format onnx --also-bogus   # comment --not-checked\n```\n")
    problems = problems_in(bad)
    reported = sorted(message.rpartition("`: ")[2] for message in problems)  # what each message says is wrong
    assert reported == sorted([
        "no command `pipeline frobnicate`", "no command `pipeline tables sideways`", "`pipeline` has no --nodebug",
        "no command has --made-up-flag", "`pipeline run --help` does not list --no-such-option",
        "`pipeline export --help` does not list --also-bogus"]), problems  # nor --latency-budget, --format, comments

    page = tmp_path / "page.md"
    page.write_text("# A heading\n")
    links = broken_links(page, "[a](missing.md) [b](page.md#a-heading) [c](page.md#nowhere) [d](https://x.org)")
    assert links == ["page.md: missing.md does not exist", "page.md: page.md#nowhere names no heading of page.md"]

    assert banned_words("measured on the quiet Xeon this evening, 2026-12-03 [x](gpu_h100.md)") == \
        ["Xeon", "evening", "2026-12-03"]
