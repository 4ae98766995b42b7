"""Configuration mistakes raise at once with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtls13.config import ClientConfig, ServerConfig
from dtls13.crypto.suites import CipherSuite
from dtls13.handshake.constants import NamedGroup
from tests.support.dtls_pair import pki


def _server(**kw: object) -> ServerConfig:
    leaf = pki().leaf()
    return ServerConfig(certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, **kw)  # type: ignore[arg-type]


def test_names_numbers_and_members_are_accepted() -> None:
    cfg = ClientConfig(
        verify=False,
        cipher_suites=["TLS_AES_128_GCM_SHA256", 0x1303, CipherSuite.TLS_AES_256_GCM_SHA384],
        groups=["x25519", "X25519MLKEM768"],
        key_share_groups=["x25519"],
    )
    assert cfg.suites == (0x1301, 0x1303, 0x1302)
    assert cfg.group_order == (NamedGroup.x25519, NamedGroup.X25519MLKEM768)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cipher_suites": ["TLS_RSA_WITH_RC4"]}, "unknown cipher suite 'TLS_RSA_WITH_RC4'"),
        ({"cipher_suites": []}, "at least one cipher suite"),
        ({"groups": ["x25519", "x25519"]}, "duplicate group"),
        ({"groups": ["secp256r1"], "key_share_groups": ["x25519"]}, "key share groups"),
        ({"mtu": 100}, "mtu must be between"),
        ({"retransmit_initial": 5, "retransmit_max": 1}, "retransmit_initial"),
        ({"alpn_protocols": [""]}, "ALPN protocol"),
        ({"max_handshake_message": 10}, "max_handshake_message"),
    ],
)
def test_bad_client_options_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientConfig(verify=False, **kwargs)  # type: ignore[arg-type]


def test_verifying_client_needs_a_server_name() -> None:
    with pytest.raises(ValueError, match="server_name is required"):
        ClientConfig(cafile=pki().root_pem)


def test_server_needs_certificate_and_key() -> None:
    with pytest.raises(ValueError, match="a server needs certificate_chain"):
        ServerConfig()
    leaf = pki().leaf()
    with pytest.raises(ValueError, match="go together"):
        ServerConfig(certificate_chain=leaf.chain_pem)


def test_missing_certificate_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError, match=r"nope\.pem"):
        ServerConfig(certificate_chain=str(missing), private_key=str(missing))


def test_key_that_does_not_match_the_certificate_is_refused() -> None:
    leaf = pki().leaf()
    other = pki().leaf(slot=5)
    with pytest.raises(ValueError, match="match"):
        ServerConfig(certificate_chain=leaf.chain_pem, private_key=other.key_pem)


def test_bad_client_auth_value() -> None:
    with pytest.raises(ValueError, match="client_auth"):
        _server(client_auth="sometimes")


def test_short_cookie_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="cookie secret"):
        _server(cookie_secret=b"short")
