"""The documentation in docs/: it builds without a warning, its complete programs run, and
its configuration and command-line pages list exactly what the code has.

Code blocks: a fence opened with ```python is a complete program and is run; a fragment that
cannot run on its own is written as a ```{code-block} python directive (CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses
import enum
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ROOT, env

from dtls13 import ClientConfig, ServerConfig
from dtls13.endpoint import DoSProtectionConfig

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
RUNNABLE = re.compile(r"^```python\n(.*?)^```\s*$", re.M | re.S)
FENCE = re.compile(r"^```+\s*(\S*)", re.M)


def page(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"missing documentation page {path}"
    return path.read_text(encoding="utf-8")


def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    for source in PAGES:
        assert (tmp_path / "html" / f"{source.stem}.html").is_file(), source.name


# -- code blocks ------------------------------------------------------------------------


def runnable_blocks() -> list[tuple[str, str]]:
    """(page:line, code) of every ```python block of every page."""
    assert PAGES, f"no pages in {DOCS}"
    blocks = []
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        for m in RUNNABLE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            blocks.append((f"{path.name}:{line}", m.group(1)))
    return blocks


BLOCKS = runnable_blocks()


def test_there_are_runnable_examples_and_fences_follow_the_convention() -> None:
    assert len(BLOCKS) >= 7, [where for where, _ in BLOCKS]
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        infos = FENCE.findall(text)
        # Only ```python runs: other spellings of Python would silently not be tested.
        odd = [i for i in infos if i.lower() in ("py", "python3", "pycon", "ipython", "{code}")]
        assert not odd, f"{path.name}: use ```python (runnable) or {{code-block}} python: {odd}"


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_runnable_example(where: str, code: str, tmp_path: Path) -> None:
    # Network examples stay on this machine: 127.0.0.1 and ports the system picks.
    for address in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", code):
        assert address == "127.0.0.1", f"{where}: {address}"
    for port in re.findall(r"bind\(\(\s*\"[^\"]*\"\s*,\s*(\d+)\s*\)\)", code):
        assert port == "0", f"{where}: binds port {port}; examples bind port 0"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
    assert list(tmp_path.iterdir()) == [], f"{where} left files behind"


# -- configuration ----------------------------------------------------------------------

BOTH = "ClientConfig and ServerConfig"


def sections(text: str) -> dict[str, str]:
    """Level-2 sections by title (each with its level-3 subsections)."""
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.M)
    return {title.strip("`"): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def table_rows(body: str) -> dict[str, list[str]]:
    """First cell (a `name`) -> the row's cells, for every table row of a section."""
    rows: dict[str, list[str]] = {}
    for line in body.splitlines():
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m is None:
            continue
        cells = [c.strip() for c in re.split(r"\s\|\s", line.strip().strip("|"))]
        assert m.group(1) not in rows, f"{m.group(1)} documented twice in one section"
        rows[m.group(1)] = cells
    return rows


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    assert f.default_factory is not dataclasses.MISSING, f"{f.name} has no default"
    return f.default_factory()


def check_default(owner: str, f: dataclasses.Field[Any], cell: str) -> None:
    """The Default cell of a field says its real default."""
    where = f"{owner}.{f.name}: the page says {cell!r}"
    if not f.init:
        assert cell == "(computed)", where
        return
    value = default_of(f)
    quotes = cell.replace('"', "'")
    if value is None or isinstance(value, bool | int | float):
        assert f"`{value!r}`" in cell, f"{where}, the code {value!r}"
    elif isinstance(value, str):
        assert f"`{value!r}`" in quotes, f"{where}, the code {value!r}"
    elif isinstance(value, bytes) or (isinstance(value, tuple | list | dict) and not value):
        assert f"`{value!r}`" in cell, f"{where}, the code {value!r}"
    elif isinstance(value, tuple) and all(isinstance(v, enum.Enum) for v in value):
        names = re.findall(r"`([^`]+)`", cell)
        assert names == [v.name for v in value], f"{where}, the code {[v.name for v in value]}"
    elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        assert f"`{value!r}`" in quotes, f"{where}, the code {value!r}"
    elif callable(value):
        assert value.__name__ in cell, f"{where}, the code {value!r}"
    else:
        pytest.fail(f"{owner}.{f.name}: no rule to check a default like {value!r}; add one")


def test_configuration_page_documents_every_field_and_its_default() -> None:
    found = sections(page("configuration.md"))
    for title in (BOTH, "ClientConfig", "ServerConfig", "DoSProtectionConfig"):
        assert title in found, f"configuration.md has no section '## {title}'"
    both = table_rows(found[BOTH])
    classes: list[tuple[type, dict[str, list[str]]]] = [
        (ClientConfig, table_rows(found["ClientConfig"])),
        (ServerConfig, table_rows(found["ServerConfig"])),
        (DoSProtectionConfig, table_rows(found["DoSProtectionConfig"])),
    ]
    client_names = {f.name for f in dataclasses.fields(ClientConfig)}
    server_names = {f.name for f in dataclasses.fields(ServerConfig)}
    stale = set(both) - (client_names & server_names)
    assert not stale, f"'{BOTH}' documents fields that are not in both classes: {stale}"
    for cls, own in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        assert not set(own) - names, f"{cls.__name__}: no such fields {set(own) - names}"
        shared = both if cls is not DoSProtectionConfig else {}
        twice = set(own) & set(shared)
        assert not twice, f"{cls.__name__}: {twice} documented in two sections"
        for f in dataclasses.fields(cls):
            row = own.get(f.name) or shared.get(f.name)
            assert row is not None, f"configuration.md does not document {cls.__name__}.{f.name}"
            assert len(row) == 3 and row[2], f"{cls.__name__}.{f.name}: row {row}"
            check_default(cls.__name__, f, row[1])


# -- command line -----------------------------------------------------------------------


def help_options(*command: str) -> set[str]:
    """The option column of `python -m dtls13 ... --help`: '--port PORT', '-v, --verbose'."""
    result = subprocess.run(
        [sys.executable, "-m", "dtls13", *command, "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=env(COLUMNS="1000", NO_COLOR="1", PYTHON_COLORS="0"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    options = set()
    listing = result.stdout.split("\noptions:\n", 1)
    assert len(listing) == 2, result.stdout
    for line in listing[1].splitlines():
        if re.match(r"^  -", line):
            options.add(re.split(r"\s{2,}", line.strip())[0])
    assert options, result.stdout
    return options


def test_cli_page_lists_exactly_the_options_of_each_command() -> None:
    found = sections(page("cli.md"))
    top = subprocess.run(
        [sys.executable, "-m", "dtls13", "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env(COLUMNS="1000"),
    )  # fmt: skip
    commands = re.search(r"\{([a-z,]+)\}", top.stdout)
    assert commands is not None, top.stdout
    for command in commands.group(1).split(","):
        assert command in found, f"cli.md has no section '## `{command}`'"
        documented = set(table_rows(found[command]))
        actual = help_options(command)
        assert documented == actual, (
            f"`{command}`: documented but not in --help: {documented - actual}; "
            f"in --help but not documented: {actual - documented}"
        )


def test_placeholder_pages_exist_with_their_titles() -> None:
    # Written elsewhere; they must exist (and be in the toctree: the build checks that).
    assert page("errors.md").startswith("# Exceptions\n")
    assert page("statistics.md").startswith("# Statistics\n")
