"""Records out: application data (``send``) and 0-RTT data (``send_early_data``), the
outbox, ``datagrams_to_send`` under the amplification limit (RFC 9147 §5.1), and the MTU
with the peer's record_size_limit (RFC 8449).

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._fast import Lease
from .alerts import LocalProtocolError
from .arguments import check_now
from .handshake.state import ClientState
from .record import ContentType

if TYPE_CHECKING:
    from .connection import Address, Connection

MIN_MTU = 256  # the smallest set_ciphertext_mtu() takes


def datagrams_to_send(self: Connection, now: float) -> list[tuple[Lease, Address]]:
    """Datagrams to send now. Send ``len(lease)`` bytes of each, then release it."""
    if type(now) is not float or now != now:
        check_now(now)
    if self._ack_at is not None and now >= self._ack_at:
        self._guard(now, lambda: self._send_ack(now))
    out = self._outbox
    if isinstance(out, tuple) or not out:
        return []
    self._outbox = ()
    if self._amplification is not None:
        out = self._within_amplification_limit(out)
    if self._path_check is not None:
        out = self._within_check_limit(self._path_check, out)
    self.stats["datagrams_out"] += len(out)
    return out


def within_amplification_limit(
    self: Connection, out: list[tuple[Lease, Address]]
) -> list[tuple[Lease, Address]]:
    """RFC 9147 §5.1: "A server SHOULD limit the amount of data it sends toward a client
    address to three times the amount of data sent by the client before it verifies
    that the client is able to receive data at that address." All of this output or
    none: a flight cut short would leave the client holding part of it with nothing
    to send, while one held back whole makes it repeat its ClientHello, which pays for
    the next try."""
    if self.address_validated:
        self._amplification = None
        return out
    amplification = self._amplification
    assert amplification is not None
    limit, received, sent = amplification
    size = sum(len(lease) for lease, _ in out)
    if sent + size > limit * received:
        for lease, _ in out:
            lease.release()
        self.count("amplification_limited", len(out))
        # Nothing left: the peer's next repeat, which pays for the flight, is no copy
        # crossing it and gets it at once (on_peer_repeat), and the timeout that made
        # this retransmission says nothing about the path's MTU (handle_timer).
        self._retransmitted_at = None
        return []
    amplification[2] = sent + size
    return out


def send(self: Connection, data: bytes | bytearray | memoryview) -> None:
    """Send one application data record."""
    self._activity()
    if not self._hs.connected:
        raise LocalProtocolError(f"cannot send application data in state {self._hs.state.value}")
    records = self._records
    if self._peer_record_limit is not None:
        limit = self._max_payload()
        if limit is not None and len(data) > limit:
            raise ValueError(
                f"{len(data)} bytes exceed the peer's record_size_limit "
                f"(at most {limit} bytes of application data per record)"
            )
    sealed = records.seal_app_datagram(data, self.mtu)
    if isinstance(sealed, int):
        raise ValueError(
            f"{len(data)} bytes do not fit one record at MTU {self.mtu} (at most {sealed})"
        )
    if self._path_check is None or not self._hold(sealed):
        outbox = self._outbox
        if isinstance(outbox, tuple):
            outbox = self._outbox = []
        outbox.append((sealed, self.peer_address))
    self.stats["app_bytes_out"] += len(data)
    if (
        records.key_update_due
        and not self._key_update_pending
        and self._key_update_refusal() is None
    ):
        self.key_update(request_peer=False)


def early_data_possible(self: Connection) -> bool:
    """Whether ``send_early_data`` may be called now (0-RTT on a resumed session)."""
    hs = self._hs
    return hs.early_offered and hs.state is ClientState.WAIT_SERVER_HELLO


def send_early_data(self: Connection, data: bytes | bytearray | memoryview) -> None:
    """Send application data in 0-RTT (epoch 1) before the handshake completes.

    Early data can be replayed by an attacker (RFC 8446 §8): send only what is safe to
    receive twice. ``HandshakeCompleted.early_data_accepted`` says whether the server
    took it; if not, send it again with ``send()``.
    """
    self._activity()
    if not self.early_data_possible:
        raise LocalProtocolError("no 0-RTT now: needs a resumed session allowing early data")
    if len(data) > self._hs.early_budget:
        raise ValueError(f"early data over the ticket's limit ({self._hs.early_budget} B left)")
    with self._records.datagram_writer(self.mtu) as w:
        if len(data) > w.space(1):
            raise ValueError(f"{len(data)} bytes do not fit one record at MTU {self.mtu}")
        w.add(1, ContentType.application_data, data)
        self._queue(w.finish())
    self._hs.early_budget -= len(data)
    self.stats["early_data_bytes_out"] += len(data)


def get_cleartext_mtu(self: Connection) -> int:
    """The largest application data record that fits one datagram now (once closed: as
    it was when the connection ended)."""
    if self._hs.closed:
        if self._closed_cleartext_mtu is None:
            raise LocalProtocolError("the connection ended before its handshake completed")
        return self._closed_cleartext_mtu
    epoch = self._records.write_epoch
    with self._records.datagram_writer(self.mtu) as w:
        space = w.space(epoch)
    limit = self._max_payload()
    return max(0, space if limit is None else min(space, limit))


def set_ciphertext_mtu(self: Connection, mtu: int) -> None:
    if not isinstance(mtu, int) or isinstance(mtu, bool):
        raise TypeError(f"the MTU must be an int, not {mtu!r}")
    if not MIN_MTU <= mtu <= 65535:
        raise ValueError(f"MTU must be between {MIN_MTU} and 65535")
    self.mtu = mtu
    # The application's knowledge of the path replaces the handshake's back-off guess.
    self._forget_flight_mtu()


def queue(self: Connection, datagrams: list[Lease]) -> None:
    if not datagrams:
        return
    outbox = self._outbox
    if isinstance(outbox, tuple):
        outbox = self._outbox = []
    addr = self.peer_address
    outbox.extend((d, addr) for d in datagrams)


def max_payload(self: Connection) -> int | None:
    """Most content bytes per protected record under the peer's record_size_limit, which
    counts the inner content type and padding (RFC 8449 §4)."""
    limit = self._peer_record_limit
    if limit is None:
        return None
    pad = self.config.record_padding
    return max(0, (limit // pad * pad if pad > 1 else limit) - 1)
