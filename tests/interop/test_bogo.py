"""BoringSSL's BoGo runner against the dtls13 shim (tests/bogo): a few DTLS 1.3 tests
that must pass. Needs a BoringSSL checkout in DTLS13_BORINGSSL and Go; skips without it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "tests" / "bogo" / "run.sh"
# Record header variants, suites with 2^14-byte records and damaged records, the MTU.
MUST_PASS = [
    "DTLS13RecordHeader-NoLength-Server",
    "DTLS13RecordHeader-ShortSeqNums-Server",
    "DTLS13RecordHeader-OldHeader",
    "DTLS13RecordHeader-CIDBit",
    "DTLS-TLS13-AES_128_GCM_SHA256-LargeRecord",
    "DTLS-TLS13-CHACHA20_POLY1305_SHA256-BadRecord",
    "MTU-DTLS13",
]


def test_bogo_dtls13_subset_passes(tmp_path: Path) -> None:
    boringssl = os.environ.get("DTLS13_BORINGSSL")
    if not boringssl:
        pytest.skip("BoGo needs a BoringSSL checkout: set DTLS13_BORINGSSL")
    if not shutil.which("go") and not (Path(boringssl) / "bogo-runner.test").exists():
        pytest.skip("BoGo needs Go to build BoringSSL's runner")
    env = {
        **os.environ,
        "BOGO_OUT": str(tmp_path),
        "DTLS13_PYTHON": sys.executable,
    }
    subprocess.run(["bash", str(RUN), ";".join(MUST_PASS)], env=env, check=True, timeout=1800)
    results = json.loads((tmp_path / "results.json").read_text())["tests"]
    assert {name: results[name]["actual"] for name in MUST_PASS} == dict.fromkeys(MUST_PASS, "PASS")
