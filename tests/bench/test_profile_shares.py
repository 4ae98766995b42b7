"""benchmarks/profile_shares.py: perf's per-library samples sorted into kernel, interpreter,
crypto, dtls13's compiled code, libc and the rest (the parsing only; perf itself is not run)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

REPORT = """\
# Samples: 779  of event 'cpu-clock:ppp'
# Overhead  Shared Object
# ........  ....................
#
    61.50%  /usr/lib/libpython3.11.so.1.0
     9.00%  /venv/lib/python3.11/site-packages/cryptography/hazmat/bindings/_rust.abi3.so
     8.25%  [kernel.kallsyms]
     1.75%  [vdso]
     5.00%  /usr/lib/x86_64-linux-gnu/libcrypto.so.3
     3.00%  /repo/src/dtls13/_fast/protection.cpython-311-x86_64-linux-gnu.so
     2.00%  /repo/src/dtls13/_io.cpython-311-x86_64-linux-gnu.so
     4.00%  /usr/lib/x86_64-linux-gnu/libc.so.6
     1.00%  /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
     2.50%  /usr/lib/python3.11/lib-dynload/_socket.cpython-311-x86_64-linux-gnu.so
     2.00%  /usr/bin/python3.11
"""


@pytest.fixture(scope="module")
def profile_shares() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import profile_shares
    finally:
        sys.path.remove(str(BENCHMARKS))
    return profile_shares


def test_perf_report_lines_are_summed_by_group(profile_shares: ModuleType) -> None:
    shares = profile_shares.shares(REPORT)
    assert shares == {
        "kernel": 10.0,
        "interpreter": 63.5,
        "crypto": 14.0,
        "dtls13 compiled": 5.0,
        "libc": 5.0,
        "other": 2.5,
    }


def test_a_report_without_samples_gives_zero_shares(profile_shares: ModuleType) -> None:
    assert set(profile_shares.shares("# nothing\n").values()) == {0.0}
