"""Encrypted Client Hello through the sans-IO Connection: a server that does not know ECH
(or cannot decrypt it) answers ClientHelloOuter; the client authenticates it for the
public name, then ends the handshake with ech_required and reports EchRejected
(RFC 9849 §6.1.6, §6.1.7)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dtls13 import EchRejected
from dtls13.alerts import AlertDescription
from dtls13.config import ClientConfig
from dtls13.errors import error_for
from dtls13.events import EchStatus, HandshakeCompleted
from dtls13.handshake import ech, hpke
from tests.support.dtls_pair import configs, make_pair, pki

# The test server's certificate names "localhost": here, the config's public name.
_PUBLIC = X25519PrivateKey.from_private_bytes(bytes(32)).public_key()
CONFIG_LIST = ech.push_ech_config_list(
    [
        ech.encode_ech_config(
            1,
            hpke.KemId.DHKEM_X25519_HKDF_SHA256,
            _PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw),
            [ech.EchCipherSuite(hpke.KdfId.HKDF_SHA256, hpke.AeadId.AES_128_GCM)],
            b"localhost",
        )
    ]
)


def test_rejected_ech_fails_with_ech_required_and_never_completes() -> None:
    _, server = configs()
    client = ClientConfig(
        server_name="secret.example",
        cafile=pki().root_pem,
        ech_config_list=CONFIG_LIST,
        idle_release_after=None,
        debug=True,
    )
    pair = make_pair(cfgs=(client, server))
    assert not pair.handshake(max_time=30.0)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is AlertDescription.ech_required
    assert not ended.by_peer and ended.ech_rejected and ended.ech_retry_configs is None
    assert not any(isinstance(e, HandshakeCompleted) for e in pair.client_events)
    # The server read our Finished, then our alert.
    got = pair.terminated("server")
    assert got is not None and got.by_peer and got.alert is AlertDescription.ech_required
    assert pair.client.peer_verification is not None
    assert pair.client.peer_verification.ech_name_override == "localhost"
    error = error_for(
        reason=ended.reason,
        alert=ended.alert,
        by_peer=ended.by_peer,
        handshake_complete=False,
        ech_rejected=ended.ech_rejected,
        ech_retry_configs=ended.ech_retry_configs,
    )
    assert isinstance(error, EchRejected) and error.retry_configs is None
    pair.close()


def test_grease_handshake_completes_with_a_server_that_ignores_it() -> None:
    pair = make_pair(client={"ech_grease": True})
    assert pair.handshake()
    completed = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert completed.ech_status is EchStatus.GREASE
    server_done = next(e for e in pair.server_events if isinstance(e, HandshakeCompleted))
    assert server_done.ech_status is EchStatus.NOT_OFFERED
    pair.close()


def test_adapters_raise_ech_rejected_as_their_broken_resource_error() -> None:
    import trio

    from dtls13.trio.errors import TRIO_CLASSES

    error = error_for(
        reason="r",
        alert=AlertDescription.ech_required,
        by_peer=False,
        handshake_complete=False,
        ech_rejected=True,
        ech_retry_configs=CONFIG_LIST,
        classes=TRIO_CLASSES,
    )
    assert isinstance(error, EchRejected) and isinstance(error, trio.BrokenResourceError)
    assert error.retry_configs == CONFIG_LIST
