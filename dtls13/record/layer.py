"""The record layer of one association: epochs, protection, datagrams (RFC 9147 §4).

Sans-IO: no socket, no clock (`now` is passed in). Outgoing records are
encrypted in place inside pooled datagram leases; incoming records are
deprotected into pooled leases. Invalid incoming records are dropped and
counted by reason, never raised (§4.5.2).
"""

from __future__ import annotations

from typing import Final

from typing_extensions import Buffer as BufferLike

from .._fast import (
    OPEN_AUTH_FAILED,
    OPEN_REPLAY,
    DecodeError,
    EncodeError,
    Lease,
    MemoryBudgetExceeded,
    Owner,
    ReplayWindow,
    encode_plaintext_header,
    parse_header_untrusted,
    unified_header_length,
)
from ..alerts import LocalProtocolError
from ..crypto.suites import CipherSuite
from ..memory import PoolSet
from .header import (
    MAX_PLAINTEXT,
    PLAINTEXT_HEADER_LENGTH,
    SEQUENCE_LIMIT,
    ContentType,
    RecordNumber,
)
from .protection import CONFIDENTIALITY_LIMITS, INTEGRITY_LIMITS, MASK_SAMPLE, EpochKeys

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
)

# RFC 9147 §4.1: content types a DTLSPlaintext record may carry.
_PLAINTEXT_TYPES: Final = frozenset({21, 22, 26})
# Figure 5: decrypted content types we process (heartbeat is not supported).
_INNER_TYPES: Final = frozenset({21, 22, 23, 26})
_CONTENT_TYPES: Final = {t.value: t for t in ContentType}

DEFAULT_RETIRE_AFTER = 120.0  # seconds: TCP's MSL (RFC 9147 §4.2.1)


class InboundRecord:
    """A record received and deprotected; `payload` is a view into a pooled lease.

    Call `release()` exactly once when done with the payload.
    """

    __slots__ = ("_lease", "content_type", "epoch", "payload", "sequence_number")

    def __init__(
        self,
        epoch: int,
        sequence_number: int,
        content_type: ContentType,
        payload: memoryview,
        lease: Lease,
    ) -> None:
        self.epoch = epoch
        self.sequence_number = sequence_number
        self.content_type = content_type
        self.payload = payload
        self._lease = lease

    @property
    def record_number(self) -> RecordNumber:
        return RecordNumber(self.epoch, self.sequence_number)

    def tobytes(self) -> bytes:
        return self.payload.tobytes()

    def release(self) -> None:
        """Give the payload's lease back to its pool (once)."""
        self.payload.release()
        self._lease.release()

    def __repr__(self) -> str:
        return (
            f"<InboundRecord {self.content_type.name} epoch={self.epoch} "
            f"seq={self.sequence_number} {len(self.payload)} B>"
        )


class _WriteEpoch:
    __slots__ = ("epoch", "keys", "limit", "next_seq", "protected")

    def __init__(self, epoch: int, keys: EpochKeys | None, limit: int) -> None:
        self.epoch = epoch
        self.keys = keys
        self.next_seq = 0
        self.protected = 0
        self.limit = limit


class _ReadEpoch:
    __slots__ = ("epoch", "failures", "keys", "limit", "retire_at", "window")

    def __init__(self, epoch: int, keys: EpochKeys, window: int, limit: int) -> None:
        self.epoch = epoch
        self.keys = keys
        self.window = ReplayWindow(window)
        self.failures = 0
        self.limit = limit
        self.retire_at: float | None = None


class RecordLayer:
    """Epochs, record protection and datagram packing for one association.

    `pools`/`owner`: where leases come from and whom they are charged to.
    `replay_window`: records tracked per read epoch (§4.5.1).
    `padding`: pad each TLSInnerPlaintext to a multiple of this many bytes (0: none).
    `seq_bits`: 16 (what OpenSSL 4.1 sends) or 8 sequence-number bits on the wire.
    `omit_last_length`: records added with ``last=True`` carry no length field.
    `write_cid`: the peer's connection ID, put in every record we send (None: none).
    `read_cid_length`: the length of the connection ID we issued (0: none).
    `retire_after`: seconds an older read epoch stays usable after a newer one is used.
    `confidentiality_limit` / `integrity_limit`: override the per-suite limits of §4.5.3.
    """

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
        confidentiality_limit: int | None = None,
        integrity_limit: int | None = None,
    ) -> None:
        if seq_bits not in (8, 16):
            raise LocalProtocolError("seq_bits must be 8 or 16")
        if padding < 0 or replay_window < 1:
            raise LocalProtocolError("padding must be >= 0 and replay_window >= 1")
        self._pools = pools
        self._owner = owner
        self._acquire = pools.acquire
        self.replay_window = replay_window
        self.padding = padding
        self.seq_bits = seq_bits
        self.omit_last_length = omit_last_length
        self.write_cid = write_cid
        self.read_cid_length = read_cid_length
        self.retire_after = retire_after
        self.confidentiality_limit = confidentiality_limit
        self.integrity_limit = integrity_limit
        # Epoch 0 is plaintext: writable, and readable until retired like any epoch.
        self._write: dict[int, _WriteEpoch] = {0: _WriteEpoch(0, None, SEQUENCE_LIMIT)}
        self._read: dict[int, _ReadEpoch] = {}
        self._read_by_bits: dict[int, _ReadEpoch] = {}
        self._retired_bits: dict[int, int] = {}
        self._plaintext_readable = True
        self._plaintext_retire_at: float | None = None
        self._newest_used = 0
        self.closed = False
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.records_received = 0
        self.records_sent = 0
        self.datagrams_received = 0

    # -- epochs -------------------------------------------------------------

    def install_write_epoch(self, epoch: int, suite: CipherSuite, traffic_secret: bytes) -> None:
        """Protect records of `epoch` with keys from `traffic_secret` from now on."""
        self._check_open()
        if not 1 <= epoch < SEQUENCE_LIMIT:
            raise LocalProtocolError("epoch must be between 1 and 2^48-1")
        if epoch <= self.write_epoch:
            raise LocalProtocolError(f"write epoch {epoch} is not newer than {self.write_epoch}")
        limit = self.confidentiality_limit or CONFIDENTIALITY_LIMITS[suite]
        self._write[epoch] = _WriteEpoch(epoch, EpochKeys(epoch, suite, traffic_secret), limit)

    def retire_write_epoch(self, epoch: int) -> None:
        """Forget an older write epoch (once nothing needs retransmitting in it)."""
        if epoch == self.write_epoch:
            raise LocalProtocolError("cannot retire the current write epoch")
        self._write.pop(epoch, None)

    @property
    def write_epoch(self) -> int:
        """The newest write epoch."""
        return max(self._write)

    def write_epochs(self) -> list[int]:
        return sorted(self._write)

    def install_read_epoch(
        self, epoch: int, suite: CipherSuite, traffic_secret: bytes, now: float
    ) -> None:
        """Accept records of `epoch`; older epochs retire `retire_after` s after it is used."""
        self._check_open()
        self.expire(now)
        if not 1 <= epoch < SEQUENCE_LIMIT:
            raise LocalProtocolError("epoch must be between 1 and 2^48-1")
        if epoch in self._read or (self._read and epoch < max(self._read)):
            raise LocalProtocolError(f"read epoch {epoch} is not newer than the installed ones")
        clash = self._read_by_bits.get(epoch & 3)
        if clash is not None:
            # Only two epoch bits are on the wire: at most four epochs can be live.
            self._retire(clash)
        limit = self.integrity_limit or INTEGRITY_LIMITS[suite]
        state = _ReadEpoch(
            epoch, EpochKeys(epoch, suite, traffic_secret), self.replay_window, limit
        )
        self._read[epoch] = state
        self._read_by_bits[epoch & 3] = state
        self._retired_bits.pop(epoch & 3, None)

    def read_epochs(self) -> list[int]:
        """Epochs whose records are accepted now (0 while plaintext is readable)."""
        live = sorted(self._read)
        return [0, *live] if self._plaintext_readable else live

    def retire_read_epoch(self, epoch: int) -> None:
        """Stop accepting records of `epoch` now."""
        if epoch == 0:
            self._plaintext_readable = False
            return
        state = self._read.get(epoch)
        if state is not None:
            self._retire(state)

    def _retire(self, state: _ReadEpoch) -> None:
        del self._read[state.epoch]
        if self._read_by_bits.get(state.epoch & 3) is state:
            del self._read_by_bits[state.epoch & 3]
        self._retired_bits[state.epoch & 3] = state.epoch

    def expire(self, now: float) -> None:
        """Retire older read epochs whose grace period has passed."""
        if self._plaintext_retire_at is not None and now >= self._plaintext_retire_at:
            self._plaintext_readable = False
            self._plaintext_retire_at = None
        for state in [s for s in self._read.values() if s.retire_at is not None]:
            if state.retire_at is not None and now >= state.retire_at:
                self._retire(state)

    def _used(self, epoch: int, now: float) -> None:
        # §4.2.1: keys of earlier epochs MAY be kept "for up to the default MSL".
        self._newest_used = epoch
        deadline = now + self.retire_after
        if self._plaintext_readable and self._plaintext_retire_at is None:
            self._plaintext_retire_at = deadline
        for state in self._read.values():
            if state.epoch < epoch and state.retire_at is None:
                state.retire_at = deadline

    # -- limits -------------------------------------------------------------

    @property
    def key_update_due(self) -> bool:
        """The current write key reached its confidentiality limit (RFC 9147 §4.5.3)."""
        state = self._write[self.write_epoch]
        return state.keys is not None and state.protected >= state.limit

    @property
    def integrity_limit_reached(self) -> bool:
        """A live read key failed authentication too often: close (or rekey and retire it)."""
        return any(s.failures >= s.limit for s in self._read.values())

    def auth_failures(self, epoch: int) -> int:
        state = self._read.get(epoch)
        return 0 if state is None else state.failures

    def records_protected(self, epoch: int) -> int:
        state = self._write.get(epoch)
        return 0 if state is None else state.protected

    def next_sequence_number(self, epoch: int) -> int:
        return self._write[epoch].next_seq

    # -- sending ------------------------------------------------------------

    def datagram_writer(self, mtu: int) -> DatagramWriter:
        """A writer packing records into pooled datagrams of at most `mtu` bytes."""
        self._check_open()
        return DatagramWriter(self, mtu)

    def record_overhead(self, epoch: int, *, with_length: bool = True) -> int:
        """Bytes a record of `epoch` adds to its payload, before padding."""
        state = self._write[epoch]
        if state.keys is None:
            return PLAINTEXT_HEADER_LENGTH
        cid = len(self.write_cid) if self.write_cid else 0
        hl = unified_header_length(cid, self.seq_bits, with_length)
        return hl + 1 + state.keys.tag_length

    # -- receiving ----------------------------------------------------------

    def receive_datagram_untrusted(self, data: BufferLike, now: float) -> list[InboundRecord]:
        """Every valid record of a datagram, in order; invalid ones are dropped and counted."""
        if self.closed:
            return []
        self.expire(now)
        self.datagrams_received += 1
        try:
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
        except (TypeError, ValueError):
            self.drops["bad_header"] += 1
            return []
        out: list[InboundRecord] = []
        with view:
            n = view.nbytes
            offset = 0
            cid_length = self.read_cid_length
            first_cid: memoryview | None = None
            while offset < n:
                try:
                    first, epoch, seq, hl, length = parse_header_untrusted(view, offset, cid_length)
                except DecodeError:
                    # Later records cannot be located: the rest goes too.
                    self.drops["bad_header"] += 1
                    break
                if cid_length > 0 and first >= 0x20:
                    cid = view[offset + 1 : offset + 1 + cid_length]
                    if first_cid is None:
                        first_cid = cid
                    elif cid != first_cid:
                        # §4: "the rest of the datagram MUST be discarded".
                        self.drops["bad_cid"] += 1
                        break
                start = offset + hl
                if first < 0x20:
                    record = self._read_plaintext(view, first, epoch, seq, start, length)
                else:
                    record = self._read_ciphertext(view, offset, epoch, hl, length, now)
                if record is not None:
                    out.append(record)
                offset = start + length
        self.records_received += len(out)
        return out

    def _read_plaintext(
        self, view: memoryview, ctype: int, epoch: int, seq: int, start: int, length: int
    ) -> InboundRecord | None:
        if epoch != 0:
            self.drops["unknown_epoch"] += 1
            return None
        if not self._plaintext_readable:
            self.drops["retired_epoch"] += 1
            return None
        # Unauthenticated: no replay window (an attacker could only poison it);
        # the handshake layer discards duplicates by message_seq.
        try:
            lease = self._acquire(length, self._owner)
        except MemoryBudgetExceeded:
            self.drops["budget"] += 1
            return None
        lease.write(0, view[start : start + length])
        return InboundRecord(0, seq, _CONTENT_TYPES[ctype], lease.view(0, length), lease)

    def _read_ciphertext(
        self, view: memoryview, offset: int, bits: int, hl: int, length: int, now: float
    ) -> InboundRecord | None:
        drops = self.drops
        state = self._read_by_bits.get(bits)
        if state is None:
            if bits in self._retired_bits:
                drops["retired_epoch"] += 1
            else:
                drops["unknown_epoch"] += 1
            return None
        # §4.2.3: "Receivers MUST reject shorter records as if they had failed
        # deprotection" (this also guarantees room for the tag).
        if length < MASK_SAMPLE:
            drops["too_short"] += 1
            return None
        if state.failures >= state.limit:
            drops["integrity_limit"] += 1
            return None
        keys = state.keys
        try:
            lease = self._acquire(length - keys.tag_length, self._owner)
        except MemoryBudgetExceeded:
            drops["budget"] += 1
            return None
        seq, index, ctype = keys.cipher.open_untrusted(
            view, offset, hl, length, state.window, lease
        )
        if index < 0:
            lease.release()
            if index == OPEN_AUTH_FAILED:
                # §4.5.3: "count the number of received packets that fail authentication".
                state.failures += 1
                drops["auth_failed"] += 1
            elif index == OPEN_REPLAY:
                drops["replay"] += 1
            else:
                drops["bad_content_type"] += 1
            return None
        if state.epoch > self._newest_used:
            self._used(state.epoch, now)
        return InboundRecord(state.epoch, seq, _CONTENT_TYPES[ctype], lease.view(0, index), lease)

    # -- lifecycle ----------------------------------------------------------

    def statistics(self) -> dict[str, object]:
        """Counters for diagnostics: records, datagrams, drops by reason, epochs."""
        return {
            "records_sent": self.records_sent,
            "records_received": self.records_received,
            "datagrams_received": self.datagrams_received,
            "drops": dict(self.drops),
            "write_epochs": self.write_epochs(),
            "read_epochs": self.read_epochs(),
            "auth_failures": {e: s.failures for e, s in self._read.items()},
        }

    def close(self) -> None:
        """Forget all keys; later datagrams are ignored and writers refused.

        The layer holds no leases itself: received records belong to the caller
        until released, and unfinished writers release theirs with `abort()` (or
        on leaving their `with` block); `pools.release_owner(owner)` reclaims all.
        """
        self._write.clear()
        self._write[0] = _WriteEpoch(0, None, SEQUENCE_LIMIT)
        self._read.clear()
        self._read_by_bits.clear()
        self._plaintext_readable = False
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise LocalProtocolError("record layer is closed")


class DatagramWriter:
    """Packs records into pooled datagram leases of at most `mtu` bytes.

    `add()` returns the record's number, or None when it does not fit the current
    datagram (call `new_datagram()` and retry). `finish()` hands over the
    datagrams; the caller sends each (`len(lease)` bytes) and releases it.
    """

    __slots__ = ("_datagrams", "_layer", "_lease", "_mtu", "_pos")

    def __init__(self, layer: RecordLayer, mtu: int) -> None:
        if not PLAINTEXT_HEADER_LENGTH + 1 <= mtu <= 65535:
            raise LocalProtocolError(f"MTU {mtu} is outside {PLAINTEXT_HEADER_LENGTH + 1}..65535")
        self._layer = layer
        self._mtu = mtu
        self._datagrams: list[Lease] = []
        self._lease: Lease | None = None
        self._pos = 0

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def remaining(self) -> int:
        """Bytes left in the current datagram."""
        return self._mtu - self._pos

    @property
    def datagram_count(self) -> int:
        """Datagrams holding at least one record so far."""
        return len(self._datagrams) + (1 if self._pos else 0)

    def space(self, epoch: int, *, last: bool = False) -> int:
        """The largest payload one record of `epoch` can carry in this datagram (0 if none)."""
        layer = self._layer
        state = layer._write.get(epoch)
        if state is None:
            raise LocalProtocolError(f"no write keys for epoch {epoch}")
        remaining = self._mtu - self._pos
        keys = state.keys
        if keys is None:
            return max(0, min(remaining - PLAINTEXT_HEADER_LENGTH, MAX_PLAINTEXT))
        with_length = not (last and layer.omit_last_length)
        cid = len(layer.write_cid) if layer.write_cid else 0
        avail = remaining - unified_header_length(cid, layer.seq_bits, with_length)
        avail -= keys.tag_length
        if avail < MASK_SAMPLE - keys.tag_length:
            return 0
        if layer.padding > 1:
            avail -= avail % layer.padding
        return max(0, min(avail - 1, MAX_PLAINTEXT))

    def add(
        self, epoch: int, content_type: int, payload: BufferLike, *, last: bool = False
    ) -> RecordNumber | None:
        """Append one record; None if it does not fit the current datagram.

        `last=True` ends the datagram after this record (and omits its length
        field when the layer's `omit_last_length` is set). Raises
        MemoryBudgetExceeded when no datagram lease can be had, and
        LocalProtocolError for an unknown epoch, an oversized payload or
        exhausted sequence numbers (rekey first).
        """
        layer = self._layer
        state = layer._write.get(epoch)
        if state is None:
            raise LocalProtocolError(f"no write keys for epoch {epoch}")
        seq = state.next_seq
        if seq >= SEQUENCE_LIMIT:
            # §4.2.1: "abandon an association or rekey prior to allowing the
            # sequence number to wrap".
            raise LocalProtocolError(f"sequence numbers of epoch {epoch} are exhausted")
        lease = self._lease
        if lease is None:
            lease = self._lease = layer._acquire(self._mtu, layer._owner)
        pos = self._pos
        keys = state.keys
        if keys is None:
            plen = memoryview(payload).nbytes
            if plen > MAX_PLAINTEXT:
                raise LocalProtocolError(f"payload of {plen} bytes exceeds 2^14")
            total = PLAINTEXT_HEADER_LENGTH + plen
            if total > self._mtu - pos:
                return None
            encode_plaintext_header(lease, pos, content_type, 0, seq, plen)
            lease.write(pos + PLAINTEXT_HEADER_LENGTH, payload)
        else:
            try:
                total = keys.cipher.seal_into(
                    lease,
                    pos,
                    epoch,
                    seq,
                    layer.seq_bits,
                    layer.write_cid,
                    not (last and layer.omit_last_length),
                    content_type,
                    payload,
                    layer.padding,
                )
            except EncodeError as exc:
                raise LocalProtocolError(str(exc)) from None
            if total < 0:
                return None
            state.protected += 1
        state.next_seq = seq + 1
        self._pos = pos + total
        layer.records_sent += 1
        if last:
            self.new_datagram()
        return RecordNumber(epoch, seq)

    def new_datagram(self) -> None:
        """Close the current datagram (if it holds anything); later records go to a new one."""
        lease = self._lease
        if lease is None:
            return
        self._lease = None
        if self._pos:
            lease.length = self._pos
            self._datagrams.append(lease)
            self._pos = 0
        else:
            lease.release()

    def finish(self) -> list[Lease]:
        """The datagrams built so far; the caller sends and releases each."""
        self.new_datagram()
        out = self._datagrams
        self._datagrams = []
        return out

    def abort(self) -> None:
        """Release everything this writer holds without handing it over."""
        for lease in self.finish():
            lease.release()

    def __enter__(self) -> DatagramWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # Datagrams not taken with finish() are released.
        self.abort()
