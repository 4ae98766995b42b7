"""Secrets held as bytes are zeroed when the library lets them go: the handshake's secrets
once it completes, the old traffic secret at a KeyUpdate, the traffic and resumption
secrets at the close, a ticket's PSK once sealed, and an exporter secret with its object.

A zeroed secret is freed right after, so the tests watch the zeroing itself: `Zeroed`
wraps the compiled `wipe_secret` and records the value of every secret it zeroes (a
reference held by the test would, rightly, stop the zeroing)."""

from __future__ import annotations

import hmac
import os

import pytest

import dtls13.crypto.zeroize as zeroize_module
from dtls13._fast import keys as fast_keys
from dtls13._fast import secret_refcount, wipe_secret
from dtls13.crypto.hkdf import expand_label_info
from dtls13.crypto.suites import CipherSuite
from dtls13.crypto.zeroize import zeroize
from dtls13.handshake.exporter import ExporterSecret
from dtls13.handshake.key_schedule import KeySchedule
from dtls13.record.protection import EpochKeys
from tests.support.dtls_pair import make_pair


class Zeroed:
    """The values of the secrets zeroed while `wipe` stands in for `wipe_secret`."""

    def __init__(self) -> None:
        self.values: set[bytes] = set()
        self._sole = -1  # what a sole-held secret counts here: measured by `calibrate`
        self._seen = -1

    def calibrate(self) -> None:
        probe = os.urandom(16)
        zeroize(probe)
        self._sole = self._seen

    def wipe(self, secret: object, sole: int) -> bool:
        self._seen = int(secret_refcount(secret))
        if self._sole < 0 or self._seen != self._sole or not isinstance(secret, bytes):
            return False
        value = bytes(bytearray(secret))
        if wipe_secret(secret, self._seen):
            self.values.add(value)
            return True
        return False


@pytest.fixture
def zeroed(monkeypatch: pytest.MonkeyPatch) -> Zeroed:
    spy = Zeroed()
    monkeypatch.setattr(zeroize_module, "wipe_secret", spy.wipe)
    spy.calibrate()
    return spy


def test_zeroize_zeroes_bytes_only_the_caller_holds() -> None:
    secret = os.urandom(32)
    assert zeroize(secret)
    assert secret == bytes(32)


def test_zeroize_leaves_bytes_someone_else_holds() -> None:
    secret = os.urandom(32)
    holder = [secret]
    assert not zeroize(secret)
    assert holder[0] == secret != bytes(32)
    assert not zeroize(None)


def test_handshake_key_update_and_close_zero_the_secrets(zeroed: Zeroed) -> None:
    pair = make_pair(client={"cipher_suites": ["TLS_AES_256_GCM_SHA384"]})
    hs = pair.client.handshake
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)  # final ACKs, tickets

    first_write = bytes(bytearray(hs.write_secret))
    pair.client.key_update(request_peer=True)
    pair.net.run(lambda: False, max_time=pair.net.now + 5)
    assert hs.write_secret != first_write
    assert first_write in zeroed.values
    assert pair.exchange(b"after", b"update")

    at_close = {bytes(bytearray(s)) for s in (hs.write_secret, hs.read_secret)}
    at_close.add(bytes(bytearray(hs.resumption_secret)))
    assert hs.exporter is not None
    exporter = bytes(bytearray(hs.exporter.secret))
    pair.close()
    assert at_close <= zeroed.values
    assert hs.write_secret == hs.read_secret == hs.resumption_secret == b""
    # Keys can still be exported after the close; the secret goes with the connection.
    assert exporter not in zeroed.values
    assert len(pair.client.export_keying_material("EXPORTER-x", b"", 32)) == 32


def test_the_handshake_secrets_are_zeroed_when_it_completes(zeroed: Zeroed) -> None:
    pair = make_pair(client={"cipher_suites": ["TLS_AES_256_GCM_SHA384"]})
    hs = pair.client.handshake
    seen: set[bytes] = set()
    original_drop = hs.drop_handshake_state

    def probing_drop() -> None:  # copies of the values: no reference is kept
        work = hs._work
        ks = work.schedule  # None at the close: the working state went at completion
        if ks is not None and ks.handshake_secret and ks.master_secret:
            for secret in (ks.handshake_secret, ks.master_secret, work.c_hs, work.s_hs):
                seen.add(bytes(bytearray(secret)))
        original_drop()

    hs.drop_handshake_state = probing_drop  # type: ignore[method-assign]
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)
    assert len(seen) == 4 and seen <= zeroed.values
    pair.close()


def test_an_exporter_secret_is_zeroed_with_its_object(zeroed: Zeroed) -> None:
    exporter = ExporterSecret("sha256", os.urandom(32))
    value = bytes(bytearray(exporter.secret))
    del exporter
    assert value in zeroed.values


def test_a_tickets_psk_and_resumption_secret_are_zeroed_once_sealed(
    zeroed: Zeroed, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = make_pair(server={"session_tickets": 2})
    made: list[bytes] = []
    original = KeySchedule.resumption_psk

    def probing_psk(self: KeySchedule, secret: bytes, nonce: bytes) -> bytes:
        psk = original(self, secret, nonce)
        if self is pair.server.handshake._work.schedule:  # the client keeps its PSKs in Sessions
            made.append(bytes(bytearray(psk)))
            made.append(bytes(bytearray(secret)))
        return psk

    monkeypatch.setattr(KeySchedule, "resumption_psk", probing_psk)
    assert pair.handshake()
    pair.net.run(lambda: False, max_time=pair.net.now + 5)
    assert len(set(made)) == 3  # two PSKs and the resumption secret
    assert set(made) <= zeroed.values
    pair.close()


def test_record_keys_are_derived_without_leaving_copies() -> None:
    # The key, IV and sn_key blocks (one HMAC block each) are cut by pointer, never copied,
    # and zeroed once the cipher holds its own inline copy (zeroed when it goes).
    secret = os.urandom(32)
    wiped: list[bytes] = []
    fast_keys.set_wipe_hook(wiped.append)
    try:
        EpochKeys(3, CipherSuite.TLS_AES_128_GCM_SHA256, secret)
    finally:
        fast_keys.set_wipe_hook(None)
    blocks = [
        hmac.digest(secret, expand_label_info(label, n), "sha256")
        for label, n in ((b"key", 16), (b"iv", 12), (b"sn", 16))
    ]
    assert sorted(wiped) == sorted(blocks)
