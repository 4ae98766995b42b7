"""Trust anchor IDs (draft-ietf-tls-trust-anchor-ids): the client names its trust anchors,
the server picks a credential that chains to one and says so."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13 import ServerCertificate
from dtls13._fast import DecodeError
from dtls13.alerts import AlertDescription as A
from dtls13.alerts import DecodeErrorAlert, IllegalParameter
from dtls13.events import HandshakeCompleted
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake import trust_anchors as ta
from tests.support.dtls_pair import SERVER_ADDR, configs, make_pair, pki

LEAF = pki("ec256").leaf("ec256")


def _cred(anchor: bytes | None, must_match: bool = True) -> ServerCertificate:
    return ServerCertificate(
        LEAF.chain_pem, LEAF.key_pem, trust_anchor_id=anchor, must_match_issuer=must_match
    )


def _handshake(
    credentials: list[ServerCertificate], ids: list[bytes] | None
) -> tuple[HandshakeCompleted, HandshakeCompleted]:
    ccfg, base = configs(client={"trust_anchor_ids": ids})
    # Only the credentials given: not the default chain of configs().
    scfg = type(base)(certificates=credentials, debug=True, idle_release_after=None)
    pair = make_pair(0, cfgs=(ccfg, scfg))
    assert pair.handshake(max_time=10)
    pair.drain()
    done = [
        next(e for e in events if isinstance(e, HandshakeCompleted))
        for events in (pair.client_events, pair.server_events)
    ]
    pair.close()
    assert pair.pools.in_use == 0
    return done[0], done[1]


@pytest.mark.parametrize("order", ["match first", "match second"])
def test_the_server_picks_the_credential_whose_trust_anchor_the_client_names(order: str) -> None:
    match, other = _cred(b"\x01\x01\x01"), _cred(b"\x02\x02\x02")
    creds = [match, other] if order == "match first" else [other, match]
    client, server = _handshake(creds, [b"\x01\x01\x01", b"\x09"])
    assert server.credential is match
    assert client.peer_matched_trust_anchor
    assert client.peer_available_trust_anchors == tuple(c.trust_anchor_id for c in creds)


def test_with_no_named_trust_anchor_a_credential_without_the_requirement_serves() -> None:
    gated, plain = _cred(b"\x02\x02\x02"), _cred(None, must_match=False)
    client, server = _handshake([gated, plain], [b"\x01\x01\x01"])
    assert server.credential is plain
    assert not client.peer_matched_trust_anchor
    assert client.peer_available_trust_anchors == (b"\x02\x02\x02",)


def test_a_client_that_names_no_trust_anchors_sees_none_of_this() -> None:
    client, _ = _handshake([_cred(b"\x02", must_match=False)], None)
    assert not client.peer_matched_trust_anchor and client.peer_available_trust_anchors == ()


def test_no_credential_chaining_to_a_named_trust_anchor_is_handshake_failure() -> None:
    ccfg, _ = configs(client={"trust_anchor_ids": [b"\x01"]})
    _, base = configs()
    scfg = type(base)(certificates=[_cred(b"\x02"), _cred(b"\x03")], debug=True)
    pair = make_pair(0, cfgs=(ccfg, scfg))
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.net.run(lambda: pair.terminated("server") is not None, max_time=10)
    ended = pair.terminated("server")
    assert ended is not None and ended.alert is A.handshake_failure
    pair.close()


def _wire(*ids: bytes) -> bytes:
    return ext.encode(ta.push_ids, ids)


def test_the_id_list_codec() -> None:
    assert _wire(b"\x01", b"\x02\x03") == b"\x00\x05\x01\x01\x02\x02\x03"
    assert ext.decode(_wire(b"\x01", b"\x02\x03"), ta.pull_ids) == (b"\x01", b"\x02\x03")
    assert ext.decode(_wire(), ta.pull_ids) == ()
    for bad in (b"\x00\x01\x00", b"\x00\x02\x01\x01\x00", _wire(b"\x01") + b"\x00"):
        with pytest.raises(DecodeError):
            ext.decode(bad, ta.pull_ids)
    with pytest.raises(DecodeError):
        ext.decode(_wire(), ta.pull_available_ids)  # never empty in EncryptedExtensions
    data = _wire(b"\x01\x02")
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            ext.decode(data[:cut], ta.pull_ids)


def _entries(leaf: bytes | None, other: bytes | None = None) -> list[msgs.CertificateEntry]:
    def entry(data: bytes | None) -> msgs.CertificateEntry:
        extensions = () if data is None else (ext.Extension(ta.EXTENSION_TYPE, data),)
        return msgs.CertificateEntry(b"cert", extensions)

    return [entry(leaf), entry(other)]


def test_the_clients_checks_of_what_the_server_says() -> None:
    assert ta.matched_untrusted(_entries(b""))
    assert not ta.matched_untrusted(_entries(None))
    with pytest.raises(DecodeErrorAlert):
        ta.matched_untrusted(_entries(b"\x00"))  # not empty
    with pytest.raises(IllegalParameter):
        ta.matched_untrusted(_entries(None, b""))  # on an intermediate
    ee = msgs.EncryptedExtensions((ext.Extension(ta.EXTENSION_TYPE, _wire(b"\x01") + b"\x00"),))
    with pytest.raises(DecodeErrorAlert):
        ta.available_untrusted(ee)


@pytest.mark.parametrize(
    "value, error",
    [(b"", ValueError), (b"x" * 256, ValueError), ("01", TypeError), (b"ab", TypeError)],
)
def test_trust_anchor_ids_are_checked_when_configured(value: Any, error: type) -> None:
    if value == b"ab":  # one bytes object where a list is wanted
        with pytest.raises(TypeError):
            configs(client={"trust_anchor_ids": value})
        return
    with pytest.raises(error):
        configs(client={"trust_anchor_ids": [value]})
    with pytest.raises(error):
        _cred(value)


def test_a_raw_public_key_has_no_trust_anchor() -> None:
    with pytest.raises(ValueError, match="trust_anchor_id"):
        ServerCertificate(private_key=LEAF.key_pem, raw_public_key=True, trust_anchor_id=b"\x01")
