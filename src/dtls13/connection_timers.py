"""The connection's one timer (``get_timer``, ``handle_timer``): retransmission with its
back-off and path MTU reduction (RFC 9147 §5.8, §4.4), the delayed ACK (§7.1), the
handshake deadline, the unanswered-handshake bound, and the idle release of the ciphers;
``_activity`` re-arms what input or output moves.

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .arguments import check_now
from .connection_flights import MAX_UNACKED_RETRANSMISSIONS
from .handshake.constants import KeyUpdateRequest

if TYPE_CHECKING:
    from .connection import Connection


def get_timer(self: Connection) -> float | None:
    """When ``handle_timer`` should be called next, or None."""
    hs = self._hs
    if hs.closed:
        return None
    t = self._retransmit_at
    ack = self._ack_at
    if ack is not None and (t is None or ack < t):
        t = ack
    if not hs.connected:
        deadline = self._handshake_deadline
        if deadline is not None and (t is None or deadline < t):
            t = deadline
        unanswered = self._unanswered_at
        if unanswered is not None and (t is None or unanswered < t):
            t = unanswered
    idle = self._idle_check_at
    if idle is not None and (t is None or idle < t):
        t = idle
    check = self._path_check
    if check is not None and check.held:
        held = check.hold_until  # set before anything is held
        if held is not None and (t is None or held < t):
            t = held
    return t


def handle_timer(self: Connection, now: float) -> None:
    """Retransmit, send a delayed ACK, give up the handshake or let an idle
    connection's ciphers go, as the timer says."""
    check_now(now)
    if self._hs.closed:
        self._activity()
        return
    self._now = now
    self._activity()
    if self._idle_check_at is not None and now >= self._idle_check_at:
        self._idle_check(now)
    if (
        not self._hs.connected
        and self._handshake_deadline is not None
        and now >= self._handshake_deadline
    ):
        self._terminate(
            None,
            f"handshake timed out after {self.config.handshake_timeout:g} s",
            by_peer=False,
            now=now,
            timed_out=True,
        )
        return
    if not self._hs.connected and self._unanswered_at is not None and now >= self._unanswered_at:
        self.count("handshake_unanswered")
        self._terminate(None, "the peer never answered our flight", by_peer=False, now=now)
        return
    check = self._path_check
    if (
        check is not None
        and check.held
        and check.hold_until is not None
        and now >= check.hold_until
    ):
        self._release_held(check)
    if self._ack_at is not None and now >= self._ack_at:
        self._guard(now, lambda: self._send_ack(now))
    if self._retransmit_at is not None and now >= self._retransmit_at:
        limit = self.config.max_retransmissions
        if limit is not None and self._timeouts >= limit:
            # As BoringSSL and OpenSSL give up after 12: the peer is gone, or the
            # path no longer carries our flight.
            self._terminate(
                None,
                f"no answer to our flight after {limit} retransmissions",
                by_peer=False,
                now=now,
                timed_out=True,
            )
            return
        if limit is None and self._hs.connected and self._timeouts >= MAX_UNACKED_RETRANSMISSIONS:
            # Stop: the flight stays, so a repeat of the peer's flight (§5.8.1 case 3)
            # or a new post-handshake message sends it again, with a fresh count.
            self._retransmit_at = None
            self._timeouts = 0
            self.count("unacked_flights_abandoned")
            deferred, self._key_update_deferred = self._key_update_deferred, None
            if deferred is not None:
                # A KeyUpdate waiting for this flight's ACK joins it instead.
                request: KeyUpdateRequest = deferred
                self._guard(now, lambda: self._send_key_update(request))
            return
        self._timeouts += 1
        self._rto = min(self._rto * 2, self.config.retransmit_max)
        # RFC 9147 §4.4: after repeated loss, assume a smaller path MTU; after the
        # handshake only for a flight a smaller MTU would cut (a ticket or KeyUpdate of
        # a few hundred bytes losing its ACKs says nothing about the path's MTU), and
        # only if what we last sent left (None: held back under the amplification limit,
        # so nothing was lost). Flights only: the application's records keep its MTU
        # (§4.4: "DTLS's philosophy is to leave PMTU discovery to the application"; lost
        # flights may as well mean congestion, and shrinking its records made its next
        # send() fail).
        current = self.flight_mtu
        if self._timeouts >= 2 and current > 576 and self._retransmitted_at is not None:
            smaller = max(576, current * 3 // 4)
            flight = self._flight
            if not self._hs.connected or (
                flight is not None
                and flight.unacked_bytes()
                + self._records.record_overhead(self._records.write_epoch)
                > smaller
            ):
                self._flight_mtu = smaller
                self.count("mtu_backoffs")
        self._guard(now, lambda: self._retransmit(now))


def arm_unanswered(self: Connection, now: float) -> None:
    if self._unanswered_timeout is not None:
        self._unanswered_at = now + self._unanswered_timeout


def activity(self: Connection) -> None:
    if self._idle_check_at is None and self._hs.connected:
        self._arm_idle_check(self._now)
    if self.on_activity is not None:
        self.on_activity(self)


def arm_idle_check(self: Connection, now: float) -> None:
    after = self.config.idle_release_after
    if after is not None:
        self._idle_check_at = now + after
        self._idle_mark = self._records.activity_mark


def idle_check(self: Connection, now: float) -> None:
    """Let the ciphers' OpenSSL objects go if no record went either way since the last
    look, `idle_release_after` seconds ago (so idle between 1x and 2x that long); else
    look again then. One look per period: an idle connection costs no work per tick,
    and once released none at all until its next record."""
    mark = self._records.activity_mark
    if mark != self._idle_mark:
        self._arm_idle_check(now)
        return
    self._idle_check_at = None
    if self._records.release_ciphers():
        self.stats["idle_releases"] += 1
