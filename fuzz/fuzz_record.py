"""Harness: record parsing and unprotection (``RecordLayer.receive_datagram_untrusted``).

Input: one selector byte, then the datagram. The selector picks the cipher suite (low
three bits), the connection-ID form (bits 6-7: none, ours of 4 bytes, tentative, optional)
and whether epoch 4 (after a KeyUpdate) is installed too (bit 5). Read keys are installed
for epochs 1..3 (plus 4) from fixed secrets, so the seeds ``make_corpus.py`` writes with
the same secrets decrypt: plaintext and protected paths both run. Nothing may escape but
records, each released; the pools must be back to zero after every input.
"""

from __future__ import annotations

import fuzz_common

from dtls13.crypto.suites import CipherSuite
from dtls13.memory import PoolSet
from dtls13.record import ContentType, RecordLayer

SUITES = tuple(CipherSuite)
CID = b"\xc1\xd0\x00\x01"
POOLS = PoolSet()


def secret(suite: CipherSuite, epoch: int) -> bytes:
    """The fixed traffic secret of `epoch` (seeds are written with the same ones)."""
    length = 48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32
    return bytes((epoch * 17 + i) % 256 for i in range(length))


def reader(selector: int, pools: PoolSet) -> RecordLayer:
    suite = SUITES[(selector & 0x07) % len(SUITES)]
    form = selector >> 6
    layer = RecordLayer(pools, read_cid_length=len(CID) if form in (1, 3) else 0)
    if form == 2:
        layer.tentative_cid_length = len(CID)
    elif form == 3:
        layer.cid_optional = True
    for epoch in (1, 2, 3, 4) if selector & 0x20 else (1, 2, 3):
        layer.install_read_epoch(epoch, suite, secret(suite, epoch), 0.0)
    return layer


def one_input(data: bytes) -> None:
    if not data:
        return
    layer = reader(data[0], POOLS)
    try:
        records = layer.receive_datagram_untrusted(data[1:], 1.0)
        records += layer.receive_pending(1.0)
        for r in records:
            try:
                assert isinstance(r.content_type, ContentType), r.content_type
                assert 0 <= r.epoch <= 4, r.epoch
                r.tobytes()
            finally:
                r.release()
        # The same datagram again: every protected record is now a replay.
        for r in layer.receive_datagram_untrusted(data[1:], 2.0):
            r.release()
    finally:
        layer.close()
    fuzz_common.check_pools(POOLS, "record layer")


def main() -> None:
    fuzz_common.atheris_main(one_input)


if __name__ == "__main__":
    main()
