"""Alerts (RFC 8446 §6) and the end of a connection: the one place that turns a protocol
error (or a bug) into its fatal alert and the `ConnectionTerminated` event, alerts sent and
received, ``close()`` and ``abandon()``.

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._fast import MemoryBudgetExceeded
from .alerts import (
    Alert,
    AlertDescription,
    AlertLevel,
    DecodeErrorAlert,
    EchRequired,
    InternalError,
)
from .events import ConnectionTerminated
from .record import ContentType
from .record.message_trace import TracedMessage

if TYPE_CHECKING:
    from .connection import Connection


def close(self: Connection, alert: AlertDescription = AlertDescription.close_notify) -> None:
    """Send close_notify (if anything was established) and release everything.

    `alert` other than close_notify aborts instead: that error alert is sent (at the
    fatal level, RFC 8446 §6.2) and the connection ends with it; user_canceled is a
    warning followed by close_notify (§6.1)."""
    if not isinstance(alert, AlertDescription):
        raise TypeError("alert must be an AlertDescription")
    self._activity()
    if self._hs.closed:
        return
    if self._path_check is not None and alert in (
        AlertDescription.close_notify,
        AlertDescription.user_canceled,
    ):
        # Data held while a new address was checked goes ahead of close_notify, to the
        # address the peer was last shown to read at.
        self._end_path_check(moved=False)
    established = self._records.write_epoch >= 2 or self._hs.connected
    if alert not in (AlertDescription.close_notify, AlertDescription.user_canceled):
        # Unprotected, an error alert is sent as the handshake's own are (the peer
        # treats a plaintext one as it sees fit, RFC 9147 §4.5.2).
        self._send_alert(AlertLevel.FATAL, alert)
        self._terminate(alert, "aborted locally", by_peer=False, now=None)
        return
    if established:
        if alert is AlertDescription.user_canceled:
            self._send_alert(AlertLevel.WARNING, alert)
        self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
    self._terminate(alert, "closed locally", by_peer=False, now=None)


def abandon(self: Connection, reason: str = "abandoned by the endpoint") -> None:
    """End at once without sending anything (a superseded or shed association)."""
    self._activity()
    if self._hs.closed:
        return
    self._terminate(None, reason, by_peer=False, now=None)
    for lease, _ in self._outbox:
        lease.release()
    self._outbox = ()


def guard(self: Connection, now: float | None, action: Callable[[], None]) -> bool:
    """Run `action`; turn an Alert (or a bug) into a fatal alert. False if it failed."""
    try:
        action()
        return True
    except Alert as alert:
        self._fail(alert, now)
    except MemoryBudgetExceeded as exc:
        self._fail(InternalError(f"memory budget: {exc}"), now)
    except Exception as exc:
        if self.config.debug:
            raise
        self._fail(InternalError(f"{type(exc).__name__}: {exc}"), now)
    return False


def fail(self: Connection, alert: Alert, now: float | None) -> None:
    if self._hs.closed:
        return
    try:
        self._send_alert(AlertLevel.FATAL, alert.description)
    except Exception:  # the alert is best effort; the connection ends regardless
        if self.config.debug:
            raise
    self._terminate(
        alert.description,
        alert.reason,
        by_peer=False,
        now=now,
        certificate_error=alert.certificate_error,
        ech_rejected=isinstance(alert, EchRequired),
        ech_retry_configs=getattr(alert, "retry_configs", None),
    )


def terminate(
    self: Connection,
    alert: AlertDescription | None,
    reason: str,
    *,
    by_peer: bool,
    now: float | None,
    timed_out: bool = False,
    certificate_error: str | None = None,
    ech_rejected: bool = False,
    ech_retry_configs: bytes | None = None,
) -> None:
    if self._hs.connected:
        # What get_cleartext_mtu() answers once the record layer is gone.
        self._closed_cleartext_mtu = self.get_cleartext_mtu()
    self._hs.close()
    self.terminated = ConnectionTerminated(
        alert,
        reason,
        by_peer,
        timed_out=timed_out,
        certificate_error=certificate_error,
        ech_rejected=ech_rejected,
        ech_retry_configs=ech_retry_configs,
    )
    self._event(self.terminated)
    self._retransmit_at = self._ack_at = None
    if self._flight is not None:
        self._flight.release()
        self._flight = None
    if self._reassembler is not None:
        self._reassembler.close()
    self._drop_other_hello()
    if self._path_check is not None:
        self._drop_path_check()
    self._records.close()


def send_alert(self: Connection, level: AlertLevel, description: AlertDescription) -> None:
    """Best effort: with no memory left for it the alert is counted, not sent."""
    epoch = self._records.write_epoch
    try:
        with self._records.datagram_writer(self.mtu) as w:
            w.add(epoch, ContentType.alert, bytes([level, description]))
            self._queue(w.finish())
    except MemoryBudgetExceeded:
        self.stats["alerts_unsent"] += 1
        return
    if self.config.message_callback is not None:
        data = bytes([level, description])
        self.config.message_callback(TracedMessage(True, ContentType.alert, None, data))


def handle_alert(self: Connection, record: Any, now: float) -> None:
    payload = record.payload
    if len(payload) != 2:
        if record.epoch == 0:
            self.stats["dropped_malformed_plaintext"] += 1
            return
        raise DecodeErrorAlert("alert record of the wrong length")
    level, desc = payload[0], payload[1]
    if self.config.message_callback is not None:
        data = bytes(payload)
        self.config.message_callback(TracedMessage(False, ContentType.alert, None, data))
    try:
        description = AlertDescription(desc)
    except ValueError:
        description = AlertDescription.internal_error
    if description is AlertDescription.close_notify:
        self._terminate(description, "peer sent close_notify", by_peer=True, now=now)
    elif level == AlertLevel.FATAL or description is not AlertDescription.user_canceled:
        self._terminate(description, f"peer sent {description.name}", by_peer=True, now=now)
