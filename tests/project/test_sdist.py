"""The source distribution holds what it takes to run the tests: every file the repository
tracks (CI-only files aside) and no build products, and a test module runs from it.

Built offline with `python -m build --sdist --no-isolation`, the PEP 517 frontend a release
uses, from a copy of the tracked files; the build requirements (setuptools, Cython) come from
the test extra instead of a download."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

from tests.support.cli_helpers import ROOT, env

# Tracked files that only CI and git need.
NOT_SHIPPED = (".ci/", ".gitignore")
# What the build adds: metadata, never code.
GENERATED = ("PKG-INFO", "setup.cfg", "src/dtls13.egg-info/")
BUILD_PRODUCTS = (".so", ".c", ".o", ".pyc", ".pyo", ".pyd")


def tracked_files() -> list[str]:
    """The repository's files: `git ls-files` in a checkout; in an unpacked sdist, the file
    list its build wrote (so the sdist rebuilt from it must hold the same files)."""
    if (ROOT / ".git").exists():
        result = subprocess.run(
            ["git", "ls-files", "-z"], capture_output=True, cwd=ROOT, timeout=60, check=True
        )
        files = [f for f in result.stdout.decode().split("\0") if f]
        return [f for f in files if (ROOT / f).is_file()]  # deleted in the work tree: gone
    sources = ROOT / "src" / "dtls13.egg-info" / "SOURCES.txt"
    assert (ROOT / "PKG-INFO").is_file() and sources.is_file(), (
        f"{ROOT} is neither a git checkout nor an unpacked source distribution"
    )
    return [f for f in sources.read_text().splitlines() if not f.startswith(GENERATED)]


def build_sdist(tmp_path: Path, files: list[str]) -> Path:
    tree = tmp_path / "tree"
    for name in files:
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(dist),
         str(tree)],
        capture_output=True, text=True, timeout=600, cwd=tree, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = list(dist.glob("dtls13-*.tar.gz"))
    assert len(built) == 1, built
    return built[0]


def test_sdist_holds_every_tracked_file_and_runs_a_test_module(tmp_path: Path) -> None:
    files = tracked_files()
    assert "pyproject.toml" in files and "tests/vectors/rfc8448.txt" in files, files
    archive = build_sdist(tmp_path, files)

    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        tops = {PurePosixPath(m.name).parts[0] for m in members}
        assert len(tops) == 1, tops
        top = tops.pop()
        shipped = {str(PurePosixPath(*PurePosixPath(m.name).parts[1:])) for m in members}
        # The "data" filter where this Python has it (3.11.4+; 3.12+ warn without one).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "unpacked", **safe)  # type: ignore[arg-type]

    expected = {f for f in files if not f.startswith(NOT_SHIPPED)}
    missing = sorted(expected - shipped)
    assert not missing, f"tracked files missing from the sdist (MANIFEST.in?): {missing}"
    products = sorted(f for f in shipped if f.endswith(BUILD_PRODUCTS))
    assert not products, f"build products in the sdist: {products}"
    extra = sorted(f for f in shipped - set(files) if not f.startswith(GENERATED))
    assert not extra, f"files in the sdist that the repository does not track: {extra}"

    # A real test module, run from the unpacked tree (the dtls13 package itself comes from
    # this environment's installed, compiled one: the sdist has no compiled extension).
    unpacked = tmp_path / "unpacked" / top
    where = subprocess.run(
        [sys.executable, "-c", "import dtls13; print(dtls13.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=unpacked, env=env(), check=True,
    )  # fmt: skip
    assert str(unpacked) not in where.stdout, where.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/record/test_buffer.py"],
        capture_output=True, text=True, timeout=300, cwd=unpacked, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout
