"""A configuration field of the wrong type raises TypeError naming the field when the
config is made: never a failure mid-handshake, never a silent misreading (a string taken
as a sequence of one-letter names, a truthy string taken for True)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pytest

from dtls13.config import ClientConfig, ServerConfig
from dtls13.crypto.suites import CipherSuite
from dtls13.endpoint import DoSProtectionConfig
from tests.support.dtls_pair import make_pair, pki

# Values of the wrong type for each simple annotation a config field has.
WRONG: dict[str, tuple[Any, ...]] = {
    "bool": ("yes", 1, None),
    "int": ("1400", 1400.5, True, None),
    "float": ("1", math.nan, True, None),
    "int | None": ("1", 1.5, True),
    "float | None": ("1", math.nan, False),
    "bytes | None": ("secret", bytearray(32), 5),
    "str | None": (5, b"localhost"),
    "bytes": ("mki", 5),
    "Sequence[str]": ("h2", [b"h2"], [5]),
    "Sequence[bytes]": (b"one", ["text"]),
    "Sequence[bytes] | None": (b"one", ["text"]),
}


def _client(**kw: Any) -> ClientConfig:
    return ClientConfig(verify=False, **kw)


def _server(**kw: Any) -> ServerConfig:
    leaf = pki().leaf()
    return ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, **kw)


def _cases(cls: type) -> list[Any]:
    cases = []
    for f in dataclasses.fields(cls):
        if f.init and f.type in WRONG:
            for value in WRONG[f.type]:
                cases.append(pytest.param(f.name, value, id=f"{f.name}={value!r}"))
    return cases


@pytest.mark.parametrize(("name", "value"), _cases(ClientConfig))
def test_client_field_of_the_wrong_type_raises_type_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=name):
        _client(**{name: value})


@pytest.mark.parametrize(("name", "value"), _cases(ServerConfig))
def test_server_field_of_the_wrong_type_raises_type_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=name):
        _server(**{name: value})


def test_every_simple_field_is_covered() -> None:
    # A new field with one of these annotations is checked by the two tests above; this
    # holds them to covering the fields that exist today.
    names = {c.values[0] for c in _cases(ClientConfig) + _cases(ServerConfig)}
    for expected in ("verify", "mtu", "handshake_timeout", "server_name", "alpn_protocols"):
        assert expected in names
    for expected in ("require_cookie", "cookie_secret", "session_tickets", "max_early_data"):
        assert expected in names


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cipher_suites": "TLS_AES_128_GCM_SHA256"}, "cipher_suites"),
        ({"groups": "x25519"}, "groups"),
        ({"key_share_groups": "x25519"}, "key_share_groups"),
        ({"psk": ("identity", "k" * 16)}, "psk"),
        ({"psk": [b"identity", b"k" * 16]}, "psk"),
        ({"session": "a ticket"}, "session"),
        ({"keylog": 5}, "keylog"),
        ({"random_bytes": b"not callable"}, "random_bytes"),
        ({"message_callback": "print"}, "message_callback"),
        ({"connection_id": "8"}, "connection_id"),
    ],
)
def test_client_fields_of_other_kinds_are_checked(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        _client(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"external_psks": {"identity": b"k" * 16}}, "external_psks"),
        ({"external_psks": {b"identity": "k" * 16}}, "external_psks"),
        ({"external_psks": [(b"identity", b"k" * 16)]}, "external_psks"),
        ({"client_auth": True}, "client_auth"),
        ({"signature_schemes": "ecdsa_secp256r1_sha256"}, "signature_schemes"),
    ],
)
def test_server_fields_of_other_kinds_are_checked(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        _server(**kwargs)


def test_values_of_the_right_kinds_are_accepted(tmp_path: Path) -> None:
    cfg = _client(
        alpn_protocols=("h2", "http/1.1"),  # any sequence of str
        cipher_suites=(CipherSuite.TLS_AES_128_GCM_SHA256, 0x1302),
        retransmit_initial=1,  # an int where a float is expected
        handshake_timeout=math.inf,  # no deadline
        idle_release_after=None,
        keylog=tmp_path / "keys.log",  # a PathLike
        connection_id=4,
        psk=(b"identity", bytes(16)),
        require_psk=False,
    )
    assert cfg.alpn_protocols == ("h2", "http/1.1")
    assert _client(keylog=lambda line: None, connection_id=True).cid_length == 8
    assert _client(keylog=os.fspath(tmp_path / "keys.log")).keylog_callback() is not None
    server = _server(
        cookie_lifetime=30,
        cookie_rotation=None,
        external_psks={b"identity": bytes(16)},
        max_early_data=0,
    )
    assert server.external_psks == {b"identity": bytes(16)}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_half_open": "10"}, "max_half_open"),
        ({"max_half_open": 10.5}, "max_half_open"),
        ({"max_concurrent_connections": True}, "max_concurrent_connections"),
        ({"datagrams_per_second": math.nan}, "datagrams_per_second"),
        ({"amplification_limit": "3"}, "amplification_limit"),
        ({"unanswered_handshake_timeout": math.nan}, "unanswered_handshake_timeout"),
    ],
)
def test_dos_limits_of_the_wrong_type_raise_type_error_naming_them(
    kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(TypeError, match=name):
        DoSProtectionConfig(**kwargs)


def test_every_numeric_dos_limit_is_checked() -> None:
    numeric = {"int", "float", "float | None"}
    for f in dataclasses.fields(DoSProtectionConfig):
        assert f.type in numeric, f"{f.name}: {f.type} (add a check to arguments.py)"
        with pytest.raises(TypeError, match=f.name):
            DoSProtectionConfig(**{f.name: "1"})
    assert DoSProtectionConfig(datagram_burst=5, amplification_limit=None).datagram_burst == 5


def test_a_non_ascii_server_name_is_sent_and_verified_as_its_a_label() -> None:
    # As the ssl module does with server_hostname: the ClientHello's server_name and the
    # certificate check both use the IDNA A-label (RFC 6066 §3: ASCII host names).
    p = pki()
    leaf = p.leaf(dns_names=("xn--bcher-kva.example",), slot=7)
    ccfg = ClientConfig(server_name="Bücher.example", cafile=p.root_pem, debug=True)
    assert ccfg.server_name == "xn--bcher-kva.example"
    scfg = ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, debug=True)
    pair = make_pair(3, cfgs=(ccfg, scfg))
    assert pair.handshake()
    assert pair.server._hs.server_name == "xn--bcher-kva.example"
    pair.close()


@pytest.mark.parametrize("name", ["", "a" * 64 + ".example", "ü" * 70])
def test_a_server_name_idna_cannot_encode_raises_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="server_name"):
        _client(server_name=name)


def test_ip_literal_and_ascii_server_names_are_kept_as_given() -> None:
    assert _client(server_name="192.0.2.1").server_name == "192.0.2.1"
    assert _client(server_name="::1").server_name == "::1"
    assert _client(server_name="Example.COM").server_name == "Example.COM"
