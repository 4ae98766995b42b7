"""The compiled hot paths of dtls13 (Cython), one extension module per subject.

- `memory`: slab pools, owners (budgets), leases, the pool core
- `buffer`: the wire-format `Buffer` reader/writer
- `record`: record header codecs, record numbers, the replay window, mask and nonce helpers
- `protection`: `RecordCipher`, one epoch's AEAD, nonces and record-number masks
- `keys`: `EpochKeyMaker`, a traffic secret to its `RecordCipher` in one call
- `datagram`: epochs' send/receive state, `DatagramWriter`, `read_datagram_untrusted`
- `handshake`: fragment coverage, the first-ClientHello scan, HMAC, the transcript hash
- `errors`: the exceptions they raise

The modules share C-level declarations through their .pxd files (calls between them stay
in C); everything public is re-exported here, so callers import from `dtls13._fast`.
"""

from __future__ import annotations

from .buffer import Buffer
from .datagram import (
    DatagramWriter,
    InboundRecord,
    ReadEpoch,
    WriteEpoch,
    open_app_datagram_untrusted,
    read_datagram_untrusted,
    seal_app_datagram,
)
from .errors import DecodeError, EncodeError, LeaseReleasedError, MemoryBudgetExceeded
from .handshake import (
    FRAGMENT_MISMATCH,
    FRAGMENT_TOO_SCATTERED,
    FragmentCoverage,
    handshake_fragment,
    hash_copy_digest,
    hmac_digest,
    scan_client_hello,
    transcript_add,
)
from .keys import EpochKeyMaker
from .memory import Lease, Owner, OwnerSet, PoolCore, SlabPool, live_pools
from .protection import (
    OPEN_AUTH_FAILED,
    OPEN_BAD_CONTENT_TYPE,
    OPEN_REPLAY,
    RecordCipher,
    secret_refcount,
    wipe_secret,
)
from .record import (
    RecordNumber,
    ReplayWindow,
    chacha20_mask_into,
    encode_plaintext_header,
    encode_unified_header,
    inner_content_type,
    make_nonce_into,
    parse_header_untrusted,
    reconstruct_sequence,
    unified_header_length,
    unmask_header_into,
    xor_into,
    zero_fill,
)

__all__ = [
    "FRAGMENT_MISMATCH",
    "FRAGMENT_TOO_SCATTERED",
    "OPEN_AUTH_FAILED",
    "OPEN_BAD_CONTENT_TYPE",
    "OPEN_REPLAY",
    "Buffer",
    "DatagramWriter",
    "DecodeError",
    "EncodeError",
    "EpochKeyMaker",
    "FragmentCoverage",
    "InboundRecord",
    "Lease",
    "LeaseReleasedError",
    "MemoryBudgetExceeded",
    "Owner",
    "OwnerSet",
    "PoolCore",
    "ReadEpoch",
    "RecordCipher",
    "RecordNumber",
    "ReplayWindow",
    "SlabPool",
    "WriteEpoch",
    "chacha20_mask_into",
    "encode_plaintext_header",
    "encode_unified_header",
    "handshake_fragment",
    "hash_copy_digest",
    "hmac_digest",
    "inner_content_type",
    "live_pools",
    "make_nonce_into",
    "open_app_datagram_untrusted",
    "parse_header_untrusted",
    "read_datagram_untrusted",
    "reconstruct_sequence",
    "scan_client_hello",
    "seal_app_datagram",
    "secret_refcount",
    "transcript_add",
    "unified_header_length",
    "unmask_header_into",
    "wipe_secret",
    "xor_into",
    "zero_fill",
]
