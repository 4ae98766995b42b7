"""The record layer of one association: epochs, protection, datagrams (RFC 9147 §4).

`RecordLayer` packs records into datagrams and reads them out of received ones, keeping
those that came ahead of their keys; its epochs (installation, retirement, AEAD limits)
are functions in epochs.py that it binds.

Sans-IO: no socket, no clock (`now` is passed in). Outgoing records are
encrypted in place inside pooled datagram leases; incoming records are
deprotected into pooled leases. Invalid incoming records are dropped and
counted by reason, never raised (§4.5.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Final, NamedTuple

from typing_extensions import Buffer as BufferLike

from .._fast import (
    DatagramWriter,
    DecodeError,
    InboundRecord,
    Lease,
    Owner,
    ReadEpoch,
    ReplayWindow,
    WriteEpoch,
    open_app_datagram_untrusted,
    parse_header_untrusted,
    read_datagram_untrusted,
    seal_app_datagram,
    unified_header_length,
)
from ..alerts import LocalProtocolError
from ..memory import PoolSet
from ..memory.counters import zero_counters
from . import epochs
from .epochs import DEFAULT_RETIRE_AFTER
from .header import (
    PLAINTEXT_HEADER_LENGTH,
    SEQUENCE_LIMIT,
    ContentType,
)

DROP_REASONS: Final = (
    "bad_header",  # unparsable header: the rest of the datagram is discarded too
    "bad_cid",  # connection ID differs from the datagram's first record
    "unknown_epoch",  # no read keys for these epoch bits (or a DTLSPlaintext epoch != 0)
    "retired_epoch",  # keys for that epoch were retired
    "too_short",  # ciphertext shorter than the 16-byte mask sample (§4.2.3)
    "auth_failed",  # AEAD authentication failed
    "integrity_limit",  # the read key reached its integrity limit (§4.5.3)
    "replay",  # sequence number already seen or left of the window (§4.5.1)
    "bad_content_type",  # no or unknown inner content type
    "budget",  # no pooled memory for the plaintext
    "pending_expired",  # buffered for keys that did not come in time
    "pending_full",  # ahead of its keys, but max_pending_bytes are kept already
)

# What `drops` is until a layer's first drop: the same read-only zeros for every layer (most
# never drop a record), then a dict of its own.
NO_DROPS: Final[Mapping[str, int]] = MappingProxyType(dict.fromkeys(DROP_REASONS, 0))

# Content types are checked in _fast: DTLSPlaintext carries alert, handshake or
# ack (RFC 9147 §4.1); protected records also application data (Figure 5).
_CONTENT_TYPES: Final = {t.value: t for t in ContentType}

# Records tracked by epoch 0's replay window. Epoch 0 carries a handful of records (the
# hellos, their retransmissions, alerts), so no plausible reordering needs more; it is
# also what OpenSSL keeps (for every epoch), so a peer that numbers its epoch-0 records
# in a way OpenSSL refuses fails against us too, in our own tests.
PLAINTEXT_REPLAY_WINDOW = 64
# Pooled bytes a connection keeps for records ahead of their keys: room for a whole server
# flight (a large certificate chain included) that came before its ServerHello.
DEFAULT_MAX_PENDING_BYTES = 64 * 1024


class _Options(NamedTuple):
    """A layer's settings that no per-record path reads (see RecordLayer)."""

    replay_window: int
    retire_after: float
    max_pending_bytes: int
    pending_lifetime: float
    confidentiality_limit: int | None
    integrity_limit: int | None


# One _Options for every layer made with the same settings (those of one config).
_shared_options: Final = lru_cache(maxsize=32)(_Options)


class RecordLayer:
    """Epochs, record protection and datagram packing for one association.

    `pools`/`owner`: where leases come from and whom they are charged to.
    `replay_window`: records tracked per protected read epoch (§4.5.1); epoch 0 tracks
    PLAINTEXT_REPLAY_WINDOW.
    `padding`: pad each TLSInnerPlaintext to a multiple of this many bytes (0: none).
    `seq_bits`: 16 (what OpenSSL 4.1 sends) or 8 sequence-number bits on the wire.
    `omit_last_length`: records added with ``last=True`` carry no length field.
    `write_cid`: the peer's connection ID, put in every record we send (None: none).
    `read_cid_length`: the length of the connection ID we issued (0: none).
    `tentative_cid_length`: a client that offered a CID of this length and has not seen the
    ServerHello yet: records with the C bit are read as carrying it, others as without.
    `cid_optional`: records without the C bit are accepted besides those with our CID (a
    server reading 0-RTT records, sent before the client knew it should use a CID).
    `retire_after`: seconds an older read epoch stays usable after a newer one is used.
    `max_pending_bytes` / `pending_lifetime`: records of an epoch whose keys are not
    installed yet (e.g. encrypted handshake records in the datagram of ServerHello) are
    kept, one pooled slot per datagram holding what the peer sent, in slots of at most
    this many bytes together, for at most this many seconds, until `receive_pending()`.
    `confidentiality_limit` / `integrity_limit`: override the per-suite limits of §4.5.3.
    """

    # One per connection: slots keep it small (no per-instance dict).
    __slots__ = (
        "_acquire",
        "_newest_used",
        "_options",
        "_owner",
        "_pending",
        "_pending_bytes",
        "_pending_times",
        "_plaintext_retire_at",
        "_plaintext_window",
        "_read_newest",
        "_read_older",
        "_retired_bits",
        "_retired_sent",
        "_write_now",
        "_write_older",
        "cid_optional",
        "closed",
        "datagrams_received",
        "drops",
        "omit_last_length",
        "padding",
        "read_cid_length",
        "records_received",
        "seq_bits",
        "tentative_cid_length",
        "write_cid",
    )

    def __init__(
        self,
        pools: PoolSet,
        owner: Owner | None = None,
        *,
        replay_window: int = 256,
        padding: int = 0,
        seq_bits: int = 16,
        omit_last_length: bool = False,
        write_cid: bytes | None = None,
        read_cid_length: int = 0,
        retire_after: float = DEFAULT_RETIRE_AFTER,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        pending_lifetime: float = 10.0,
        confidentiality_limit: int | None = None,
        integrity_limit: int | None = None,
    ) -> None:
        if seq_bits not in (8, 16):
            raise LocalProtocolError("seq_bits must be 8 or 16")
        if padding < 0 or replay_window < 1:
            raise LocalProtocolError("padding must be >= 0 and replay_window >= 1")
        self._owner = owner
        self._acquire = pools.acquire
        self.padding = padding
        self.seq_bits = seq_bits
        self.omit_last_length = omit_last_length
        self.write_cid = write_cid
        self.read_cid_length = read_cid_length
        self.tentative_cid_length = 0
        self.cid_optional = False
        # Not one slot each: one connection's layer lives as long as the connection.
        self._options = _shared_options(
            replay_window,
            retire_after,
            max_pending_bytes,
            pending_lifetime,
            confidentiality_limit,
            integrity_limit,
        )
        # Per datagram kept: (its lease, records in it); when it came; slot bytes in all.
        # Lists of their own only while records wait (an idle connection has none).
        self._pending: list[tuple[Lease, int]] | tuple[()] = ()
        self._pending_times: list[float] | tuple[()] = ()
        self._pending_bytes = 0
        # Epoch 0 is plaintext: writable, and readable until retired like any epoch.
        # The newest write epoch, and the older ones still kept (oldest first; while records
        # in them may need retransmitting): no container of its own once idle.
        self._write_now = WriteEpoch(0, None, SEQUENCE_LIMIT)
        self._write_older: tuple[WriteEpoch, ...] = ()
        # The live read epochs alike: the newest and the others, oldest first. No two share
        # their two low bits (what the unified header carries: at most four are live).
        # A bit (1 << b) per two-bit value b of a retired one.
        self._read_newest: ReadEpoch | None = None
        self._read_older: tuple[ReadEpoch, ...] = ()
        self._retired_bits = 0
        # Epoch 0's replay window (RFC 9147 §4.5.1: one per epoch, epoch 0 included); None
        # once DTLSPlaintext records are no longer read. A client keeps it across a
        # HelloRetryRequest, as OpenSSL does: a server's ServerHello must be numbered
        # after its HRR.
        self._plaintext_window: ReplayWindow | None = ReplayWindow(PLAINTEXT_REPLAY_WINDOW)
        self._plaintext_retire_at: float | None = None
        self._newest_used = 0
        self.closed = False
        # Records dropped by reason: NO_DROPS until the first drop (see own_drops).
        self.drops: Mapping[str, int] = NO_DROPS
        self.records_received = 0
        self._retired_sent = 0
        self.datagrams_received = 0

    # -- epochs (epochs.py) --------------------------------------------------

    install_write_epoch = epochs.install_write_epoch
    retire_write_epoch = epochs.retire_write_epoch
    write_epochs = epochs.write_epochs
    _write_states = epochs.write_states
    _write_state = epochs.write_state
    install_read_epoch = epochs.install_read_epoch
    _read_states = epochs.read_states
    _read_state = epochs.read_state
    read_epochs = epochs.read_epochs
    plaintext_taken = epochs.plaintext_taken
    retire_read_epoch = epochs.retire_read_epoch
    _retire = epochs.retire
    expire = epochs.expire
    _used = epochs.used
    exhausted_read_epochs = epochs.exhausted_read_epochs
    integrity_limit_of = epochs.integrity_limit_of
    auth_failures = epochs.auth_failures
    records_protected = epochs.records_protected
    next_sequence_number = epochs.next_sequence_number
    continue_plaintext_after = epochs.continue_plaintext_after
    release_ciphers = epochs.release_ciphers
    _ciphers = epochs.ciphers

    # The epochs' properties stay here: mypy types a property() of a function as Any.
    @property
    def write_epoch(self) -> int:
        """The newest write epoch."""
        return self._write_now.epoch

    @property
    def key_update_due(self) -> bool:
        """The current write key reached its confidentiality limit (RFC 9147 §4.5.3)."""
        state = self._write_now
        return state.cipher is not None and state.protected >= state.limit

    @property
    def integrity_limit_reached(self) -> bool:
        """A live read key failed authentication too often: close (or rekey and retire it)."""
        return any(s.failures >= s.limit for s in self._read_states())

    @property
    def activity_mark(self) -> int:
        """A number that changes whenever a record is sent or a datagram received."""
        return self.records_sent + self.datagrams_received

    @property
    def ciphers_built(self) -> int:
        """Epoch ciphers (either direction) whose AEAD and mask objects exist now."""
        return sum(1 for c in self._ciphers() if c.built)

    # -- sending ------------------------------------------------------------

    @property
    def records_sent(self) -> int:
        """Records written by all writers, in every epoch so far."""
        sent = self._retired_sent + self._write_now.next_seq
        for state in self._write_older:
            sent += state.next_seq
        return sent

    def datagram_writer(self, mtu: int) -> DatagramWriter:
        """A writer packing records into pooled datagrams of at most `mtu` bytes."""
        if self.closed:
            self._check_open()
        return DatagramWriter(
            self,
            self._acquire,
            self._owner,
            mtu,
            self.seq_bits,
            self.write_cid,
            self.omit_last_length,
            self.padding,
            LocalProtocolError,
        )

    def record_overhead(self, epoch: int, *, with_length: bool = True) -> int:
        """Bytes a record of `epoch` adds to its payload, before padding."""
        state = self._write_state(epoch)
        if state is None:
            raise KeyError(epoch)
        if state.cipher is None:
            return PLAINTEXT_HEADER_LENGTH
        cid = len(self.write_cid) if self.write_cid else 0
        hl = unified_header_length(cid, self.seq_bits, with_length)
        return hl + 1 + state.cipher.tag_length

    # -- receiving ----------------------------------------------------------

    def receive_datagram_untrusted(self, data: BufferLike, now: float) -> list[InboundRecord]:
        """Every valid record of a datagram, in order; invalid ones are dropped and counted.

        Each record's `content_type` is a ContentType; release each record when done.
        """
        if self.closed:
            return []
        self.expire(now)
        self.datagrams_received += 1
        split = self._split_cid_length()
        if split:
            records, newest = self._read_tentative(data, split)
        else:
            records, newest = self._read_records(data, self.read_cid_length)
        if self._pending:  # records were kept ahead of their keys
            self._note_pending(now)
        if newest > self._newest_used:
            self._used(newest, now)
        self.records_received += len(records)
        return records

    def receive_app_untrusted(
        self, data: BufferLike, now: float
    ) -> tuple[bytes, int, int] | list[InboundRecord] | None:
        """The established data path: `receive_datagram_untrusted` for a datagram that is
        one protected record of a live epoch >= 3, the same state changes in one compiled
        call. ``(data, epoch, sequence number)`` for application data, else the records
        (as receive_datagram_untrusted returns them); None: not such a datagram, nothing
        was done (but expiring, which the general path repeats), call
        receive_datagram_untrusted."""
        if self.closed or self._split_cid_length():
            return None
        self.expire(now)
        got = open_app_datagram_untrusted(
            data,
            self.read_cid_length,
            self._read_newest,
            self._read_older,
            self._acquire,
            self._owner,
            self,
            _CONTENT_TYPES,
        )
        if got is None:
            return None
        self.datagrams_received += 1
        if isinstance(got, tuple):
            self.records_received += 1
            epoch = got[1]
        else:
            self.records_received += len(got)
            epoch = got[0].epoch if got else -1
        if epoch > self._newest_used:
            self._used(epoch, now)
        return got

    def seal_app_datagram(self, data: BufferLike, mtu: int) -> Lease | int:
        """One application data record of the current write epoch alone in a datagram
        lease, as ``datagram_writer(mtu)`` would write it; the largest payload that fits
        (an int) when `data` does not."""
        if self.closed:
            self._check_open()
        return seal_app_datagram(
            self,
            self._acquire,
            self._owner,
            mtu,
            self.seq_bits,
            self.write_cid,
            self.padding,
            LocalProtocolError,
            data,
        )

    def _split_cid_length(self) -> int:
        """The CID length when records of a datagram may differ in having a CID, else 0."""
        if self.read_cid_length:
            return self.read_cid_length if self.cid_optional else 0
        return self.tentative_cid_length

    def _read_records(
        self, data: BufferLike, cid_length: int, keep_pending: bool = True
    ) -> tuple[list[InboundRecord], int]:
        pending: list[tuple[Lease, int]] | None = None
        if keep_pending:
            pending = self._pending if isinstance(self._pending, list) else []
        kept = len(pending) if pending is not None else 0
        try:
            return read_datagram_untrusted(
                data,
                cid_length,
                self._read_newest,
                self._read_older,
                self._retired_bits,
                self._plaintext_window,
                self._acquire,
                self._owner,
                self,
                _CONTENT_TYPES,
                pending,
                self._options.max_pending_bytes - self._pending_bytes,
            )
        finally:
            if pending:  # kept even if reading raised: close() releases them
                self._pending = pending
                for lease, _ in pending[kept:]:
                    self._pending_bytes += lease.capacity

    def _read_tentative(
        self, data: BufferLike, tentative_length: int, keep_pending: bool = True
    ) -> tuple[list[InboundRecord], int]:
        """Record by record: whether the server took our CID offer is in its ServerHello,
        which may share a datagram with epoch-2 records that carry the CID."""
        records: list[InboundRecord] = []
        newest = -1
        view = memoryview(data)
        try:
            offset = 0
            while offset < len(view):
                first = view[offset]
                cid_length = tentative_length if first & 0xF0 == 0x30 else 0
                try:
                    _, _, _, header_length, length = parse_header_untrusted(
                        view, offset, cid_length
                    )
                except DecodeError:
                    self.own_drops()["bad_header"] += 1
                    break
                end = offset + header_length + length
                chunk = view[offset:end]
                try:
                    got, top = self._read_records(chunk, cid_length, keep_pending)
                finally:
                    chunk.release()
                records += got
                newest = max(newest, top)
                offset = end
        finally:
            view.release()
        return records, newest

    def _note_pending(self, now: float) -> None:
        """Time-stamp the datagrams of records just kept ahead of their keys."""
        times = self._pending_times
        if len(times) < len(self._pending):
            self._pending_times = [*times, *[now] * (len(self._pending) - len(times))]

    @property
    def pending_count(self) -> int:
        """Datagrams whose records are kept for read keys not installed yet."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Pooled bytes those records hold (at most `max_pending_bytes`)."""
        return self._pending_bytes

    def _drop_stale_pending(self, now: float) -> None:
        """Drop the kept records older than `pending_lifetime` (expire() calls this)."""
        # Kept in arrival order: the stale ones are a prefix.
        times = self._pending_times
        assert isinstance(times, list) and isinstance(self._pending, list)
        stale = 0
        lifetime = self._options.pending_lifetime
        while stale < len(times) and now - times[stale] > lifetime:
            stale += 1
        drops = self.own_drops()
        for lease, records in self._pending[:stale]:
            drops["pending_expired"] += records
            self._pending_bytes -= lease.capacity
            lease.release()
        del self._pending[:stale], times[:stale]
        if not times:
            self._pending = self._pending_times = ()

    def receive_pending(self, now: float) -> list[InboundRecord]:
        """Deprotect the kept records with the read keys installed since (call after
        install_read_epoch); those still without keys are dropped and counted."""
        self.expire(now)
        pending, self._pending, self._pending_times = self._pending, (), ()
        self._pending_bytes = 0
        out: list[InboundRecord] = []
        try:
            split = self._split_cid_length()
            for lease, _ in pending:
                if split:
                    records, newest = self._read_tentative(lease, split, keep_pending=False)
                else:
                    records, newest = self._read_records(
                        lease, self.read_cid_length, keep_pending=False
                    )
                if newest > self._newest_used:
                    self._used(newest, now)
                out += records
        finally:
            for lease, _ in pending:
                lease.release()
        self.records_received += len(out)
        return out

    # -- lifecycle ----------------------------------------------------------

    @property
    def stats(self) -> dict[str, object]:
        """Same as statistics()."""
        return self.statistics()

    def statistics(self) -> dict[str, object]:
        """Counters for diagnostics: records, datagrams, drops by reason, epochs."""
        return {
            "records_sent": self.records_sent,
            "records_received": self.records_received,
            "datagrams_received": self.datagrams_received,
            "drops": dict(self.drops),
            "write_epochs": self.write_epochs(),
            "read_epochs": self.read_epochs(),
            "auth_failures": {s.epoch: s.failures for s in self._read_states()},
            "pending": len(self._pending),
        }

    def close(self) -> None:
        """Forget all keys; later datagrams are ignored and writers refused.

        Pending records are released. Received records belong to the caller
        until released, and unfinished writers release theirs with `abort()` (or
        on leaving their `with` block); `pools.release_owner(owner)` reclaims all.
        """
        for lease, _ in self._pending:
            lease.release()
        self._pending = self._pending_times = ()
        self._pending_bytes = 0
        self._retired_sent = self.records_sent
        self._write_now = WriteEpoch(0, None, SEQUENCE_LIMIT)
        self._write_older = ()
        self._read_newest = None
        self._read_older = ()
        self._plaintext_window = None
        self.closed = True

    def own_drops(self) -> dict[str, int]:
        """`drops` as a dict of this layer's own, made at the first drop (the compiled read
        paths call this too): counting goes there."""
        drops = self.drops
        if not isinstance(drops, dict):
            drops = self.drops = zero_counters(DROP_REASONS)
        return drops

    def _check_open(self) -> None:
        if self.closed:
            raise LocalProtocolError("record layer is closed")
