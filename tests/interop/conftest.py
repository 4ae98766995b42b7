"""Fixtures for interop tests: where the peers are, certificates, a dedicated PoolSet.

wolfSSL: ``$DTLS13_WOLFSSL_DIR`` or ``<repo>/.peers/wolfssl`` (built by
``.ci/build_wolfssl.sh``); its tests skip without it, except under CI (``CI=true``),
where they fail. OpenSSL 4.1+: ``$DTLS13_OPENSSL`` or an ``openssl`` on PATH whose
``s_server`` speaks DTLS 1.3; its tests skip without one. NSS 3.123+: ``$DTLS13_NSS``,
a build's ``dist/Release`` directory (``bin/tstclnt`` and ``lib/``); its tests skip
without it, under CI too (CI does not build NSS).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dtls13.memory import PoolSet
from tests.interop.peers import Certs, Nss, WolfSSL, assert_pools_empty, write_certs
from tests.support.pki import TestPKI

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.interop)


@functools.cache
def _find_wolfssl() -> WolfSSL | str:
    env = os.environ.get("DTLS13_WOLFSSL_DIR")
    home = Path(env) if env else REPO / ".peers" / "wolfssl"
    found = WolfSSL(home.resolve())
    missing = [p for p in (found.client, found.server) if not os.access(p, os.X_OK)]
    if missing:
        where = "DTLS13_WOLFSSL_DIR" if env else "the default place"
        return (
            f"wolfSSL example programs not found in {home} ({where}): "
            "run `bash .ci/build_wolfssl.sh` (or set DTLS13_WOLFSSL_DIR)"
        )
    return found


@pytest.fixture
def wolfssl() -> WolfSSL:
    found = _find_wolfssl()
    if isinstance(found, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the wolfSSL interop tests: {found}", pytrace=False)
        pytest.skip(found)
    return found


@functools.cache
def _speaks_dtls13(binary: str) -> bool:
    try:
        out = subprocess.run(
            [binary, "s_server", "-help"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"-dtls1_3" in out.stdout + out.stderr


@functools.cache
def _find_openssl() -> str | None:
    env = os.environ.get("DTLS13_OPENSSL")
    if env:
        return env
    on_path = shutil.which("openssl")
    return on_path if on_path and _speaks_dtls13(on_path) else None


@pytest.fixture
def openssl() -> str:
    binary = _find_openssl()
    if binary is None:
        pytest.skip(
            "no OpenSSL with DTLS 1.3 (4.1 or newer): set DTLS13_OPENSSL to its openssl binary"
        )
    if not _speaks_dtls13(binary):
        pytest.fail(f"DTLS13_OPENSSL={binary} is not an openssl whose s_server has -dtls1_3")
    return binary


@pytest.fixture
def nss() -> Nss:
    """NSS's tstclnt and tools, from the dist/Release directory DTLS13_NSS names."""
    env = os.environ.get("DTLS13_NSS")
    if not env:
        pytest.skip(
            "no NSS 3.123+ (DTLS 1.3 client tstclnt): set DTLS13_NSS to an NSS build's "
            "dist/Release directory (see docs/interop.md)"
        )
    found = Nss(Path(env).resolve())
    if not os.access(found.tstclnt, os.X_OK) or not (found.home / "lib").is_dir():
        pytest.fail(f"DTLS13_NSS={env} holds no bin/tstclnt and lib/ (an NSS dist/Release)")
    return found


@functools.cache
def _compression_algorithms(binary: str) -> frozenset[str]:
    """The certificate compression algorithms an openssl was built with (`list -disabled`
    names those it was not: ZLIB, BROTLI, ZSTD)."""
    try:
        out = subprocess.run(
            [binary, "list", "-disabled"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    disabled = {line.strip().lstrip("- ").lower() for line in out.stdout.decode().splitlines()}
    return frozenset(a for a in ("zlib", "brotli", "zstd") if a not in disabled)


@pytest.fixture
def openssl_compression() -> tuple[str, frozenset[str]]:
    """An OpenSSL with DTLS 1.3 and certificate compression (RFC 8879), and its
    algorithms: DTLS13_OPENSSL_COMP, else the OpenSSL the other tests use when it was
    built with zlib, brotli or zstd."""
    binary = os.environ.get("DTLS13_OPENSSL_COMP") or _find_openssl()
    if binary is None or not _compression_algorithms(binary):
        pytest.skip(
            "no OpenSSL with DTLS 1.3 built with zlib, brotli or zstd: set "
            "DTLS13_OPENSSL_COMP to one configured with enable-zlib enable-brotli enable-zstd"
        )
    if not _speaks_dtls13(binary):
        pytest.fail(f"{binary} is not an openssl whose s_server has -dtls1_3")
    return binary, _compression_algorithms(binary)


@pytest.fixture(scope="session")
def interop_pki() -> TestPKI:
    return TestPKI.create("ec256", slot=200)


@pytest.fixture
def certs(tmp_path: Path, interop_pki: TestPKI) -> Certs:
    return write_certs(tmp_path, interop_pki)


@pytest.fixture
def pools() -> Iterator[PoolSet]:
    """A PoolSet for this test only: every pool must be back to zero afterwards."""
    pools = PoolSet()
    yield pools
    assert_pools_empty(pools)
