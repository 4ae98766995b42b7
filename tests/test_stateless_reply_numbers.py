"""Record sequence numbers around the stateless HelloRetryRequest.

A stateless reply (HRR, alert) carries the record sequence number of the ClientHello record
it answers, and the connection the second ClientHello leads to numbers its epoch-0 records
after it, so that a peer keeping one epoch-0 replay window across the HRR (OpenSSL does)
takes the ServerHello as new.
"""

from __future__ import annotations

from typing import Any

from conn_helpers import split_records
from dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, make_pair, wall_clock

from dtls13.connection import Connection
from dtls13.handshake.flights import handshake_fragment
from dtls13.handshake.gate import HelloGate, Verdict
from dtls13.handshake.messages import HELLO_RETRY_REQUEST_RANDOM
from dtls13.memory import PoolSet

VICTIM = ("10.4.0.1", 5000)


def _take(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(lease.tobytes())
        lease.release()
    return out


def _plaintext(data: bytes) -> list[tuple[int, int, bytes]]:
    """(content type, record sequence number, payload) of a datagram's epoch-0 records."""
    out = []
    for record in split_records(data):
        if record[0] < 0x20 and record[3:5] == b"\x00\x00":
            out.append((record[0], int.from_bytes(record[5:11], "big"), record[13:]))
    return out


def _server_hellos(data: bytes) -> list[tuple[bool, int]]:
    """(is a HelloRetryRequest, record sequence number) of each ServerHello fragment."""
    return [
        (payload[14:46] == HELLO_RETRY_REQUEST_RANDOM, seq)
        for ctype, seq, payload in _plaintext(data)
        if ctype == 22 and payload[:1] == b"\x02"
    ]


def _renumber(data: bytes, seq: int) -> bytes:
    """A datagram of one DTLSPlaintext record, its record sequence number set to `seq`."""
    return data[:5] + seq.to_bytes(6, "big") + data[11:]


def _hello(seq: int = 0, **client: Any) -> bytes:
    """A first ClientHello datagram of our client's, its record numbered `seq`."""
    ccfg, _ = configs(client=client or None)
    conn = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    conn.connect(SERVER_ADDR, 0.0)
    (data,) = _take(conn, 0.0)
    conn.close()
    _take(conn, 0.0)
    return _renumber(data, seq)


# -- the gate's other stateless replies -------------------------------------------------


def test_fragmented_client_hello_is_answered_with_its_last_record_number() -> None:
    """An HRR for a ClientHello that came in fragments carries the highest record number
    among them, and the connection after it numbers its ServerHello above that."""
    _, scfg = configs(server={"require_cookie": True, "cookie_secret": bytes(32)})
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    data = _hello()
    body = data[25:]
    half = len(body) // 2
    records = [
        b"\x16\xfe\xfd\x00\x00" + seq.to_bytes(6, "big") + len(frag).to_bytes(2, "big") + frag
        for seq, frag in (
            (4, handshake_fragment(1, len(body), 0, 0, body[:half])),
            (9, handshake_fragment(1, len(body), 0, half, body[half:])),
        )
    ]
    assert gate.receive_untrusted(records[0], VICTIM, 1.0).verdict is Verdict.DROP
    result = gate.receive_untrusted(records[1], VICTIM, 1.0)
    assert result.verdict is Verdict.REPLY and result.reply is not None
    (hrr,) = result.reply
    assert _server_hellos(hrr.tobytes()) == [(True, 9)]
    hrr.release()
    gate.close()
    assert pools.in_use == 0


def test_alert_for_a_bad_cookie_carries_the_client_hello_record_number() -> None:
    pair = make_pair(server={"require_cookie": True})
    c, s = pair.client, pair.server
    c.connect(SERVER_ADDR, 0.0)
    for d in _take(c, 0.0):
        s.receive_datagram(d, CLIENT_ADDR, 0.0)
    for d in _take(s, 0.0):
        c.receive_datagram(d, SERVER_ADDR, 0.01)
    (second,) = _take(c, 0.01)
    # A gate with another cookie secret cannot have issued this cookie.
    _, other = configs(server={"require_cookie": True})
    gate = HelloGate(other, pair.pools)
    result = gate.receive_untrusted(_renumber(second, 77), CLIENT_ADDR, 0.02)
    assert result.verdict is Verdict.REPLY and result.reply is not None
    (alert,) = result.reply
    assert _plaintext(alert.tobytes()) == [(21, 77, bytes([2, 47]))]
    alert.release()
    gate.close()
    pair.close()
    assert pair.pools.in_use == 0


def test_connection_numbers_its_server_hello_after_the_client_hello_record() -> None:
    """A server that kept nothing after a stateless HRR (message_seq 1) starts its epoch-0
    numbering after the second ClientHello's record, however its connection was made."""
    pair = make_pair(server={"require_cookie": True, "cookie_secret": bytes(32)})
    c = pair.client
    c.connect(SERVER_ADDR, 0.0)
    (first,) = _take(c, 0.0)
    gate = HelloGate(pair.server.config, pair.pools)  # type: ignore[arg-type]
    result = gate.receive_untrusted(_renumber(first, 40), CLIENT_ADDR, 0.0)
    assert result.reply is not None
    (hrr,) = result.reply
    c.receive_datagram(hrr.tobytes(), SERVER_ADDR, 0.01)
    hrr.release()
    (second,) = _take(c, 0.01)
    fresh = Connection(
        pair.server.config, pools=pair.pools, wall_clock=wall_clock, first_message_seq=1
    )
    fresh.receive_datagram(_renumber(second, 41), CLIENT_ADDR, 0.02)
    flight = _take(fresh, 0.02)
    assert [seq for _, seq in _server_hellos(flight[0])] == [42]
    gate.close()
    fresh.close()
    _take(fresh, 0.03)
    pair.close()
    assert pair.pools.in_use == 0
