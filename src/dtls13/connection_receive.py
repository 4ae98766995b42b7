"""Records in: a datagram read by the record layer, the established data path (one
application record per datagram), path tracking, the AEAD integrity limit, and each record
dispatched by content type (handshake, ACK, alert, application data, 0-RTT data).

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from .alerts import AlertDescription, RecordOverflow, UnexpectedMessage, alert_for
from .arguments import check_datagram, check_now
from .events import DataReceived
from .record import ContentType
from .record.header import MAX_PLAINTEXT

if TYPE_CHECKING:
    from .connection import Address, Connection


def receive_datagram(self: Connection, data: Any, addr: Address, now: float) -> None:
    """Take one datagram from the network; never raises for bad network input (TypeError
    at once for data that is not bytes-like or a `now` that is not a time)."""
    check_datagram(data)
    check_now(now)
    self._receive_general(data, addr, now)


def receive_general(self: Connection, data: Any, addr: Address, now: float) -> None:
    if self._hs.closed:
        self._activity()
        return
    self._now = now
    self._activity()
    self._receive_datagram(data, addr, now)


def read_datagram(self: Connection, data: Any, addr: Address, now: float) -> None:
    if self.peer_address is None:
        self.peer_address = addr
    if self.handshake_started is None:
        self.handshake_started = now
        self._handshake_deadline = now + self.config.handshake_timeout
        self._arm_unanswered(now)
    self.stats["datagrams_in"] += 1
    if self._amplification is not None:
        self._amplification[1] += len(data)
    self._retransmitted_this_input = False
    drops = self._records.drops
    retired, failed = drops["retired_epoch"], drops["auth_failed"]
    records = self._records.receive_datagram_untrusted(data, now)
    drops = self._records.drops  # a dict of its own from the first drop on
    if drops["retired_epoch"] != retired and self._final_acks:
        self._repeat_final_acks(now)
    self._receive_records(records, addr, now, drops["auth_failed"] != failed)
    if self._path_check is not None:
        self._after_path_input(addr, len(data))


def receive_datagram_data(self: Connection, data: Any, addr: Address, now: float) -> bytes | None:
    """``receive_datagram``, except that the data of an application record alone in its
    datagram, on an established connection with no event waiting, is returned instead
    of queued as a `DataReceived` event (the established data path: one compiled call
    reads the record). None: nothing to return (any events are queued as usual)."""
    if (
        self._events
        or not self._hs.connected
        or self._enforce_record_limit
        or self._amplification is not None
        or self._records.pending_count
    ):
        self._receive_general(data, addr, now)
        return None
    # What receive_datagram does before and around reading the records (the epoch is
    # live, so no retired-epoch drop can happen).
    self._now = now
    self._activity()
    records = self._records
    failed = records.drops["auth_failed"]
    got = records.receive_app_untrusted(data, now)
    if got is None:  # not the established path's kind of datagram: nothing was done
        self._receive_datagram(data, addr, now)
        return None
    stats = self.stats
    stats["datagrams_in"] += 1
    self._retransmitted_this_input = False
    if not isinstance(got, tuple):
        self._receive_records(got, addr, now, records.drops["auth_failed"] != failed)
        return None
    payload, epoch, seq = got
    # As _app_data_fast.
    newest = (epoch, seq)
    if newest > self._newest_protected:
        self._follow(newest, addr)
    if self._path_check is not None:
        self._after_path_input(addr, len(data))
    stats["records_in"] += 1
    stats["app_bytes_in"] += len(payload)
    return payload


def receive_records(
    self: Connection, records: list[Any], addr: Address, now: float, forged: bool
) -> None:
    if len(records) == 1 and self._app_data_fast(records[0], addr):
        if forged:
            self._check_integrity(now)
        return
    self._track_path(records, addr)
    while records:
        # Only a layer holding records ahead of their keys needs the count (a restarted
        # handshake's new layer holds none).
        layer = self._records
        epochs = len(layer.read_epochs()) if layer.pending_count else -1
        # Counted before any is handled: a repeated ServerHello ahead of them in the
        # datagram must see that the handshake keys work (connection_handshake.py).
        for r in records:
            if r.epoch == 2:
                self._epoch2_records += 1
        self._handle_records(records, now)
        # Records that came ahead of their keys (a ServerHello and epoch-2 records in
        # one datagram) are read once handling the earlier ones installed the keys.
        layer = self._records
        if self._hs.closed or not layer.pending_count or len(layer.read_epochs()) == epochs:
            break
        records = layer.receive_pending(now)
    if forged and not self._hs.closed:
        self._check_integrity(now)


def check_integrity(self: Connection, now: float) -> None:
    """RFC 9147 §4.5.3: "Implementations SHOULD initiate a key update with
    update_requested before reaching this limit. Once a key update has been initiated,
    the previous keys can be dropped when the limit is reached rather than closing the
    connection." So forged records (CCM-8's limit is 2^7) rotate keys, and close the
    connection only when the peer's newest key itself reaches its limit."""
    records = self._records
    live = records.read_epochs()
    newest = live[-1] if live else 0
    for epoch in records.exhausted_read_epochs():
        if epoch >= newest:
            alert = alert_for(AlertDescription.bad_record_mac, "AEAD integrity limit")
            self._fail(alert, now)
            return
        records.retire_read_epoch(epoch)
        self.count("keys_dropped_at_integrity_limit")
    if (
        self._hs.connected
        and newest >= 3
        and not self._key_update_pending
        and records.auth_failures(newest) * 2 >= records.integrity_limit_of(newest)
        and self._key_update_refusal() is None
    ):
        self.key_update(request_peer=True)


def track_path(self: Connection, records: list[Any], addr: Address) -> None:
    """A new address of the peer's (NAT rebinding, RFC 9146 §6) is checked only when a
    record from there authenticated and is the newest seen (connection_path.py): a
    replayed or spoofed datagram cannot start a check."""
    newest = max(((r.epoch, r.sequence_number) for r in records if r.epoch > 0), default=None)
    if newest is not None:
        self._follow(newest, addr)


def app_data_fast(self: Connection, record: Any, addr: Address) -> bool:
    """The established data path: one authenticated application record, in a datagram
    of its own, after the handshake. Does what the general path would (path tracking,
    statistics, the event) without its per-record machinery; False leaves the record
    to the general path."""
    if (
        record.content_type != ContentType.application_data
        or record.epoch < 3
        or not self._hs.connected
        or self._enforce_record_limit
        or self._records.pending_count
    ):
        return False
    self._follow((record.epoch, record.sequence_number), addr)
    stats = self.stats
    stats["records_in"] += 1
    try:
        data = record.tobytes()
    finally:
        record.release()
    if len(data) > MAX_PLAINTEXT:
        self._fail(RecordOverflow(f"{len(data)} bytes of content in one record"), self._now)
        return True
    stats["app_bytes_in"] += len(data)
    self._event(DataReceived(data))
    return True


def handle_records(self: Connection, records: list[Any], now: float) -> None:
    try:
        for record in records:
            if self.closed:
                break
            self.stats["records_in"] += 1
            if not self._guard(now, partial(self._handle_record, record, now)):
                break
    finally:
        for record in records:
            record.release()


def handle_record(self: Connection, record: Any, now: float) -> None:
    if record.epoch == 0 and not self._hs.in_hello:
        self._handle_plaintext_after_keys(record, now)
        return
    if len(record.payload) > MAX_PLAINTEXT:
        # RFC 8446 §5.2: TLSInnerPlaintext (content and type) "MUST NOT exceed 2^14 + 1
        # octets"; record_overflow. (The header parser drops longer DTLSPlaintext.)
        raise RecordOverflow(f"{len(record.payload)} bytes of content in one record")
    # Early data (epoch 1) was sent before the client could know our limit.
    if self._enforce_record_limit and record.epoch >= 2:
        assert self.config.record_size_limit is not None
        size = len(record.payload) + 1  # with the inner content type
        if size > self.config.record_size_limit:
            raise RecordOverflow(
                f"{size}-byte record over our record_size_limit {self.config.record_size_limit}"
            )
    if record.epoch == 2:
        # It authenticated under the handshake keys (counted in _epoch2_records): the
        # peer has our flight, so it is there (anyone can send plaintext from a spoofed
        # address).
        self._unanswered_at = None
    ct = record.content_type
    if ct == ContentType.handshake:
        self._handle_handshake_record(record, now)
    elif ct == ContentType.ack:
        self._handle_ack(record, now)
    elif ct == ContentType.alert:
        self._handle_alert(record, now)
    elif ct == ContentType.application_data:
        if record.epoch == 1 and self._hs.early_data_open:
            self._on_early_data(record)
        elif record.epoch >= 3 and self._hs.connected:
            data = record.tobytes()
            self.stats["app_bytes_in"] += len(data)
            self._event(DataReceived(data))
        elif record.epoch == 2:
            # Authenticated under the handshake keys, so the peer itself sent it: no
            # application data is ever protected with those (RFC 8446 §7.1, RFC 9147
            # §6.1), as in TLS.
            raise UnexpectedMessage("application data under the handshake keys")
        else:
            # RFC 9147 §5.8.1: discard application data before the peer's Finished.
            self.stats["dropped_app_data_early"] += 1
    else:
        self.stats["dropped_unexpected_content"] += 1


def handle_plaintext_after_keys(self: Connection, record: Any, now: float) -> None:
    """An unprotected record once we read with keys: anyone on the path or off it may
    have made it, so it is never authoritative and never fatal (RFC 9147 §4.5.2, §5.11).
    Only a hello the peer repeats is of use: our flight to it was lost (§5.8.1)."""
    if record.content_type == ContentType.handshake:
        self._handle_handshake_record(record, now)
        return
    # Alerts and ACKs are dropped. The peer ACKs what we sent since its keys exist in an
    # encrypted epoch (§7): a plaintext ACK could only cancel retransmissions that the
    # handshake still needs. (One counter for all: a 31st name in STAT_NAMES would end
    # the key sharing of the stats dicts, CPython shares at most 30 keys.)
    self.stats["dropped_malformed_plaintext"] += 1


def on_early_data(self: Connection, record: Any) -> None:
    data = record.tobytes()
    hs = self._hs
    if len(data) > hs.early_budget:
        self.stats["dropped_early_data"] += 1  # over max_early_data_size
        return
    hs.early_budget -= len(data)
    self.stats["early_data_bytes_in"] += len(data)
    self._event(DataReceived(data, early=True))
