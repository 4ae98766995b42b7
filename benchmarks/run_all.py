"""Run every benchmark and write one table to benchmarks/RESULTS.md.

Each `benchmarks/bench_*.py` runs in its own subprocess with `--json PATH` (and `--quick`
when given); its rows are gathered into one Markdown table headed by the date, the
machine and the library versions. A script that fails or writes no rows is reported with
the tail of its stderr, the other rows are kept, and the exit status is 1.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--output PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import Row, markdown_table, read_json

HERE = Path(__file__).resolve().parent
# The targeted benchmarks, in this order (quick ones first); others follow in name order.
ORDER = ("pools", "record", "echo", "handshake", "memory", "flood", "workers")
TAIL_LINES = 12


@dataclass
class Outcome:
    """What one script gave: its rows, or why it gave none."""

    name: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # None: ran and wrote rows
    stderr_tail: str = ""


def discover(directory: Path) -> dict[str, Path]:
    """name -> script, for every bench_NAME.py in `directory`, in ORDER then by name."""
    found = {p.stem.removeprefix("bench_"): p for p in directory.glob("bench_*.py")}
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_script(
    name: str, script: Path, quick: bool, timeout: float, env: dict[str, str]
) -> Outcome:
    """Run one script with --json into a temporary file; never raises."""
    outcome = Outcome(name)
    fd, json_path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".json")
    os.close(fd)
    os.unlink(json_path)  # a script that writes nothing leaves no stale rows behind
    cmd = [sys.executable, str(script), "--json", json_path] + (["--quick"] if quick else [])
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired as exc:
        outcome.error = f"timed out after {timeout:g} s"
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        outcome.stderr_tail = _tail(err or "")
        return outcome
    finally:
        outcome.seconds = time.monotonic() - started
    outcome.stderr_tail = _tail(proc.stderr)
    try:
        if proc.returncode != 0:
            outcome.error = f"exit status {proc.returncode}"
        elif not os.path.exists(json_path):
            outcome.error = "wrote no --json rows"
        else:
            outcome.rows = read_json(json_path)
            if not outcome.rows:
                outcome.error = "wrote an empty row list"
    except (OSError, ValueError, TypeError) as exc:
        outcome.error = f"unreadable --json output: {exc}"
    finally:
        if os.path.exists(json_path):
            os.unlink(json_path)
    if outcome.error is None:
        outcome.stderr_tail = ""
    return outcome


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", "?"))


def machine() -> list[tuple[str, str]]:
    """(label, value) pairs describing where the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        openssl = backend.openssl_version_text()
    except Exception:
        openssl = "?"
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("trio", _version("trio")),
        ("cryptography", _version("cryptography")),
        ("OpenSSL (cryptography)", openssl),
        ("pyOpenSSL", _version("OpenSSL")),
    ]


def render(outcomes: list[Outcome], command: str, started: datetime.datetime) -> str:
    rows = [r for o in outcomes for r in o.rows]
    lines = [
        "# Benchmark results",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        *(f"- {label}: {value}" for label, value in machine()),
        f"- command: `{command}`",
        "",
        "Median, min and max of several runs; the ratio is the median against the baseline "
        "named in *vs*, measured in the same run; *met* compares with its target.",
        "",
        markdown_table(rows),
        "",
        "| script | seconds | rows | status |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        status = "ok" if o.error is None else f"**failed**: {o.error}"
        if o.error is not None and o.error.startswith("skipped"):
            status = f"**{o.error}**"
        lines.append(f"| bench_{o.name}.py | {o.seconds:.1f} | {len(o.rows)} | {status} |")
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        lines += ["", f"### bench_{o.name}.py: {o.error}", ""]
        if o.stderr_tail:
            lines += ["```", o.stderr_tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only bench_NAME.py (repeatable)"
    )
    parser.add_argument("--dir", type=Path, default=HERE, help="where the bench_*.py are")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md", metavar="PATH")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per script")
    args = parser.parse_args(argv)

    started = datetime.datetime.now(datetime.UTC)
    scripts = discover(args.dir)
    outcomes: list[Outcome] = []
    # The targeted benchmarks are expected here: one that is absent is reported.
    expected = ORDER if args.dir.resolve() == HERE else ()
    names = args.only or list(dict.fromkeys([*expected, *scripts]))
    env = dict(os.environ)
    # The scripts import dtls13 from this checkout, as the command line here does.
    root = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for name in names:
        script = scripts.get(name)
        if script is None:
            outcomes.append(Outcome(name, error=f"skipped: no bench_{name}.py in {args.dir}"))
            print(f"bench_{name}.py: missing, skipped", file=sys.stderr, flush=True)
            continue
        print(f"bench_{name}.py ...", file=sys.stderr, flush=True)
        outcome = run_script(name, script, args.quick, args.timeout, env)
        outcomes.append(outcome)
        status = "ok" if outcome.error is None else f"FAILED ({outcome.error})"
        print(
            f"bench_{name}.py: {status}, {len(outcome.rows)} rows, {outcome.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        if outcome.error is not None and outcome.stderr_tail:
            print(_tail(outcome.stderr_tail), file=sys.stderr, flush=True)

    command = "python benchmarks/run_all.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    text = render(outcomes, command, started)
    args.output.write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"(written to {args.output})", file=sys.stderr)
    return 1 if any(o.error is not None for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
