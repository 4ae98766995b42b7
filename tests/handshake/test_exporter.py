"""Keying material exporters (RFC 8446 §7.5) on the sans-IO connection, checked against a
derivation written here with `cryptography`'s HKDF from the key schedule's secrets."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from dtls13.alerts import LocalProtocolError
from dtls13.crypto.hkdf import TLS13_PREFIX
from dtls13.events import HandshakeCompleted
from dtls13.handshake.client import ClientHandshake
from dtls13.handshake.exporter import export_keying_material
from tests.support.dtls_pair import SERVER_ADDR, Pair, configs, first_session, make_pair

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}


def _hash(name: str, data: bytes) -> bytes:
    h = hashes.Hash(_HASHES[name]())
    h.update(data)
    return h.finalize()


def _expand_label(
    name: str, secret: bytes, label: bytes, context: bytes, length: int, prefix: bytes
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1) from the RFC's struct, with cryptography's HKDF."""
    full = prefix + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(_HASHES[name](), length, info).derive(secret)


def reference_exporter(
    name: str, secret: bytes, label: bytes, context: bytes, length: int, prefix: bytes
) -> bytes:
    """TLS-Exporter (RFC 8446 §7.5): HKDF-Expand-Label(Derive-Secret(Secret, label, ""),
    "exporter", Hash(context_value), key_length); Derive-Secret hashes the empty transcript."""
    size = len(_hash(name, b""))
    derived = _expand_label(name, secret, label, _hash(name, b""), size, prefix)
    return _expand_label(name, derived, b"exporter", _hash(name, context), length, prefix)


class KeyLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def secret(self, label: str) -> bytes:
        values = {bytes.fromhex(ln.split()[2]) for ln in self.lines if ln.split()[0] == label}
        assert len(values) == 1, (label, self.lines)
        return values.pop()


def _pair(suite: str = "TLS_AES_128_GCM_SHA256") -> tuple[Pair, KeyLog, KeyLog]:
    client_log, server_log = KeyLog(), KeyLog()
    pair = make_pair(
        client={"keylog": client_log, "cipher_suites": [suite]},
        server={"keylog": server_log},
    )
    assert pair.handshake()
    return pair, client_log, server_log


# RFC 8448 §3 (simple 1-RTT), {server} derive secret "tls13 exp master", "expanded".
RFC8448_EXP_MASTER = bytes.fromhex(
    "c4196f87b65585b405a6ed59ba9ca31e468ac9b2c79477d449c559a44407197f"
)


def test_exporter_follows_rfc8446_from_the_rfc8448_exporter_master_secret() -> None:
    for label, context, length in [
        (b"EXPORTER-test", b"", 32),
        (b"EXTRACTOR-dtls_srtp", b"", 60),
        (b"x", b"context" * 50, 1),
        (b"EXPORTER-long", b"\x00", 200),
    ]:
        ours = export_keying_material(
            "sha256", RFC8448_EXP_MASTER, label, context, length, prefix=TLS13_PREFIX
        )
        assert ours == reference_exporter(
            "sha256", RFC8448_EXP_MASTER, label, context, length, TLS13_PREFIX
        )


@pytest.mark.parametrize(
    ("suite", "hash_name"),
    [("TLS_AES_128_GCM_SHA256", "sha256"), ("TLS_AES_256_GCM_SHA384", "sha384")],
)
def test_both_sides_export_the_same_value_the_dtls13_labels_give(
    suite: str, hash_name: str
) -> None:
    pair, client_log, server_log = _pair(suite)
    secret = client_log.secret("EXPORTER_SECRET")
    assert server_log.secret("EXPORTER_SECRET") == secret
    for label, context, length in [
        ("EXPORTER-Example", b"ctx", 32),
        (b"EXTRACTOR-dtls_srtp", None, 60),
        ("EXPORTER-long", b"", 1000),
    ]:
        c = pair.client.export_keying_material(label, context, length)
        s = pair.server.export_keying_material(label, context, length)
        assert c == s and len(c) == length
        raw = label.encode() if isinstance(label, str) else label
        # DTLS 1.3: both HKDF-Expand-Label steps take the "dtls13" prefix (RFC 9147 §5.9).
        assert c == reference_exporter(hash_name, secret, raw, context or b"", length, b"dtls13")
        assert c != reference_exporter(hash_name, secret, raw, context or b"", length, TLS13_PREFIX)
    pair.close()


def test_labels_contexts_and_lengths_give_different_values_and_no_context_is_empty() -> None:
    pair, _, _ = _pair()
    export = pair.client.export_keying_material
    base = export("EXPORTER-a", b"ctx", 32)
    assert export("EXPORTER-b", b"ctx", 32) != base
    assert export("EXPORTER-a", b"ctx2", 32) != base
    assert export(b"EXPORTER-a", b"ctx", 32) == base  # str and bytes labels are the same
    # The length is part of HkdfLabel: a shorter export is not a prefix of a longer one.
    assert export("EXPORTER-a", b"ctx", 16) != base[:16]
    # RFC 8446 §7.5: no context computes the same value as an empty context.
    assert export("EXPORTER-a", None, 32) == export("EXPORTER-a", b"", 32)
    assert export("EXPORTER-a", None, 32) != base
    pair.close()


def test_exporting_before_the_handshake_completes_is_refused() -> None:
    pair = make_pair()
    with pytest.raises(LocalProtocolError, match="handshake is done"):
        pair.client.export_keying_material("EXPORTER-x", None, 16)
    pair.client.connect(SERVER_ADDR, 0.0)

    # The server has its exporter secret once its Finished is sent, but the handshake is
    # done only when the client's Finished has arrived.
    def server_finished_sent() -> bool:
        return pair.server.handshake.exporter is not None

    assert pair.net.run(server_finished_sent)
    assert not pair.server.handshake_complete
    with pytest.raises(LocalProtocolError):
        pair.server.export_keying_material("EXPORTER-x", None, 16)
    with pytest.raises(LocalProtocolError, match="0-RTT"):
        pair.client.export_early_keying_material("EXPORTER-x", None, 16)
    assert pair.net.run(pair.completed)
    assert pair.server.export_keying_material("EXPORTER-x", None, 16)
    pair.close()


def test_bad_exporter_arguments_raise_at_once() -> None:
    pair, _, _ = _pair()
    export = pair.client.export_keying_material
    for label in ("", b"", "é", "x" * 250):
        with pytest.raises(ValueError, match="label"):
            export(label, None, 16)
    assert export("x" * 249, None, 16)  # "dtls13" + 249 bytes: HkdfLabel's 255
    with pytest.raises(TypeError):
        export(3, None, 16)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        export("EXPORTER-x", "ctx", 16)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        export("EXPORTER-x", None, 16.0)  # type: ignore[arg-type]
    for length in (0, -1, 255 * 32 + 1):
        with pytest.raises(ValueError, match="length"):
            export("EXPORTER-x", None, length)
    assert len(export("EXPORTER-x", None, 255 * 32)) == 255 * 32
    pair.close()


def test_exporter_works_after_the_handshake_state_is_dropped() -> None:
    pair, _, _ = _pair()
    before = pair.client.export_keying_material("EXPORTER-x", b"", 32)
    pair.net.run(lambda: False, max_time=pair.net.now + 5)  # final ACKs, tickets
    pair.drain()
    assert pair.client.handshake._work is ClientHandshake.SPENT_WORK  # no key schedule
    assert pair.client.handshake._work.schedule is None
    assert pair.client.export_keying_material("EXPORTER-x", b"", 32) == before
    assert pair.server.export_keying_material("EXPORTER-x", b"", 32) == before
    pair.close()
    # Still answered after the close, from what the handshake established.
    assert pair.client.export_keying_material("EXPORTER-x", b"", 32) == before


def test_early_exporter_with_zero_rtt_matches_on_both_sides() -> None:
    client_log, server_log = KeyLog(), KeyLog()
    cfgs = configs(
        client={"keylog": client_log}, server={"max_early_data": 4096, "keylog": server_log}
    )
    session = first_session(cfgs)
    client_log.lines.clear()
    server_log.lines.clear()
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    pair.client.connect(SERVER_ADDR, 0.0)
    # Available to the client as soon as it offered 0-RTT, for use with its early data.
    early = pair.client.export_early_keying_material("EXPORTER-early", b"c", 48)
    pair.client.send_early_data(b"hello")
    assert pair.net.run(pair.completed)
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert done.early_data_accepted is True
    assert pair.server.export_early_keying_material("EXPORTER-early", b"c", 48) == early
    secret = client_log.secret("EARLY_EXPORTER_SECRET")
    assert server_log.secret("EARLY_EXPORTER_SECRET") == secret
    assert early == reference_exporter("sha256", secret, b"EXPORTER-early", b"c", 48, b"dtls13")
    # A separate interface (RFC 8446 §7.5): the early value is not the regular one.
    assert pair.client.export_keying_material("EXPORTER-early", b"c", 48) != early
    pair.close()


def test_no_early_exporter_without_zero_rtt() -> None:
    cfgs = configs(server={"max_early_data": 0})
    session = first_session(cfgs)
    pair = make_pair(1, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    assert pair.handshake()
    assert pair.client.handshake.resumed and pair.server.handshake.resumed
    for conn in (pair.client, pair.server):
        with pytest.raises(LocalProtocolError, match="0-RTT"):
            conn.export_early_keying_material("EXPORTER-early", None, 16)
    pair.close()
