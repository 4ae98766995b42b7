"""First ClientHellos that arrive in fragments, held by the gate until whole (RFC 9147 §5.1).

The one state the gate keeps for a stranger: post-quantum key shares make a first
ClientHello larger than one datagram. Its fragments are assembled in pooled chunks taken
only for the bytes that arrived (never sized by the length claimed), charged to a
per-source and a global budget, and dropped after a short timeout. When the gate is full, a
new partial ClientHello makes room by evicting one from the host that holds the most, the
one that went longest without a new fragment first: a flood of spoofed first fragments then
displaces its own partials, not a client whose fragments are arriving. Every refusal,
expiry and eviction is counted.

Functions of `HelloGate` (gate.py binds them; it holds the state they use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._fast import MemoryBudgetExceeded, parse_header_untrusted
from ..record import ContentType
from . import messages as msgs
from .constants import HandshakeType
from .fragments import REASSEMBLY_CHUNK, FragmentStore, pull_handshake_fragments_untrusted

if TYPE_CHECKING:
    from .gate import HelloGate

# A partial ClientHello that got a second fragment within this many seconds is a client
# making progress: when it is its host's only one, eviction passes it by.
PROGRESS_WINDOW = 1.0


@dataclass
class PartialHello:
    store: FragmentStore
    length: int
    msg_seq: int
    started: float
    last: float  # when a fragment last brought new bytes
    fragments: int = 0  # fragments that brought new bytes
    record_seq: int = 0  # the highest among the records of the fragments so far


def host(addr: Any) -> Any:
    """The host part of an address (several ports of one host are one source)."""
    return addr[0] if isinstance(addr, tuple) and addr else addr


def next_expiry(gate: HelloGate) -> float | None:
    """When the oldest partial ClientHello times out (None when none is held)."""
    if not gate._partials:
        return None
    return min(p.started for _, p in gate._partials.values()) + gate.timeout


def expire(gate: HelloGate, now: float) -> None:
    """Drop partial ClientHellos older than the timeout."""
    # The deadline as next_expiry computes it: "now - started >= timeout" can miss the
    # deadline it gave by a rounding, and a timer loop would fire at it for ever.
    timeout = gate.timeout
    for addr in [a for a, (_, p) in gate._partials.items() if now >= p.started + timeout]:
        discard(gate, addr)
        gate.counters["partials_expired"] += 1


def client_hello_fragments(
    gate: HelloGate, data: Any
) -> list[tuple[msgs.HandshakeHeader, bytes, int]]:
    """(header, body, record sequence number) of each ClientHello fragment."""
    view = memoryview(data)
    out: list[tuple[msgs.HandshakeHeader, bytes, int]] = []
    offset = 0
    while offset < len(view):
        first, epoch, seq, hl, length = parse_header_untrusted(view, offset, 0)
        if first >= 0x20 and out:
            break  # protected records after a ClientHello: 0-RTT data, for the connection
        if first != ContentType.handshake or epoch != 0:
            return []  # only plaintext handshake records may come from strangers
        record = view[offset + hl : offset + hl + length]
        for header, body in pull_handshake_fragments_untrusted(record):
            if header.msg_type != HandshakeType.client_hello or header.length > gate.max_hello:
                return []
            out.append((header, bytes(body), seq))
        offset += hl + length
    return out


def assemble(
    gate: HelloGate,
    addr: Any,
    header: msgs.HandshakeHeader,
    body: bytes,
    now: float,
    record_seq: int,
) -> tuple[bytes, int] | None:
    """(the whole ClientHello, the highest record number of its fragments) once
    complete."""
    if header.fragment_offset == 0 and header.fragment_length == header.length:
        discard(gate, addr)
        return body, record_seq
    partials = gate._partials
    entry = partials.get(addr)
    if entry is not None and (
        entry[1].msg_seq != header.message_seq or entry[1].length != header.length
    ):
        discard(gate, addr)  # a new attempt replaces the old one
        entry = None
    new = entry is None
    if entry is None:
        if len(partials) >= gate.max_sources and not evict(gate, addr, now):
            gate.counters["partials_refused"] += 1
            return None
        source = gate.pools.owner("source", addr, gate.per_source_bytes, gate.owner)
        store = FragmentStore(gate.pools, source, header.length, 64)
        entry = (source, PartialHello(store, header.length, header.message_seq, now, now))
        partials[addr] = entry
        gate._hosts[host(addr)] = gate._hosts.get(host(addr), 0) + 1
    source, partial = entry
    partial.record_seq = max(partial.record_seq, record_seq)
    result = write(gate, addr, partial, header.fragment_offset, body, now)
    if result is None:
        gate.counters["partials_refused"] += 1
        if partial.store.coverage.covered == 0:
            discard(gate, addr)
        return None
    if result < 0:
        gate.counters["fragment_mismatch"] += 1
        discard(gate, addr)
        return None
    if new:
        gate.counters["partials_started"] += 1
    if result > 0:
        partial.fragments += 1
        partial.last = now
        # Least recently progressed first: move to the end.
        del partials[addr]
        partials[addr] = entry
    if not partial.store.complete:
        return None
    whole = partial.store.tobytes()
    discard(gate, addr)
    return whole, partial.record_seq


def write(
    gate: HelloGate, addr: Any, partial: PartialHello, offset: int, body: bytes, now: float
) -> int | None:
    """Merge a fragment; None when the memory for it cannot be had."""
    for _ in range(4):
        try:
            return partial.store.write_untrusted(offset, body)
        except MemoryBudgetExceeded:
            # Past the source's own budget, or the process's: refused. Past the
            # gate's total: make room at the expense of the biggest holder.
            need = -(-len(body) // REASSEMBLY_CHUNK) * REASSEMBLY_CHUNK + REASSEMBLY_CHUNK
            limit = gate.owner.limit
            if limit < 0 or gate.owner.in_use + need <= limit or not evict(gate, addr, now):
                return None
    return None


def evict(gate: HelloGate, keep: Any, now: float) -> bool:
    """Drop one partial ClientHello (never `keep`'s) to make room; False if none may go.

    The victim comes from the host holding the most partials; among those, the one
    longest without a new fragment, preferring one that got a single fragment. The
    only partial of a host whose fragments are arriving (a second one within
    PROGRESS_WINDOW) is never the victim: a flood of spoofed first fragments displaces
    its own partials, not a client in the middle of sending its ClientHello.
    """
    hosts = gate._hosts
    most = max(hosts.values()) if len(hosts) < len(gate._partials) else 1
    victim = fallback = None
    for addr, (_, partial) in gate._partials.items():  # least recently progressed first
        if addr == keep:
            continue
        count = hosts[host(addr)]
        if most > 1 and count < most:
            continue
        if partial.fragments <= 1:
            victim = addr
            break
        if fallback is None and (count > 1 or now - partial.last >= PROGRESS_WINDOW):
            fallback = addr
    victim = victim if victim is not None else fallback
    if victim is None:
        return False
    discard(gate, victim)
    gate.counters["partials_evicted"] += 1
    return True


def discard(gate: HelloGate, addr: Any) -> None:
    """Drop the partial ClientHello of `addr`, if any, and release its memory."""
    entry = gate._partials.pop(addr, None)
    if entry is not None:
        source, partial = entry
        partial.store.release()
        gate.pools.release_owner(source)
        hosts = gate._hosts
        name = host(addr)
        if hosts[name] == 1:
            del hosts[name]
        else:
            hosts[name] -= 1
