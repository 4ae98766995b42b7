"""A record layer's read and write epochs: installation, retirement (RFC 9147 §4.2.1), the
AEAD limits of their keys (§4.5.3), and letting an idle connection's ciphers go.

Functions of `RecordLayer` (layer.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._fast import ReadEpoch, RecordCipher, WriteEpoch
from ..alerts import LocalProtocolError
from ..crypto.suites import CipherSuite
from .header import SEQUENCE_LIMIT
from .protection import CONFIDENTIALITY_LIMITS, INTEGRITY_LIMITS, record_cipher

if TYPE_CHECKING:
    from .layer import RecordLayer

DEFAULT_RETIRE_AFTER = 120.0  # seconds: TCP's MSL (RFC 9147 §4.2.1)
# continue_plaintext_after() follows a peer's epoch-0 numbers only below this, leaving room
# for far more epoch-0 records (hellos, retransmissions, alerts) than a handshake sends.
PLAINTEXT_FOLLOW_LIMIT = SEQUENCE_LIMIT - (1 << 32)

# -- write epochs -------------------------------------------------------------


def install_write_epoch(
    layer: RecordLayer, epoch: int, suite: CipherSuite, traffic_secret: bytes
) -> None:
    """Protect records of `epoch` with keys from `traffic_secret` from now on."""
    if layer.closed:
        layer._check_open()
    if not 1 <= epoch < SEQUENCE_LIMIT:
        raise LocalProtocolError("epoch must be between 1 and 2^48-1")
    current = layer._write_now.epoch
    if epoch <= current:
        raise LocalProtocolError(f"write epoch {epoch} is not newer than {current}")
    limit = layer._options.confidentiality_limit or CONFIDENTIALITY_LIMITS[suite]
    state = WriteEpoch(epoch, record_cipher(suite, traffic_secret), limit)
    layer._write_older = (*layer._write_older, layer._write_now)
    layer._write_now = state


def retire_write_epoch(layer: RecordLayer, epoch: int) -> None:
    """Forget an older write epoch (once nothing needs retransmitting in it)."""
    if epoch == layer._write_now.epoch:
        raise LocalProtocolError("cannot retire the current write epoch")
    state = write_state(layer, epoch)
    if state is not None:
        layer._write_older = tuple(s for s in layer._write_older if s is not state)
        layer._retired_sent += state.next_seq


def write_epochs(layer: RecordLayer) -> list[int]:
    return [*(s.epoch for s in layer._write_older), layer._write_now.epoch]


def write_states(layer: RecordLayer) -> tuple[WriteEpoch, ...]:
    """The write epochs' states, oldest first."""
    return (*layer._write_older, layer._write_now)


def write_state(layer: RecordLayer, epoch: int) -> WriteEpoch | None:
    for state in write_states(layer):
        if state.epoch == epoch:
            return state
    return None


# -- read epochs --------------------------------------------------------------


def install_read_epoch(
    layer: RecordLayer, epoch: int, suite: CipherSuite, traffic_secret: bytes, now: float
) -> None:
    """Accept records of `epoch`; older epochs retire `retire_after` s after it is used."""
    if layer.closed:
        layer._check_open()
    expire(layer, now)
    if not 1 <= epoch < SEQUENCE_LIMIT:
        raise LocalProtocolError("epoch must be between 1 and 2^48-1")
    newest = layer._read_newest
    if newest is not None and epoch <= newest.epoch:
        raise LocalProtocolError(f"read epoch {epoch} is not newer than the installed ones")
    for clash in read_states(layer):
        if clash.epoch & 3 == epoch & 3:
            # Only two epoch bits are on the wire: at most four epochs can be live.
            retire(layer, clash)
    limit = layer._options.integrity_limit or INTEGRITY_LIMITS[suite]
    cipher = record_cipher(suite, traffic_secret)
    state = ReadEpoch(epoch, cipher, layer._options.replay_window, limit)
    if layer._read_newest is not None:
        layer._read_older = (*layer._read_older, layer._read_newest)
    layer._read_newest = state
    layer._retired_bits &= ~(1 << (epoch & 3))


def read_states(layer: RecordLayer) -> tuple[ReadEpoch, ...]:
    """The live read epochs' states, oldest first."""
    newest = layer._read_newest
    return layer._read_older if newest is None else (*layer._read_older, newest)


def read_state(layer: RecordLayer, epoch: int) -> ReadEpoch | None:
    for state in read_states(layer):
        if state.epoch == epoch:
            return state
    return None


def read_epochs(layer: RecordLayer) -> list[int]:
    """Epochs whose records are accepted now (0 while plaintext is readable)."""
    newest = layer._read_newest
    live = [s.epoch for s in layer._read_older] if layer._read_older else []
    if newest is not None:
        live.append(newest.epoch)
    return [0, *live] if layer._plaintext_window is not None else live


def plaintext_taken(layer: RecordLayer, seq: int) -> None:
    """Epoch 0's record `seq` was used (a hello buffered): copies of it are replays now.
    Only the connection knows: nothing authenticates a DTLSPlaintext record, and one it
    dropped must not move the window (a forged number far ahead would push every
    genuine record out of it)."""
    window = layer._plaintext_window
    if window is not None:
        window.update(seq)


# -- retirement (§4.2.1) ------------------------------------------------------


def retire_read_epoch(layer: RecordLayer, epoch: int) -> None:
    """Stop accepting records of `epoch` now."""
    if epoch == 0:
        layer._plaintext_window = None
        return
    state = read_state(layer, epoch)
    if state is not None:
        retire(layer, state)


def retire(layer: RecordLayer, state: ReadEpoch) -> None:
    older = layer._read_older
    if state is layer._read_newest:
        layer._read_newest, layer._read_older = (older[-1], older[:-1]) if older else (None, ())
    else:
        layer._read_older = tuple(s for s in older if s is not state)
    layer._retired_bits |= 1 << (state.epoch & 3)


def expire(layer: RecordLayer, now: float) -> None:
    """Retire older read epochs whose grace period has passed; drop stale pending records."""
    times = layer._pending_times
    if times and now - times[0] > layer._options.pending_lifetime:
        layer._drop_stale_pending(now)
    if layer._plaintext_retire_at is not None and now >= layer._plaintext_retire_at:
        layer._plaintext_window = None
        layer._plaintext_retire_at = None
    for state in layer._read_older:
        if state.retire_at is not None and now >= state.retire_at:
            retire(layer, state)
    # Last: retiring the newest makes the newest of the others the newest.
    newest = layer._read_newest
    if newest is not None and newest.retire_at is not None and now >= newest.retire_at:
        retire(layer, newest)


def used(layer: RecordLayer, epoch: int, now: float) -> None:
    """A record of `epoch`, newer than any before, was deprotected: older epochs retire."""
    # §4.2.1: keys of earlier epochs MAY be kept "for up to the default MSL".
    layer._newest_used = epoch
    deadline = now + layer._options.retire_after
    if layer._plaintext_window is not None and layer._plaintext_retire_at is None:
        layer._plaintext_retire_at = deadline
    for state in read_states(layer):
        if state.epoch < epoch and state.retire_at is None:
            state.retire_at = deadline
            # Only late records still need it: its OpenSSL objects go now and are
            # built again if one comes (the key bytes stay until it retires).
            state.cipher.release()


# -- limits (§4.5.3) and sequence numbers -------------------------------------


def exhausted_read_epochs(layer: RecordLayer) -> list[int]:
    """Live read epochs whose key reached its integrity limit (RFC 9147 §4.5.3)."""
    return [s.epoch for s in read_states(layer) if s.failures >= s.limit]


def integrity_limit_of(layer: RecordLayer, epoch: int) -> int:
    """The integrity limit of `epoch`'s read key (0: no such live epoch)."""
    state = read_state(layer, epoch)
    return 0 if state is None else state.limit


def auth_failures(layer: RecordLayer, epoch: int) -> int:
    state = read_state(layer, epoch)
    return 0 if state is None else state.failures


def records_protected(layer: RecordLayer, epoch: int) -> int:
    state = write_state(layer, epoch)
    return 0 if state is None else state.protected


def next_sequence_number(layer: RecordLayer, epoch: int) -> int:
    state = write_state(layer, epoch)
    if state is None:
        raise KeyError(epoch)
    return state.next_seq


def continue_plaintext_after(layer: RecordLayer, seq: int) -> None:
    """Number our next epoch-0 record after `seq`, a record number the peer used
    (a server after a ClientHello's record: see Connection._handle_handshake_record).

    Numbers only move forward; one so large that our own few epoch-0 records could
    run out of numbers after it is ignored (only a broken or hostile peer sends it).
    """
    state = write_state(layer, 0)
    if state is not None and state.next_seq <= seq < PLAINTEXT_FOLLOW_LIMIT:
        state.next_seq = seq + 1


# -- idle connections ---------------------------------------------------------


def release_ciphers(layer: RecordLayer) -> int:
    """Let every epoch's AEAD and mask objects go (an idle connection's largest part);
    each is built again from its key bytes when the epoch next protects or opens a
    record. Returns how many were let go."""
    released = 0
    for cipher in ciphers(layer):
        if cipher.built:
            cipher.release()
            released += 1
    return released


def ciphers(layer: RecordLayer) -> list[RecordCipher]:
    """Every epoch's cipher, write epochs' first."""
    out = [s.cipher for s in write_states(layer) if s.cipher is not None]
    return out + [s.cipher for s in read_states(layer)]
