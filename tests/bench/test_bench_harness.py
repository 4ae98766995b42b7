"""benchmarks/run_all.py gathers rows and reports failures (smoke tests, a few seconds).

Benchmarks are never asserted; these only check that the one command works.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.cli_helpers import ROOT, env

RUN_ALL = ROOT / "benchmarks" / "run_all.py"

GOOD = textwrap.dedent(
    """
    import argparse
    from _common import add_json_argument, make_row, write_json

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    print("| own table |")
    write_json(args.json, [
        make_row("good", "quick" if args.quick else "full", "ops/s", [3.0, 1.0, 2.0],
                 baseline_values=[4.0], baseline="base", target=">= 0.4x", met=True),
    ])
    """
)
BAD = "import sys\nprint('starting', file=sys.stderr)\nsys.exit('bench_bad: broken on purpose')\n"
SILENT = "pass\n"


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_ALL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env(),
    )


def test_bench_smoke_run_all_keeps_good_rows_and_reports_failures(tmp_path: Path) -> None:
    (tmp_path / "_common.py").write_text((ROOT / "benchmarks" / "_common.py").read_text())
    (tmp_path / "bench_good.py").write_text(GOOD)
    (tmp_path / "bench_bad.py").write_text(BAD)
    (tmp_path / "bench_silent.py").write_text(SILENT)
    out = tmp_path / "RESULTS.md"
    result = _run(
        "--quick",
        "--dir",
        str(tmp_path),
        "--output",
        str(out),
        "--only",
        "good",
        "--only",
        "bad",
        "--only",
        "silent",
        "--only",
        "missing",
    )
    assert result.returncode == 1, result.stderr
    text = out.read_text()
    assert text == result.stdout
    assert "| good | quick | 2 | 1 | 3 | ops/s | 0.50x | base | >= 0.4x | yes |" in text
    assert "own table" not in text
    assert "bench_bad.py | " in text and "exit status 1" in text
    assert "broken on purpose" in text  # the stderr tail
    assert "bench_silent.py" in text and "wrote no --json rows" in text
    assert "skipped: no bench_missing.py" in text
    for label in ("CPU:", "Python:", "trio:", "cryptography:", "OpenSSL", "command:"):
        assert label in text
    assert "broken on purpose" in result.stderr


def test_bench_smoke_run_all_on_bench_pools_quick(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    result = _run("--quick", "--only", "pools", "--output", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "| pools | acquire + release 16 KiB |" in text
    assert "| bench_pools.py |" in text and "failed" not in text
