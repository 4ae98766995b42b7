"""The code base stays mypy --strict clean, ruff and ruff-format clean and cython-lint
clean, and the stubs of the compiled modules match them (mypy.stubtest)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "src/dtls13"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks", "fuzz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cython_lint_is_clean() -> None:
    # cython-lint comes with the test extra; it runs pycodestyle from the same scripts folder.
    scripts = sysconfig.get_path("scripts")
    lint = Path(scripts) / "cython-lint"
    assert lint.is_file(), f"{lint} is missing: pip install -e '.[test]'"
    sources = sorted(
        str(p.relative_to(ROOT))
        for pattern in ("*.pyx", "*.pxd", "*.pxi")
        for p in (ROOT / "src").rglob(pattern)
    )
    assert sources, "no Cython sources found under src/"
    result = subprocess.run(
        [str(lint), *sources],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fast_stubs_match_the_compiled_modules() -> None:
    # Cython artefacts and what Python 3.11 cannot show are in the allowlist; from 3.12 on
    # the buffer protocol is visible at runtime, which leaves its entries unused.
    unused = ["--ignore-unused-allowlist"] if sys.version_info >= (3, 12) else []
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "dtls13._fast",
         "--allowlist", "tests/stubtest_allowlist.txt",
         "--mypy-config-file", "pyproject.toml", *unused],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    # The Python files only: the README's and docs' code blocks keep their own layout.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--exclude", "*.md",
         "src", "tests", "benchmarks", "fuzz", "examples", "docs/conf.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
