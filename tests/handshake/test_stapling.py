"""OCSP stapling and SCT codecs and checks (RFC 6066 §8, RFC 6962 §3.3, RFC 8446 §4.4.2)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls13.alerts import Alert, DecodeErrorAlert, UnsupportedExtension
from dtls13.config import ServerConfig
from dtls13.handshake import messages as msgs
from dtls13.handshake import stapling
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.extensions import Extension
from dtls13.handshake.gate import FlightBound
from dtls13.handshake.selection import ServerCertificate
from tests.support.pki import TestPKI

PKI = TestPKI.create("ec256", slot=250)
LEAF = PKI.leaf("ec256", dns_names=("localhost",), cn="stapled")
OCSP = ExtensionType.status_request
SCT = ExtensionType.signed_certificate_timestamp
RESPONSE = b"\x30\x03\x0a\x01\x00"  # any bytes: the library does not parse the response
SCTS = (b"\x00" + bytes(range(40)), b"\x00" + bytes(range(7)))


def _entries(*leaf_ext: Extension, intermediate: tuple[Extension, ...] = ()) -> tuple[Any, ...]:
    return (msgs.CertificateEntry(b"leaf", leaf_ext), msgs.CertificateEntry(b"ca", intermediate))


def test_status_and_timestamps_round_trip_through_the_leaf_entry() -> None:
    status = Extension(OCSP, stapling.encode_certificate_status(RESPONSE))
    timestamps = Extension(SCT, stapling.encode_timestamps(SCTS))
    got = stapling.peer_stapled_untrusted(_entries(status, timestamps), True, True)
    assert got == stapling.Stapled(RESPONSE, SCTS)
    assert stapling.encode_timestamps(SCTS)[:2] == (2 + 41 + 2 + 8).to_bytes(2, "big")


def test_nothing_stapled_is_nothing() -> None:
    assert stapling.peer_stapled_untrusted(_entries(), True, True) is stapling.NOTHING


@pytest.mark.parametrize(
    ("ext_type", "asked"),
    [(OCSP, (False, True)), (SCT, (True, False)), (0x7F, (True, True))],
)
def test_an_extension_we_did_not_ask_for_is_unsupported_extension(
    ext_type: int, asked: tuple[bool, bool]
) -> None:
    entries = _entries(Extension(ext_type, b"\x01\x00\x00\x01\x01"))
    with pytest.raises(UnsupportedExtension):
        stapling.peer_stapled_untrusted(entries, *asked)
    # On an intermediate too (RFC 8446 §4.2: no response without a request).
    with pytest.raises(UnsupportedExtension):
        stapling.peer_stapled_untrusted(_entries(intermediate=entries[0].extensions), *asked)


def test_what_intermediates_carry_is_ignored() -> None:
    other = Extension(OCSP, stapling.encode_certificate_status(b"intermediate's"))
    leaf = Extension(OCSP, stapling.encode_certificate_status(RESPONSE))
    got = stapling.peer_stapled_untrusted(_entries(leaf, intermediate=(other,)), True, False)
    assert got.ocsp_response == RESPONSE
    broken = Extension(OCSP, b"")  # not even parsed on an intermediate
    assert stapling.peer_stapled_untrusted(_entries(intermediate=(broken,)), True, False) == (
        stapling.NOTHING
    )


@pytest.mark.parametrize(
    ("ext_type", "data"),
    [
        (OCSP, b"\x01\x00\x00\x00"),  # empty OCSPResponse
        (OCSP, b"\x02\x00\x00\x01\x01"),  # a status type other than ocsp
        (OCSP, b"\x01\x00\x00\x02\x01"),  # shorter than announced
        (OCSP, b"\x01\x00\x00\x01\x01\x00"),  # trailing byte
        (SCT, b"\x00\x00"),  # empty list
        (SCT, b"\x00\x06\x00\x02\x01\x02\x00\x00"),  # an empty SCT in the list
        (SCT, b"\x00\x03\x00\x01\x01\x00"),  # trailing byte
        (SCT, b""),
    ],
)
def test_a_malformed_staple_is_decode_error(ext_type: int, data: bytes) -> None:
    with pytest.raises(DecodeErrorAlert):
        stapling.peer_stapled_untrusted(_entries(Extension(ext_type, data)), True, True)


def test_every_truncation_of_a_staple_is_decode_error() -> None:
    for ext_type, data in (
        (OCSP, stapling.encode_certificate_status(RESPONSE)),
        (SCT, stapling.encode_timestamps(SCTS)),
    ):
        for cut in range(len(data)):
            with pytest.raises(DecodeErrorAlert):
                stapling.peer_stapled_untrusted(
                    _entries(Extension(ext_type, data[:cut])), True, True
                )


def test_any_extension_on_a_client_certificate_is_unsupported_extension() -> None:
    stapling.check_client_entries_untrusted(_entries())
    with pytest.raises(UnsupportedExtension):
        stapling.check_client_entries_untrusted(
            _entries(Extension(OCSP, stapling.encode_certificate_status(RESPONSE)))
        )


def _hello(*extensions: Extension) -> msgs.ClientHello:
    return msgs.ClientHello(random=bytes(32), cipher_suites=(0x1301,), extensions=extensions)


@pytest.mark.parametrize(
    ("extensions", "asked"),
    [
        ((), (False, False)),
        ((Extension(OCSP, stapling.STATUS_REQUEST_DATA),), (True, False)),
        ((Extension(OCSP, b"\x01\x00\x02\x00\x00\x00\x00"),), (True, False)),  # a responder
        ((Extension(OCSP, b"\x02\x00\x01\x01"),), (False, False)),  # another status type
        ((Extension(SCT, b""),), (False, True)),
    ],
)
def test_what_a_client_hello_asks_for(extensions: tuple[Extension, ...], asked: Any) -> None:
    assert stapling.requested_untrusted(_hello(*extensions)) == asked


@pytest.mark.parametrize(
    "extension",
    [
        Extension(OCSP, b""),
        Extension(OCSP, b"\x01\x00\x00"),
        Extension(OCSP, b"\x01\x00\x00\x00\x00\x00"),
        Extension(SCT, b"\x00"),
    ],
)
def test_a_malformed_request_is_decode_error(extension: Extension) -> None:
    with pytest.raises(DecodeErrorAlert):
        stapling.requested_untrusted(_hello(extension))


def test_the_stapled_body_puts_both_on_the_leaf_only_and_is_made_once() -> None:
    cert = ServerCertificate(
        LEAF.chain_pem,
        LEAF.key_pem,
        ocsp_response=RESPONSE,
        signed_certificate_timestamps=list(SCTS),
    )
    body = stapling.stapled_body(cert, RESPONSE, SCTS)
    assert stapling.stapled_body(cert, RESPONSE, SCTS) is body
    parsed = msgs.pull_message(msgs.HandshakeType.certificate, body)
    assert isinstance(parsed, msgs.Certificate)
    leaf, *rest = parsed.certificate_list
    assert [e.type for e in leaf.extensions] == [OCSP, SCT]
    assert all(not e.extensions for e in rest) and len(rest) == len(LEAF.chain) - 1
    assert stapling.peer_stapled_untrusted(parsed.certificate_list, True, True) == (
        stapling.Stapled(RESPONSE, SCTS)
    )
    # A callback's answer (not the configured response) is not kept.
    stapling.stapled_body(cert, b"other", ())
    assert len(cert.stapled_bodies) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ocsp_response": b""}, ValueError, "1 to"),
        ({"ocsp_response": "text"}, TypeError, "bytes"),
        ({"signed_certificate_timestamps": b"\x00\x01"}, TypeError, "sequence"),
        ({"signed_certificate_timestamps": [b""]}, ValueError, "1 to"),
        ({"signed_certificate_timestamps": ["x"]}, TypeError, "bytes"),
        ({"signed_certificate_timestamps": [b"x" * 40000, b"y" * 40000]}, ValueError, "exceed"),
        ({"ocsp_callback": "not callable"}, TypeError, "callable"),
        ({"ocsp_response": b"x" * 65528}, ValueError, "2\\*\\*16 - 1"),
        (
            {"ocsp_response": b"x" * 40000, "signed_certificate_timestamps": [b"y" * 30000]},
            ValueError,
            "together exceed",
        ),
    ],
)
def test_bad_stapling_configuration_raises_at_once(kwargs: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ServerConfig(certificate_chain=LEAF.chain_pem, private_key=LEAF.key_pem, **kwargs)


def test_stapled_data_without_the_single_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="ServerCertificate"):
        ServerConfig(certificates=[(LEAF.chain_pem, LEAF.key_pem)], ocsp_response=RESPONSE)


def test_the_single_chain_fields_go_to_its_server_certificate() -> None:
    cfg = ServerConfig(
        certificate_chain=LEAF.chain_pem,
        private_key=LEAF.key_pem,
        ocsp_response=RESPONSE,
        signed_certificate_timestamps=SCTS,
    )
    (cert,) = cfg.server_certificates.certificates
    assert cert.ocsp_response == RESPONSE and cert.signed_certificate_timestamps == SCTS


def test_the_first_flight_bound_counts_what_is_stapled() -> None:
    ed = PKI.leaf("ed25519", dns_names=("localhost",), cn="ed")  # signatures of one length
    plain = ServerConfig(certificate_chain=ed.chain_pem, private_key=ed.key_pem)
    stapled = ServerConfig(
        certificate_chain=ed.chain_pem,
        private_key=ed.key_pem,
        ocsp_response=RESPONSE * 100,
        signed_certificate_timestamps=SCTS,
    )
    (cert,) = stapled.server_certificates.certificates
    body = stapling.stapled_body(cert, cert.ocsp_response, cert.signed_certificate_timestamps)
    grown = len(body) - len(cert.body)
    added = FlightBound.of(stapled).certificate - FlightBound.of(plain).certificate
    assert added == grown == stapling.stapled_size(cert) > 500


@given(
    ext_type=st.sampled_from([OCSP, SCT]),
    data=st.binary(max_size=64),
    asked=st.tuples(st.booleans(), st.booleans()),
)
def test_any_bytes_in_a_staple_or_a_request_raise_only_alerts(
    ext_type: int, data: bytes, asked: tuple[bool, bool]
) -> None:
    with contextlib.suppress(Alert):
        stapling.peer_stapled_untrusted(_entries(Extension(ext_type, data)), *asked)
    with contextlib.suppress(Alert):
        stapling.requested_untrusted(_hello(Extension(ext_type, data)))
