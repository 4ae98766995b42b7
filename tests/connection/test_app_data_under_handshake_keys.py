"""Application data protected with the handshake keys (epoch 2) authenticated, so the peer
itself sent it, and no application data is ever sent under those keys (RFC 8446 §7.1,
RFC 9147 §6.1): unexpected_message, as in TLS, not a quiet drop."""

from __future__ import annotations

import pytest

from dtls13.alerts import AlertDescription
from dtls13.connection import Connection
from dtls13.events import ConnectionTerminated
from dtls13.memory import PoolSet
from dtls13.record import ContentType
from tests.support.conn_helpers import protected_datagram
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, configs, wall_clock


def _output(conn: Connection, now: float) -> list[bytes]:
    out = []
    for lease, _ in conn.datagrams_to_send(now):
        out.append(bytes(lease))
        lease.release()
    return out


@pytest.mark.parametrize("payload", [b"TEST MESSAGE", b""])
def test_application_data_in_epoch_2_is_unexpected_message(payload: bytes) -> None:
    ccfg, scfg = configs(server={"session_tickets": 0})
    pools = PoolSet()
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    now = 1.0
    client.connect(SERVER_ADDR, now)
    for _ in range(10):
        for data in _output(client, now):
            server.receive_datagram(data, CLIENT_ADDR, now)
        for data in _output(server, now):
            client.receive_datagram(data, SERVER_ADDR, now)
        if client.handshake_complete:
            break
    assert client.handshake_complete
    # The client's Finished waits: it writes in epoch 2, the server reads it.
    server.receive_datagram(
        protected_datagram(client, 2, payload, ContentType.application_data), CLIENT_ADDR, now
    )
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    ended = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert ended and ended[0].alert is AlertDescription.unexpected_message and not ended[0].by_peer
    assert server.closed
    for conn in (client, server):
        conn.close()
        _output(conn, now)
