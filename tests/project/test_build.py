"""Building the compiled modules: a machine without a working C compiler is told what to
install, whatever module failed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_compiler_gets_a_message_saying_what_to_install(tmp_path: Path) -> None:
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tmp_path / name)
    # The generated C files come along where a build left them (copied with their times,
    # Cython then has nothing to redo); the compiler is the first step that runs.
    shutil.copytree(
        ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "LDSHARED")}
    env["CC"] = str(tmp_path / "no-such-compiler")
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "dtls13 needs its compiled extensions" in result.stderr, result.stderr[-2000:]
    assert "apt-get install gcc python3-dev" in result.stderr, result.stderr[-2000:]
    assert not list((tmp_path / "src").rglob("*.so")), "a module built without a compiler"
