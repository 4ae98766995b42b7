"""DTLS-SRTP (RFC 5764) in DTLS 1.3: the use_srtp codec, the negotiation in ClientHello and
EncryptedExtensions, its failures, and the SRTP keys from the exporter (§4.2)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest

from dtls13._fast import Buffer, DecodeError
from dtls13.alerts import AlertDescription, LocalProtocolError
from dtls13.config import ClientConfig
from dtls13.connection import Connection
from dtls13.events import HandshakeCompleted
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.srtp import (
    KEY_SALT_LENGTHS,
    SrtpProtectionProfile,
    UseSrtp,
    pull_use_srtp,
    push_use_srtp,
)
from tests.support.dtls_pair import Pair, configs, make_pair

P = SrtpProtectionProfile
A = AlertDescription
# Profiles 1 and 7, MKI "ab": UseSRTPData as RFC 5764 §4.1.1 lays it out.
WIRE = bytes.fromhex("0004 0001 0007 02 6162")


def _encode(value: UseSrtp) -> bytes:
    return ext.encode(push_use_srtp, value)


def test_use_srtp_codec_round_trip_and_layout() -> None:
    value = UseSrtp((1, 7), b"ab")
    assert _encode(value) == WIRE
    assert ext.decode(WIRE, pull_use_srtp) == value
    unknown = UseSrtp((0x1234,), b"")  # unknown profiles are kept, not refused
    assert ext.decode(_encode(unknown), pull_use_srtp) == unknown


def test_use_srtp_decoder_refuses_every_malformed_body() -> None:
    for cut in range(len(WIRE)):
        with pytest.raises(DecodeError):
            ext.decode(WIRE[:cut], pull_use_srtp)
    bad = [
        WIRE + b"\x00",  # trailing byte
        bytes.fromhex("0000 00"),  # no profile: SRTPProtectionProfiles<2..2^16-1>
        bytes.fromhex("0003 000100 00"),  # odd list length
        bytes.fromhex("0004 0001 00"),  # list longer than the body
        bytes.fromhex("0002 0001 05 61"),  # MKI longer than the body
    ]
    for body in bad:
        with pytest.raises(DecodeError):
            ext.decode(body, pull_use_srtp)
    # Every one-byte corruption either decodes to something or is a DecodeError.
    for i in range(len(WIRE)):
        for flip in (0x01, 0x80, 0xFF):
            body = bytearray(WIRE)
            body[i] ^= flip
            with contextlib.suppress(DecodeError):
                ext.decode(bytes(body), pull_use_srtp)
    buf = Buffer(WIRE)
    assert pull_use_srtp(buf).mki == b"ab"
    buf.close()


def _srtp_pair(client: dict[str, Any], server: dict[str, Any]) -> Pair:
    return make_pair(client=client, server=server)


def test_server_picks_its_first_profile_the_client_offered() -> None:
    pair = _srtp_pair(
        {"srtp_profiles": ["SRTP_AEAD_AES_256_GCM", "SRTP_AES128_CM_SHA1_80", 0x0007]},
        {"srtp_profiles": [P.SRTP_AEAD_AES_128_GCM, P.SRTP_AES128_CM_SHA1_80]},
    )
    assert pair.handshake()
    assert pair.client.srtp_profile is pair.server.srtp_profile is P.SRTP_AEAD_AES_128_GCM
    assert pair.client.srtp_mki == pair.server.srtp_mki == b""
    pair.close()


@pytest.mark.parametrize("profile", list(KEY_SALT_LENGTHS), ids=lambda p: p.name)
def test_srtp_keys_are_the_exporters_output_split_per_rfc5764(
    profile: SrtpProtectionProfile,
) -> None:
    pair = _srtp_pair({"srtp_profiles": [profile]}, {"srtp_profiles": [profile]})
    assert pair.handshake()
    key, salt = KEY_SALT_LENGTHS[profile]
    raw = pair.client.export_keying_material("EXTRACTOR-dtls_srtp", b"", 2 * (key + salt))
    # RFC 5764 §4.2: client_write_SRTP_master_key, server_write_SRTP_master_key,
    # client_write_SRTP_master_salt, server_write_SRTP_master_salt.
    expected = (raw[:key], raw[key : 2 * key], raw[2 * key : 2 * key + salt], raw[2 * key + salt :])
    for conn in (pair.client, pair.server):
        m = conn.srtp_keying_material()
        assert m.profile is profile
        got = (m.client_write_key, m.server_write_key, m.client_write_salt, m.server_write_salt)
        assert got == expected
    c, s = pair.client.srtp_keying_material(), pair.server.srtp_keying_material()
    assert c.local(True) == s.remote(False) == (expected[0], expected[2])
    assert c.remote(True) == s.local(False) == (expected[1], expected[3])
    pair.close()


def test_known_profile_lengths() -> None:
    assert KEY_SALT_LENGTHS[P.SRTP_AES128_CM_SHA1_80] == (16, 14)  # 60 bytes exported
    assert KEY_SALT_LENGTHS[P.SRTP_AEAD_AES_256_GCM] == (32, 12)
    assert int(P.SRTP_AEAD_AES_128_GCM) == 0x0007


def test_no_common_profile_or_no_offer_means_plain_dtls() -> None:
    for client, server in [
        (
            {"srtp_profiles": ["SRTP_AES128_CM_SHA1_32"]},
            {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"]},
        ),
        ({}, {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"]}),
        ({"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"]}, {}),
    ]:
        pair = _srtp_pair(client, server)
        assert pair.handshake()
        assert pair.client.srtp_profile is None and pair.server.srtp_profile is None
        with pytest.raises(LocalProtocolError, match="no SRTP"):
            pair.client.srtp_keying_material()
        pair.close()


def test_mki_is_echoed_only_by_a_server_that_accepts_it() -> None:
    offer = {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"], "srtp_mki": b"\x01\x02"}
    pair = _srtp_pair(offer, {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"]})
    assert pair.handshake()
    assert pair.client.srtp_mki == pair.server.srtp_mki == b""  # declined (§4.1.3)
    pair.close()
    accepting = {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"], "srtp_accept_mki": True}
    pair = _srtp_pair(offer, accepting)
    assert pair.handshake()
    assert pair.client.srtp_mki == pair.server.srtp_mki == b"\x01\x02"
    pair.close()


def test_srtp_keys_before_the_handshake_are_refused() -> None:
    pair = _srtp_pair(
        {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"]}, {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80"]}
    )
    with pytest.raises(LocalProtocolError):
        pair.client.srtp_keying_material()
    pair.close()


# -- failures ----------------------------------------------------------------------------


def _rewrite(conn: Connection, message: type, data: bytes, *, add: bool = False) -> None:
    """Make `conn` send `message` with use_srtp's body replaced by `data` (or added)."""
    hs = conn.handshake
    original = hs._send

    def send(msg: Any, epoch: int | None, *, transcript: bool = True) -> None:
        if isinstance(msg, message):
            kept = [e for e in msg.extensions if e.type != ExtensionType.use_srtp]
            if add or len(kept) != len(msg.extensions):
                kept.append(ext.Extension(ExtensionType.use_srtp, data))
            msg = dataclasses.replace(msg, extensions=tuple(kept))
        original(msg, epoch, transcript=transcript)

    hs._send = send  # type: ignore[method-assign]


def _fails_with(pair: Pair, detector: str, alert: AlertDescription) -> None:
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    pair.ends_with_alert(detector, alert)
    assert not [e for e in pair.client_events if isinstance(e, HandshakeCompleted)]
    pair.close()
    assert pair.pools.in_use == 0


SRTP = {"srtp_profiles": ["SRTP_AES128_CM_SHA1_80", "SRTP_AES128_CM_SHA1_32"]}


@pytest.mark.parametrize(
    "body",
    [b"", bytes.fromhex("0000 00"), bytes.fromhex("0003 000100 00"), WIRE + b"\x00"],
    ids=["empty", "no-profiles", "odd-length", "trailing-byte"],
)
def test_malformed_use_srtp_in_client_hello_is_dropped_as_a_damaged_hello(body: bytes) -> None:
    """RFC 5764 would answer decode_error; an unauthenticated first ClientHello that does not
    decode is instead dropped and counted (it must not end the handshake a genuine one may
    still bring: DESIGN.md §4), as for any other extension."""
    pair = _srtp_pair(SRTP, SRTP)
    _rewrite(pair.client, msgs.ClientHello, body)
    pair.client.connect(("10.0.0.2", 4433), pair.net.now)
    pair.net.run(lambda: False, max_time=pair.net.now + 8)  # the client retransmits
    assert pair.server.stats["dropped_damaged_hello"] >= 2
    assert pair.terminated("server") is None and pair.terminated("client") is None
    assert not pair.server.handshake_complete
    pair.close()
    assert pair.pools.in_use == 0


def test_a_server_without_srtp_ignores_use_srtp_even_malformed() -> None:
    pair = _srtp_pair(SRTP, {})
    _rewrite(pair.client, msgs.ClientHello, bytes.fromhex("0001 00 00"))
    assert pair.handshake()
    assert pair.client.srtp_profile is None and pair.server.srtp_profile is None
    pair.close()


def test_malformed_use_srtp_in_encrypted_extensions_is_decode_error() -> None:
    pair = _srtp_pair(SRTP, SRTP)
    _rewrite(pair.server, msgs.EncryptedExtensions, bytes.fromhex("0002 0001"))
    _fails_with(pair, "client", A.decode_error)


@pytest.mark.parametrize(
    "answer",
    [
        UseSrtp((P.SRTP_AEAD_AES_128_GCM,)),  # a profile the client did not offer
        UseSrtp((0x0001, 0x0002)),  # more than the one profile chosen
        UseSrtp((0x0001,), b"other"),  # an MKI that is neither empty nor the client's
    ],
    ids=["not-offered", "two-profiles", "other-mki"],
)
def test_bad_server_choice_is_illegal_parameter(answer: UseSrtp) -> None:
    pair = _srtp_pair({**SRTP, "srtp_mki": b"mine"}, SRTP)
    _rewrite(pair.server, msgs.EncryptedExtensions, _encode(answer))
    _fails_with(pair, "client", A.illegal_parameter)


def test_unsolicited_use_srtp_is_unsupported_extension() -> None:
    pair = _srtp_pair({}, SRTP)
    _rewrite(pair.server, msgs.EncryptedExtensions, _encode(UseSrtp((1,))), add=True)
    _fails_with(pair, "client", A.unsupported_extension)


def test_srtp_configuration_errors_raise_at_once() -> None:
    ccfg, _ = configs()
    base: dict[str, Any] = {"server_name": "localhost", "verify": False}
    with pytest.raises(ValueError, match="unknown SRTP protection profile"):
        ClientConfig(**base, srtp_profiles=["SRTP_NULL"])
    with pytest.raises(ValueError, match="0x0005"):
        ClientConfig(**base, srtp_profiles=[5])  # NULL cipher: not offered
    with pytest.raises(ValueError, match="duplicate"):
        ClientConfig(**base, srtp_profiles=[1, "srtp_aes128_cm_sha1_80"])
    with pytest.raises(TypeError):
        ClientConfig(**base, srtp_profiles="SRTP_AES128_CM_SHA1_80")
    with pytest.raises(TypeError):
        ClientConfig(**base, srtp_profiles=[1.0])
    with pytest.raises(ValueError, match="srtp_mki"):
        ClientConfig(**base, srtp_profiles=[1], srtp_mki=bytes(256))
    with pytest.raises(ValueError, match="needs srtp_profiles"):
        ClientConfig(**base, srtp_mki=b"x")
    assert ccfg.srtp == ()
