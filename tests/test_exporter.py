"""Keying material exporter (RFC 8446 §7.5, labels prefixed "dtls13" as RFC 9147 §5.9 says
for every HKDF-Expand-Label): both sides export the same bytes, which depend on the label,
the context and the length, and derive from the EXPORTER_SECRET of the key log."""

from __future__ import annotations

import hashlib

import pytest
from dtls_pair import make_pair

from dtls13.crypto.hkdf import derive_secret, hkdf_expand_label
from dtls13.errors import LocalProtocolError


def test_both_sides_export_the_same_keying_material_from_the_exporter_secret() -> None:
    lines: list[str] = []
    pair = make_pair(client={"keylog": lines.append})
    with pytest.raises(LocalProtocolError):
        pair.client.export_keying_material(b"EXPERIMENTAL test", b"", 32)
    assert pair.handshake()
    out = pair.client.export_keying_material(b"EXPERIMENTAL test", b"ctx", 42)
    assert len(out) == 42
    assert pair.server.export_keying_material(b"EXPERIMENTAL test", b"ctx", 42) == out
    assert pair.client.export_keying_material(b"EXPERIMENTAL other", b"ctx", 42) != out
    assert pair.client.export_keying_material(b"EXPERIMENTAL test", b"", 42) != out
    # RFC 8446 §7.5: HKDF-Expand-Label(Derive-Secret(Secret, label, ""), "exporter",
    # Hash(context_value), key_length), with the "dtls13" label prefix.
    secret = bytes.fromhex(next(x for x in lines if x.startswith("EXPORTER_SECRET")).split()[2])
    inner = derive_secret("sha256", secret, b"EXPERIMENTAL test", hashlib.sha256().digest())
    want = hkdf_expand_label("sha256", inner, b"exporter", hashlib.sha256(b"ctx").digest(), 42)
    assert out == want
    pair.close()
