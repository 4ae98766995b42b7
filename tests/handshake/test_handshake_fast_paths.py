"""The handshake's fast paths give the bytes the generic definitions give and
refuse what they refuse: one-HMAC HKDF-Expand-Label, cached no-PSK secrets, the struct-built
fragment header, the cached signer and Certificate body."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from dtls13._fast import Buffer, EncodeError
from dtls13.alerts import LocalProtocolError
from dtls13.crypto.hkdf import TLS13_PREFIX, derive_secret, hkdf_expand_label, hkdf_label
from dtls13.handshake import messages as msgs
from dtls13.handshake.authentication import certificate_body as _certificate_body
from dtls13.handshake.certificates import (
    certificate_verify_content,
    load_certificate_chain,
    sign_certificate_verify,
)
from dtls13.handshake.constants import SignatureScheme as S
from dtls13.handshake.flights import handshake_fragment
from dtls13.handshake.key_schedule import KeySchedule
from tests.support.dtls_pair import pki
from tests.support.pki import cached_key


def _reference_expand(name: str, prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), name).digest()
        out += block
        counter += 1
    return out[:length]


@pytest.mark.parametrize("name", ["sha256", "sha384"])
@pytest.mark.parametrize("length", [1, 12, 16, 32, 48, 49, 100])
@pytest.mark.parametrize("context", [b"", b"\x01" * 32])
def test_expand_label_matches_the_rfc_5869_definition(
    name: str, length: int, context: bytes
) -> None:
    secret = bytes(range(48))
    for prefix in (b"dtls13", TLS13_PREFIX):
        expected = _reference_expand(
            name, secret, hkdf_label(b"key", context, length, prefix), length
        )
        assert hkdf_expand_label(name, secret, b"key", context, length, prefix) == expected
    transcript = hashlib.new(name, b"messages").digest()
    assert derive_secret(name, secret, b"c hs traffic", transcript) == hkdf_expand_label(
        name, secret, b"c hs traffic", transcript, len(transcript)
    )


def test_expand_label_refuses_what_the_structure_cannot_hold() -> None:
    with pytest.raises(ValueError):
        hkdf_expand_label("sha256", bytes(32), b"x" * 250, b"", 16)
    with pytest.raises(ValueError):
        derive_secret("sha256", bytes(32), b"", bytes(32), b"")  # label under 7 bytes


@pytest.mark.parametrize("name", ["sha256", "sha384"])
def test_cached_no_psk_secrets_equal_fresh_ones(name: str) -> None:
    size = hashlib.new(name).digest_size
    zeros = bytes(size)
    early = hmac.new(zeros, zeros, name).digest()
    derived = hkdf_expand_label(
        name, early, b"derived", hashlib.new(name).digest(), size, TLS13_PREFIX
    )
    for _ in range(2):  # the first builds the cache, the second uses it
        ks = KeySchedule(name, prefix=TLS13_PREFIX)
        assert ks.early_secret == early
        assert ks.handshake(b"\x07" * 32) == hmac.new(derived, b"\x07" * 32, name).digest()
    # A PSK never takes the no-PSK constants.
    assert KeySchedule(name, psk=b"\x01" * size).early_secret != early


def test_fragment_header_matches_the_codec_and_refuses_bad_fields() -> None:
    body = bytes(range(40))
    for msg_type, length, seq, offset in ((1, 300, 0, 0), (11, 70000, 513, 65793), (20, 40, 7, 0)):
        buf = Buffer(capacity=64)
        header = msgs.HandshakeHeader(msg_type, length, seq, offset, len(body))
        msgs.push_handshake_header(buf, header)
        assert handshake_fragment(msg_type, length, seq, offset, body) == buf.data + body
        assert handshake_fragment(msg_type, length, seq, offset, memoryview(body)) == (
            buf.data + body
        )
    for bad in ((256, 100, 0, 0), (1, 100, 1 << 16, 0), (1, 1 << 24, 0, 0), (1, 50, 0, 20)):
        with pytest.raises(EncodeError):
            handshake_fragment(*bad, body)


def test_cached_signer_signs_verifiably_and_still_refuses_a_wrong_scheme() -> None:
    key = cached_key("ec256")
    transcript = bytes(32)
    for is_server in (True, False, True):
        signature = sign_certificate_verify(key, S.ecdsa_secp256r1_sha256, transcript, is_server)
        content = certificate_verify_content(transcript, is_server)
        key.public_key().verify(signature, content, ec.ECDSA(hashes.SHA256()))
    for _ in range(2):  # a refusal is never cached as a signer
        with pytest.raises(LocalProtocolError):
            sign_certificate_verify(key, S.ecdsa_secp384r1_sha384, transcript, True)


def test_cached_certificate_body_is_the_encoded_message() -> None:
    leaf = pki("ec256").leaf("ec256")
    chain = tuple(load_certificate_chain(leaf.chain_pem))
    entries = tuple(msgs.CertificateEntry(c.public_bytes(Encoding.DER)) for c in chain)
    _, expected = msgs.push_message(msgs.Certificate(b"", entries))
    assert _certificate_body(chain) == expected
    assert _certificate_body(chain) is _certificate_body(chain)
    other = chain[:1]
    _, expected_other = msgs.push_message(msgs.Certificate(b"", entries[:1]))
    assert _certificate_body(other) == expected_other


def _first_flight() -> tuple[bytes, bytes]:
    """A client's first datagram and the body of its ClientHello."""
    from dtls13.connection import Connection
    from dtls13.memory import PoolSet
    from tests.support.dtls_pair import SERVER_ADDR, configs, wall_clock

    ccfg, _ = configs()
    client = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    client.connect(SERVER_ADDR, 0.0)
    ((lease, _),) = client.datagrams_to_send(0.0)
    data = lease.tobytes()
    lease.release()
    client.close()
    for lease, _ in client.datagrams_to_send(0.0):
        lease.release()
    return data, data[13 + 12 :]  # after the record and handshake headers


def test_a_client_hello_decoded_by_the_gate_is_used_only_for_the_same_bytes() -> None:
    import dataclasses

    from dtls13.connection import Connection
    from dtls13.memory import PoolSet
    from tests.support.dtls_pair import configs, wall_clock

    _, scfg = configs()
    data, body = _first_flight()
    ch = msgs.pull_message(1, body)
    assert isinstance(ch, msgs.ClientHello)
    marked = dataclasses.replace(ch, random=b"\x11" * 32)
    for hint_body, used in ((body, True), (body[:-1] + b"\x00", False), (b"", False)):
        pools = PoolSet()
        server = Connection(scfg, pools=pools, wall_clock=wall_clock)
        server.expect_client_hello(hint_body, marked)
        server.receive_datagram(data, ("10.0.0.1", 1), 0.0)
        assert server.handshake._work.client_random == (marked.random if used else ch.random)
        server.close()
        for lease, _ in server.datagrams_to_send(0.0):
            lease.release()
        assert pools.in_use == 0


def test_the_endpoint_hands_the_gates_client_hello_to_the_new_connection() -> None:
    from dtls13.endpoint import ServerEndpoint
    from dtls13.memory import PoolSet
    from tests.support.dtls_pair import configs, wall_clock

    _, scfg = configs()
    data, body = _first_flight()
    pools = PoolSet()
    ep = ServerEndpoint(scfg, pools=pools, cookie_policy="never", wall_clock=wall_clock)
    decoded: list[bytes] = []
    original = msgs.pull_message

    def counting(msg_type: int, message_body: Any) -> Any:
        decoded.append(bytes(message_body))
        return original(msg_type, message_body)

    msgs.pull_message = counting  # type: ignore[assignment]
    try:
        conn = ep.receive_datagram(data, ("10.0.0.1", 1), 0.0)
    finally:
        msgs.pull_message = original  # type: ignore[assignment]
    assert conn is not None and not conn.closed
    assert decoded == [body]  # the gate decoded it; the connection did not again
    ep.close()
    for lease, _ in ep.datagrams_to_send(0.0):
        lease.release()
    ep.release()
    assert pools.in_use == 0


def test_an_unhashable_key_type_signs_without_the_cache() -> None:
    key = cached_key("ec256")

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __getattr__(self, name: str) -> Any:
            return getattr(key, name)

    wrapped: Any = Unhashable()
    ec.EllipticCurvePrivateKey.register(Unhashable)  # a wrapper such as an HSM key's
    signature = sign_certificate_verify(wrapped, S.ecdsa_secp256r1_sha256, bytes(32), True)
    content = certificate_verify_content(bytes(32), True)
    key.public_key().verify(signature, content, ec.ECDSA(hashes.SHA256()))


def test_the_servers_ack_of_the_final_flight_and_its_ticket_share_one_datagram() -> None:
    from dtls13.connection import Connection
    from dtls13.events import NewSessionTicketReceived
    from dtls13.memory import PoolSet
    from tests.support.conn_helpers import split_records
    from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock

    for tickets in (0, 1, 2):
        ccfg, scfg = configs(server={"session_tickets": tickets})
        pools = PoolSet()
        client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        server = Connection(scfg, pools=pools, wall_clock=wall_clock)

        def deliver(src: Connection, dst: Connection, addr: Any) -> list[bytes]:
            out = []
            for lease, _ in src.datagrams_to_send(0.0):
                out.append(lease.tobytes())
                lease.release()
            for data in out:
                dst.receive_datagram(data, addr, 0.0)
            return out

        client.connect(SERVER_ADDR, 0.0)
        deliver(client, server, CLIENT_ADDR)  # ClientHello
        deliver(server, client, SERVER_ADDR)  # the server's flight
        deliver(client, server, CLIENT_ADDR)  # Finished
        assert server.handshake_complete
        after = deliver(server, client, SERVER_ADDR)
        assert len(after) == 1  # the ACK, then the tickets, in one datagram
        assert len(split_records(after[0])) == 1 + min(tickets, 1)  # the tickets share one
        assert server.stats["acks_sent"] == 1
        got = []
        while (ev := client.next_event()) is not None:
            got.append(ev)
        assert sum(isinstance(e, NewSessionTicketReceived) for e in got) == tickets
        # The client's flight is acknowledged: it stops retransmitting its Finished.
        assert client._flight is None or client._flight.acknowledged
        if tickets:
            ack_at = client.get_timer()  # the tickets are ACKed after rto/4 (RFC 9147 §7.1)
            assert ack_at is not None
            client.handle_timer(ack_at)
        deliver(client, server, CLIENT_ADDR)  # the client's ACK of the tickets
        assert server._flight is None or server._flight.acknowledged or tickets == 0
        for conn in (client, server):
            conn.close()
            for lease, _ in conn.datagrams_to_send(0.0):
                lease.release()
        assert pools.in_use == 0


def test_hkdf_expand_refuses_lengths_out_of_range() -> None:
    from dtls13.crypto.hkdf import hkdf_expand

    assert hkdf_expand("sha256", bytes(32), b"info", 0) == b""
    assert len(hkdf_expand("sha256", bytes(32), b"info", 255 * 32)) == 255 * 32
    for bad in (-1, 255 * 32 + 1):
        with pytest.raises(ValueError):
            hkdf_expand("sha256", bytes(32), b"info", bad)


def test_the_servers_flight_shares_records_and_one_ack_covers_them() -> None:
    """EncryptedExtensions..Finished share one record per datagram (ServerHello, epoch 0,
    has its own); the client's ACK of those records acknowledges all four messages."""
    from dtls13.connection import Connection
    from dtls13.handshake.flights import Flight
    from dtls13.memory import PoolSet
    from tests.support.conn_helpers import split_records
    from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock

    for coalesce in (True, False):
        ccfg, scfg = configs(server={"session_tickets": 0})
        pools = PoolSet()
        client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
        server = Connection(scfg, pools=pools, wall_clock=wall_clock)
        server.coalesce_handshake_records = coalesce
        client.connect(SERVER_ADDR, 0.0)
        for lease, _ in client.datagrams_to_send(0.0):
            server.receive_datagram(lease.tobytes(), CLIENT_ADDR, 0.0)
            lease.release()
        flight = server._flight
        assert isinstance(flight, Flight) and len(flight.messages) == 5
        out = []
        for lease, _ in server.datagrams_to_send(0.0):
            out.append(lease.tobytes())
            lease.release()
        protected = [sum(r[0] & 0xE0 == 0x20 for r in split_records(d)) for d in out]
        if coalesce:
            assert all(n == 1 for n in protected)
        else:
            assert sum(protected) >= 4 and max(protected) > 1
        for data in out:
            client.receive_datagram(data, SERVER_ADDR, 0.0)
        for lease, _ in client.datagrams_to_send(0.0):
            server.receive_datagram(lease.tobytes(), CLIENT_ADDR, 0.0)
            lease.release()
        assert server.handshake_complete and client.handshake_complete
        for conn in (client, server):
            conn.close()
            for lease, _ in conn.datagrams_to_send(0.0):
                lease.release()
        assert pools.in_use == 0


def test_a_flight_split_by_the_mtu_keeps_every_byte_once_per_transmission() -> None:
    """With coalescing, fragments still tile each message exactly, whatever the MTU."""
    from dtls13.handshake.flights import HANDSHAKE_HEADER, Flight
    from dtls13.memory import PoolSet
    from dtls13.record import RecordLayer

    bodies = [bytes([i]) * n for i, n in enumerate((90, 700, 80, 32, 5, 0, 1500))]
    for mtu in (200, 256, 400, 700, 1200):
        pools = PoolSet()
        layer = RecordLayer(pools, None)
        flight = Flight(pools, None)
        for seq, body in enumerate(bodies):
            flight.add(0, 20, seq, body)
        with layer.datagram_writer(mtu) as w:
            written = flight.emit(w)
            datagrams = w.finish()
        got: dict[int, bytearray] = {seq: bytearray(len(b)) for seq, b in enumerate(bodies)}
        seen = 0
        for lease in datagrams:
            data = lease.tobytes()
            assert len(data) <= mtu
            lease.release()
            i = 0
            while i < len(data):
                end = i + 13 + int.from_bytes(data[i + 11 : i + 13], "big")
                j = i + 13
                seen += 1
                while j < end:
                    seq = int.from_bytes(data[j + 4 : j + 6], "big")
                    off = int.from_bytes(data[j + 6 : j + 9], "big")
                    n = int.from_bytes(data[j + 9 : j + 12], "big")
                    got[seq][off : off + n] = data[j + HANDSHAKE_HEADER : j + HANDSHAKE_HEADER + n]
                    j += HANDSHAKE_HEADER + n
                i = end
        assert seen == written
        assert [bytes(got[s]) for s in range(len(bodies))] == bodies
        assert written < sum(1 for b in bodies) + sum(len(b) for b in bodies) // (mtu - 40)
        flight.release()
        layer.close()
        assert pools.in_use == 0
