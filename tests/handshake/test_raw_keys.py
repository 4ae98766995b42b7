"""Raw public keys (RFC 7250): the certificate-type codecs, pinned keys from configuration,
the peer's key from the network, tickets carrying a client's raw key, and the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from dtls13._fast import DecodeError
from dtls13.alerts import Alert, BadCertificate, CertificateUnknown
from dtls13.config import ClientConfig, ServerConfig
from dtls13.crypto.suites import CipherSuite
from dtls13.handshake import extensions as ext
from dtls13.handshake.raw_keys import (
    CertificateType,
    choose,
    load_pinned_keys,
    peer_key_untrusted,
    pull_certificate_type,
    pull_certificate_types,
    push_certificate_type,
    push_certificate_types,
    spki,
)
from dtls13.handshake.tickets import TicketProtector, TicketState
from tests.support.dtls_pair import pki
from tests.support.pki import cached_key

RPK, X509 = CertificateType.RawPublicKey, CertificateType.X509


def _key(slot: int = 0, kind: str = "ec256") -> Any:
    return cached_key(kind, 40 + slot)


def _der(slot: int = 0, kind: str = "ec256") -> bytes:
    return spki(_key(slot, kind).public_key())


# -- codecs ------------------------------------------------------------------------------------


def test_certificate_type_list_round_trips_and_rejects_empty_and_truncated() -> None:
    body = ext.encode(push_certificate_types, [RPK, X509])
    assert body == b"\x02\x02\x00"
    assert ext.decode(body, pull_certificate_types) == (2, 0)
    for cut in range(len(body)):
        with pytest.raises(DecodeError):
            ext.decode(body[:cut], pull_certificate_types)
    with pytest.raises(DecodeError):
        ext.decode(b"\x00", pull_certificate_types)  # <1..2^8-1>
    with pytest.raises(DecodeError):
        ext.decode(body + b"\x00", pull_certificate_types)


def test_single_certificate_type_round_trips() -> None:
    assert ext.encode(push_certificate_type, RPK) == b"\x02"
    assert ext.decode(b"\x00", pull_certificate_type) == 0
    for bad in (b"", b"\x02\x00"):
        with pytest.raises(DecodeError):
            ext.decode(bad, pull_certificate_type)


def test_choose_follows_the_peers_preference_among_ours() -> None:
    assert choose([X509, RPK], (RPK, X509)) == X509
    assert choose([7, RPK], (RPK,)) == RPK
    assert choose([X509], (RPK,)) is None


# -- the peer's key ------------------------------------------------------------------------------


def test_pinned_key_is_accepted_and_returned_as_der() -> None:
    assert peer_key_untrusted([_der()], frozenset({_der()})) == _der()


def test_well_formed_unpinned_key_is_certificate_unknown() -> None:
    with pytest.raises(CertificateUnknown):
        peer_key_untrusted([_der(1)], frozenset({_der()}))


def test_refusal_leaves_no_cycle_holding_the_peers_bytes() -> None:
    """The alert is not referenced from the frames of its own traceback: such a cycle kept
    the views of the pooled datagram the key came in alive until the next garbage
    collection (a lease left in use after an interop refusal)."""
    view = memoryview(bytearray(_der(1)))
    with pytest.raises(CertificateUnknown) as info:
        peer_key_untrusted([view], frozenset({_der()}))
    alert = info.value
    assert alert.__traceback__ is not None
    tb = alert.__traceback__.tb_next  # past this test's own frame
    assert tb is not None
    while tb is not None:
        assert all(value is not alert for value in tb.tb_frame.f_locals.values())
        tb = tb.tb_next


def test_several_entries_or_none_are_bad_certificate() -> None:
    pinned = frozenset({_der()})
    for entries in ([], [_der(), _der()]):
        with pytest.raises(BadCertificate):
            peer_key_untrusted(entries, pinned)


def test_damaged_keys_raise_only_alerts_and_are_never_accepted() -> None:
    """Truncated at every offset, with trailing bytes, every one-byte corruption: an alert
    (never another exception), and only the exact pinned bytes pass."""
    der = _der()
    pinned = frozenset({der})
    variants = [der[:cut] for cut in range(len(der))] + [der + b"\x00"]
    variants += [der[:i] + bytes([der[i] ^ 0x41]) + der[i + 1 :] for i in range(len(der))]
    for damaged in variants:
        with pytest.raises(Alert):
            peer_key_untrusted([damaged], pinned)


# -- pinned keys from configuration ------------------------------------------------------------


def test_pinned_keys_load_from_every_kind_of_source(tmp_path: Path) -> None:
    key = _key().public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    two = pem + _key(1).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "peer.pem"
    path.write_bytes(two)
    leaf = pki().leaf("ec256")
    assert load_pinned_keys([key]) == {_der()}
    assert load_pinned_keys([pem, _der()]) == {_der()}
    assert load_pinned_keys([path]) == {_der(), _der(1)}
    assert load_pinned_keys([str(path)]) == {_der(), _der(1)}
    assert load_pinned_keys([leaf.cert_pem]) == {spki(leaf.key.public_key())}
    assert load_pinned_keys([leaf.cert]) == {spki(leaf.key.public_key())}


def test_bad_pinned_keys_raise_at_once(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="sequence of keys"):
        load_pinned_keys(b"abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of keys"):
        load_pinned_keys(str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a PEM or DER public key"):
        load_pinned_keys([b"\x30\x03garbage"])
    with pytest.raises(ValueError, match="no PEM PUBLIC KEY"):
        load_pinned_keys([b"-----BEGIN PRIVATE KEY-----\n"])
    with pytest.raises(FileNotFoundError, match=r"missing\.pem"):
        load_pinned_keys([tmp_path / "missing.pem"])
    with pytest.raises(TypeError, match="public key, a certificate"):
        load_pinned_keys([_key()])  # a private key: pin its public half instead
    with pytest.raises(ValueError, match="empty"):
        load_pinned_keys([])


# -- tickets -----------------------------------------------------------------------------------


def test_ticket_carries_the_clients_raw_key() -> None:
    protector = TicketProtector(b"k" * 32)
    state = TicketState(
        CipherSuite.TLS_AES_128_GCM_SHA256, b"p" * 32, 1000.0, 600, 7, client_public_key=_der()
    )
    opened = protector.open(protector.seal(state, 1000.0), 1001.0)
    assert opened is not None and opened.client_public_key == _der()
    assert opened.client_chain == ()
    plain = TicketState(CipherSuite.TLS_AES_128_GCM_SHA256, b"p" * 32, 1000.0, 600, 7)
    reopened = protector.open(protector.seal(plain, 1000.0), 1001.0)
    assert reopened is not None and reopened.client_public_key == b""


# -- configuration -------------------------------------------------------------------------------


def test_config_types_follow_the_fields() -> None:
    leaf = pki().leaf("ec256")
    server = ServerConfig(private_key=_key(), raw_public_key=True)
    assert server.chain == () and server.own_types == (RPK,)
    assert server.own_spki == _der() and server.trust is None
    both = ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, raw_public_key=True
    )
    assert both.own_types == (RPK, X509)
    pins = ServerConfig(
        private_key=_key(),
        raw_public_key=True,
        client_auth="required",
        pinned_public_keys=[_key(1).public_key()],
    )
    assert pins.peer_types == (RPK,) and pins.trust is None
    pins_and_ca = ServerConfig(
        private_key=_key(),
        raw_public_key=True,
        client_auth="optional",
        pinned_public_keys=[_key(1).public_key()],
        cafile=pki().root_pem,
    )
    assert pins_and_ca.peer_types == (RPK, X509) and pins_and_ca.trust is not None
    client = ClientConfig(pinned_public_keys=[_key().public_key()])
    assert client.peer_types == (RPK,) and client.trust is None and client.own_types == ()
    plain = ClientConfig(server_name="localhost", cafile=pki().root_pem)
    assert plain.peer_types == (X509,) and plain.own_types == () and plain.pinned == frozenset()


def test_config_mistakes_raise_at_once() -> None:
    leaf = pki().leaf("ec256")
    with pytest.raises(ValueError, match="go together"):
        ServerConfig(private_key=_key())  # a bare key needs raw_public_key=True
    with pytest.raises(ValueError, match="raw_public_key needs private_key"):
        ClientConfig(raw_public_key=True, verify=False)
    with pytest.raises(TypeError, match="True or False"):
        ClientConfig(raw_public_key="yes", verify=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contradict verify=False"):
        ClientConfig(pinned_public_keys=[_key().public_key()], verify=False)
    with pytest.raises(ValueError, match="set client_auth"):
        ServerConfig(
            certificate_chain=leaf.chain_pem,
            private_key=leaf.key_pem,
            pinned_public_keys=[_key().public_key()],
        )
    with pytest.raises(ValueError, match="server_name is required"):
        ClientConfig(pinned_public_keys=[_key().public_key()], cafile=pki().root_pem)
