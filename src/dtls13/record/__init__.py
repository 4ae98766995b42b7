"""DTLS 1.3 record layer (RFC 9147 §4, §7).

API for the connection code::

    from dtls13.record import RecordLayer, ContentType, RecordNumber, pull_ack, push_ack

    layer = RecordLayer(pools, owner, replay_window=256, padding=0, seq_bits=16,
                        omit_last_length=False, write_cid=None, read_cid_length=0,
                        retire_after=120.0, max_pending_bytes=65536,
                        pending_lifetime=10.0,
                        confidentiality_limit=None, integrity_limit=None)
    layer.install_write_epoch(epoch, suite, traffic_secret)      # epochs 1, 2, 3, 4+...
    layer.install_read_epoch(epoch, suite, traffic_secret, now)
    layer.write_epoch                      # newest write epoch (0 = plaintext at start)
    layer.retire_write_epoch(e); layer.retire_read_epoch(e); layer.expire(now)

    w = layer.datagram_writer(mtu)         # or `with layer.datagram_writer(mtu) as w:`
    w.space(epoch, last=False) -> int      # largest payload of one record that still fits
                                           # (-1: not even an empty record fits)
    w.add(epoch, content_type, payload, last=False) -> RecordNumber | None   # None: no room
    w.new_datagram()                       # later records start a new datagram
    w.finish() -> list[Lease]              # send len(lease) bytes of each, then release it
    w.abort()                              # release what was not handed over

    for rec in layer.receive_datagram_untrusted(data, now):   # never raises
        rec.epoch, rec.sequence_number, rec.content_type, rec.payload  # memoryview (pooled)
        rec.record_number; rec.tobytes(); rec.release()                # release once
    layer.receive_pending(now)             # after install_read_epoch: records that came
                                           # ahead of their keys (e.g. with ServerHello)

    layer.drops             # {reason: count}; reasons in DROP_REASONS (read-only zeros
                            # shared by all layers until the first drop)
    layer.stats             # records, datagrams, drops, epochs, auth failures, pending
    layer.key_update_due    # confidentiality limit of the current write key reached
    layer.integrity_limit_reached   # a live read key failed authentication too often
    layer.record_overhead(epoch)    # header + content type + tag bytes, before padding
    layer.close()

    pull_ack(buf) -> list[RecordNumber]; push_ack(buf, numbers)      # ACK body (§7)

Epoch 0 is plaintext (DTLSPlaintext, no replay window: it is unauthenticated).
An older read epoch, plaintext included, stays readable for `retire_after`
seconds once a newer epoch deprotected a record. Writers send 16-bit sequence
numbers with length fields (`seq_bits=8` and `omit_last_length` for tests and
peers that want them); receivers accept every header form. `RecordNumber`,
`InboundRecord` and `DatagramWriter` are compiled (`dtls13._fast`).
"""

from __future__ import annotations

from .._fast import DatagramWriter, InboundRecord
from .ack import pull_ack, push_ack
from .header import ContentType, RecordNumber, epoch_from_bits
from .layer import DROP_REASONS, RecordLayer
from .protection import CONFIDENTIALITY_LIMITS, INTEGRITY_LIMITS, EpochKeys, derive_record_keys

__all__ = [
    "CONFIDENTIALITY_LIMITS",
    "DROP_REASONS",
    "INTEGRITY_LIMITS",
    "ContentType",
    "DatagramWriter",
    "EpochKeys",
    "InboundRecord",
    "RecordLayer",
    "RecordNumber",
    "derive_record_keys",
    "epoch_from_bits",
    "pull_ack",
    "push_ack",
]
