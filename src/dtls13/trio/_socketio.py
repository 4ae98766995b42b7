"""The endpoint's socket loop: receive batches, sends, and the background tasks.

Where the platform has them (Linux), one wake-up of the receive task takes up to
`RECV_BATCH` datagrams with ``recvmmsg`` into pooled leases (``dtls13._io``), and what the
endpoint sends leaves with one ``sendmmsg`` per batch, runs of equal-size datagrams to one
address as one UDP GSO send. Elsewhere, or with `BATCH_IO` False, the same loops use
non-blocking ``recvfrom_into`` / ``sendto`` one datagram at a time. Both work on a stdlib
socket over a ``dup`` of the trio socket's descriptor (the trio socket stays the one trio
waits on).
"""

from __future__ import annotations

import _socket
import errno
import socket as stdlib_socket
import weakref
from typing import TYPE_CHECKING, Any

import trio

from .. import _io
from ..memory import DATAGRAM_SLOT, Lease, MemoryBudgetExceeded
from ..udp import address_key
from ..udp import describe_address as describe

if TYPE_CHECKING:
    from .endpoint import DTLSEndpoint

RECV_BATCH = 64  # datagrams the receive task takes per wake-up before it yields
# Datagrams per recvmmsg: a listening socket hears many peers; a connected one (a client's)
# hears one, whose bursts a few calls of 8 take as well, with 1/8 of the bookkeeping.
RECV_CALL = 64
RECV_CALL_CONNECTED = 8
# Areas for long datagrams' tails (each max_datagram - slot bytes of address space, backed
# only once touched), shared by the slots of a receive call; after a call that brought a
# long datagram, calls take no more datagrams than there are areas, so none is lost. The
# smallest call (two leases) never loses one either.
OVERFLOW_SLOTS = 4
OVERFLOW_SLOTS_CONNECTED = 2
SEND_BATCH = 64  # datagrams per sendmmsg
# Queued datagrams that leave at once instead of at the end of the scheduler pass: the peer
# works on the first part of a burst while the rest is being made (with both sides holding
# whole bursts, two processes take turns on two cores instead of overlapping).
FLUSH_EARLY = 16
# Use recvmmsg/sendmmsg where the build has them; tests set this False (before making an
# endpoint) to run the plain one-datagram-per-call path.
BATCH_IO = _io.HAVE_MMSG
_CLOSED_ERRNOS = (errno.EBADF, errno.ENOTSOCK)
_RECVMSG = hasattr(stdlib_socket.socket, "recvmsg_into")
_MSG_TRUNC = getattr(stdlib_socket, "MSG_TRUNC", 0)
_FULL_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK)


# The C socket's own fields, as ints: socket.socket's properties of the same names make an
# enum on every read (two Python calls and an enum lookup).
socket_family = _socket.socket.family.__get__
socket_type = _socket.socket.type.__get__


def batch_socket(
    raw: stdlib_socket.socket, recv_size: int, connected: bool
) -> _io.BatchSocket | None:
    """recvmmsg/sendmmsg on `raw`'s descriptor, or None where not to be had."""
    family = socket_family(raw)
    if not BATCH_IO or family not in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6):
        return None
    slot = min(DATAGRAM_SLOT, recv_size)
    if connected:
        calls, overflow = RECV_CALL_CONNECTED, OVERFLOW_SLOTS_CONNECTED
    else:
        calls, overflow = RECV_CALL, OVERFLOW_SLOTS
    try:
        return _io.BatchSocket(
            raw.fileno(), family, calls, slot, recv_size, overflow_slots=overflow
        )
    except (OSError, MemoryError):
        return None


class Flusher(trio.abc.Instrument):
    """Sends what endpoints queued during a scheduler pass, one sendmmsg per endpoint, just
    before trio waits for I/O: a task that queued a datagram and yielded finds it sent when
    it resumes, and every task's datagrams of that pass share the system call."""

    _run_var: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("dtls13_flusher")

    def __init__(self) -> None:
        self.pending: dict[DTLSEndpoint, None] = {}  # insertion-ordered set
        self.token = trio.lowlevel.current_trio_token()
        self.woke = False  # a flush made a task runnable (set by the endpoints)

    @classmethod
    def for_this_run(cls) -> Flusher:
        try:
            return cls._run_var.get()
        except LookupError:
            flusher = cls()
            trio.lowlevel.add_instrument(flusher)
            cls._run_var.set(flusher)
            return flusher

    def before_io_wait(self, timeout: float) -> None:
        if not self.pending:
            return
        endpoints = list(self.pending)
        self.pending.clear()
        self.woke = False  # set by wake-ups outside this hook: trio saw those tasks already
        for ep in endpoints:
            if ep._closed or ep._holding or not ep._outq:
                continue
            try:
                if ep._flush():
                    ep._wake_sender()
            except Exception as exc:  # an instrument that raises is removed by trio
                ep._internal_error(exc)
        # trio chose this I/O wait's timeout before calling us: a task the sends woke (one
        # waiting for its datagrams to leave, e.g. aclose) would sleep until the next
        # deadline. A no-op callback wakes the I/O wait at once.
        if self.woke and timeout > 0:
            self.token.run_sync_soon(_nothing)


def _nothing() -> None:
    pass


# -- receiving ------------------------------------------------------------------------


def receive_batch(ep: DTLSEndpoint) -> int | None:
    """Take up to RECV_BATCH datagrams off the socket and through the core.

    Returns how many were taken (``ep._drained`` tells whether the socket ran dry; else
    the batch filled up or a channel's receive queue did, and its reader runs before
    more is taken); None when the memory budget refused a buffer."""
    batch = ep._batch
    if batch is None:
        return _receive_plain(ep)
    pools = ep.pools
    counters = ep.counters
    slot = batch.slot_size
    cap = ep._recv_cap
    # Leases for one more datagram than the last wake-up's fullest call brought (two for a
    # ping-pong: one call takes its datagram and finds the socket dry), doubled while calls
    # come back full; the core copies out what it keeps, so the same leases serve every
    # recvmmsg of this wake-up.
    leases: list[Lease] = []
    try:
        for _ in range(min(ep._recv_want, cap)):
            leases.append(pools.acquire(slot))
    except MemoryBudgetExceeded:
        if not leases:
            counters["dropped_memory_budget"] += 1
            return None
    taken = 0
    peak = 0
    ep._drained = False
    try:
        while taken < RECV_BATCH and not ep._closed:
            use = min(len(leases), RECV_BATCH - taken)
            if ep._recv_long:  # long datagrams coming: as many as there are overflow areas
                use = min(use, batch.overflow_slots)
            try:
                got = batch.recv(leases if use == len(leases) else leases[:use])
            except ConnectionRefusedError:
                ep._port_unreachable()
                taken += 1
                continue
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS or ep._raw.fileno() < 0:
                    break
                counters["receive_errors"] += 1
                taken += 1
                continue
            if not got:
                ep._drained = True
                break
            peak = max(peak, len(got))
            long_seen = False
            for i, (n, addr) in enumerate(got):
                taken += 1
                if addr is None:  # an address family we do not speak
                    counters["receive_errors"] += 1
                elif n >= slot and batch.lost(i):  # cut, or its tail overwritten
                    long_seen = True
                    counters["dropped_long_datagrams"] += 1
                elif n > slot:
                    long_seen = True
                    _deliver_long(ep, batch, i, leases[i], n, addr)
                else:
                    lease = leases[i]
                    lease.length = n
                    try:
                        with memoryview(lease) as view:
                            ep._on_datagram(view, addr)
                    except Exception as exc:  # the core never raises for input: a bug
                        ep._internal_error(exc)
                    lease.length = slot
            ep._recv_long = long_seen
            if ep._backlogged:  # a reader to let catch up (what recvmmsg took went in)
                ep._backlogged = False
                break
            if len(got) < use:
                ep._drained = True
                break
            if len(leases) < cap and use == len(leases):  # a full call: more may be waiting
                try:
                    for _ in range(min(len(leases), cap - len(leases))):
                        leases.append(pools.acquire(slot))
                except MemoryBudgetExceeded:
                    pass
    finally:
        for lease in leases:
            lease.release()
    ep._recv_want = max(2, peak + 1)
    return taken


def _deliver_long(
    ep: DTLSEndpoint, batch: _io.BatchSocket, i: int, lease: Lease, n: int, addr: Any
) -> None:
    """A datagram longer than a receive slot: its tail is in the batch's overflow area."""
    try:
        big = ep.pools.acquire(n)
    except MemoryBudgetExceeded:
        ep.counters["dropped_memory_budget"] += 1
        return
    try:
        with memoryview(lease) as head:
            big.write(0, head)
        batch.copy_overflow(i, big)
        with memoryview(big) as view:
            ep._on_datagram(view, addr)
    except Exception as exc:
        ep._internal_error(exc)
    finally:
        big.release()


def _receive_plain(ep: DTLSEndpoint) -> int | None:
    raw = ep._raw
    counters = ep.counters
    size = ep._recv_size
    # One buffer serves the whole batch: the core copies out what it keeps.
    try:
        lease = ep.pools.acquire(size)
    except MemoryBudgetExceeded:
        counters["dropped_memory_budget"] += 1
        return None
    buffers = (lease,)  # recvmsg_into's list of buffers: one, the same for every datagram
    taken = 0
    ep._drained = False
    try:
        while taken < RECV_BATCH and not ep._closed:
            lease.length = size
            try:
                if _RECVMSG:
                    n, _, flags, addr = raw.recvmsg_into(buffers)
                else:  # pragma: no cover - Windows: no recvmsg, so no way to tell
                    (n, addr), flags = raw.recvfrom_into(lease), 0
            except BlockingIOError:
                ep._drained = True
                break
            except ConnectionRefusedError:
                ep._port_unreachable()
                taken += 1
                continue
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS or raw.fileno() < 0:
                    break
                counters["receive_errors"] += 1
                taken += 1
                continue
            taken += 1
            if flags & _MSG_TRUNC:
                # The kernel cut it to our buffer: never hand a cut datagram to the core.
                counters["dropped_long_datagrams"] += 1
                continue
            lease.length = n
            try:
                with memoryview(lease) as view:
                    ep._on_datagram(view, addr)
            except Exception as exc:  # the core never raises for input; a bug must not stop us
                ep._internal_error(exc)
            if ep._backlogged:
                ep._backlogged = False
                break
    finally:
        if not lease.released:
            lease.release()
    return taken


# -- sending --------------------------------------------------------------------------


def flush(ep: DTLSEndpoint) -> bool:
    """Send queued datagrams in order while the socket takes them; True if it is full."""
    outq = ep._outq
    batch = ep._batch
    connected = ep._peer is not None
    counters = ep.counters
    refused = False
    sent = 0
    full = False
    items: list[tuple[Lease, Any]] = []
    while outq:
        if batch is None:
            item = outq[0]
            outcome = _send_one(ep, item[0], item[1], connected) if not item[0].released else 0
            if outcome == _FULL:
                full = True
                break
            if outcome == _CLOSED:
                break
            refused = refused or outcome == _REFUSED
            outq.popleft()
            sent += 1
            continue
        items.clear()
        while outq and len(items) < SEND_BATCH:
            item = outq.popleft()
            if item[0].released:  # its connection's memory was reclaimed
                sent += 1
            else:
                items.append(item)
        if not items:
            continue
        n, err = batch.send(items, connected)
        for k in range(n):
            items[k][0].release()
        counters["datagrams_out"] += n
        sent += n
        if n == len(items) and not err:
            continue
        rest = items[n:]
        if err in _FULL_ERRNOS:
            outq.extendleft(reversed(rest))
            full = True
            break
        if err:
            lease, addr = rest[0]
            if err == _io.NEEDS_SENDTO:  # an address only the stdlib call resolves
                outcome = _send_one(ep, lease, addr, connected)
            elif err == errno.ECONNREFUSED:
                outcome = _REFUSED
                lease.release()
            elif ep._closed or ep._raw.fileno() < 0:
                outcome = _CLOSED
            else:
                counters["send_errors"] += 1
                outcome = _SENT
                lease.release()
            if outcome in (_FULL, _CLOSED):
                outq.extendleft(reversed(rest))
                full = outcome == _FULL
                break
            refused = refused or outcome == _REFUSED
            sent += 1
            rest = rest[1:]
        outq.extendleft(reversed(rest))
    if sent:
        ep._on_sent(sent)
    if refused:
        ep._port_unreachable()
    return full


_SENT, _FULL, _REFUSED, _CLOSED = 0, 1, 2, 3


def _send_one(ep: DTLSEndpoint, lease: Lease, addr: Any, connected: bool) -> int:
    """One datagram with a plain send/sendto; its lease is released unless it stays queued
    (_FULL, _CLOSED)."""
    raw = ep._raw
    try:
        if connected:
            raw.send(lease)  # sendto with an address is EISCONN on BSDs
        else:
            raw.sendto(lease, addr)
        ep.counters["datagrams_out"] += 1
        outcome = _SENT
    except BlockingIOError:
        return _FULL
    except ConnectionRefusedError:
        outcome = _REFUSED  # acted on by the caller, once it is done with the queue
    except OSError:
        if ep._closed or raw.fileno() < 0:
            return _CLOSED
        ep.counters["send_errors"] += 1
        outcome = _SENT
    lease.release()
    return outcome


# A client's handshake ends with PeerUnreachable when ICMP port unreachable came back for
# tries at least this far apart (the first flight and its retransmissions at 1 and 3 s).
UNREACHABLE_GRACE = 2.0


def port_unreachable(ep: DTLSEndpoint) -> None:
    """ICMP port unreachable from the connected peer. It ends a client's handshake only
    while nothing has come from the peer, and only once the port stayed closed across
    tries UNREACHABLE_GRACE apart (a server starting up a moment late is still met):
    an ICMP message is as easy to forge as any unauthenticated datagram, so it may
    stop a search, never a live association."""
    ep.counters["port_unreachable"] += 1
    channel = ep._clients.get(address_key(ep._peer)) if ep._peer is not None else None
    if channel is None or channel._handshake is not None or channel._conn.closed:
        return
    if channel._conn.stats["datagrams_in"]:
        return
    now = ep._now()
    if channel._unreachable_since is None:
        channel._unreachable_since = now
        return
    if now - channel._unreachable_since < UNREACHABLE_GRACE:
        return
    channel._unreachable = True
    if ep._flusher is not None:
        ep._flusher.woke = True  # the handshake's waiters learn it now
    channel._conn.abandon(
        f"no answer from {describe(ep._peer)}: nothing listens on that port (ICMP port unreachable)"
    )
    ep._after(channel)


# -- background tasks -----------------------------------------------------------------


async def receive_loop(ref: weakref.ReferenceType[DTLSEndpoint], sock: Any) -> None:
    # A new endpoint's socket is almost always empty: wait for it to be readable first (a
    # datagram already waiting makes it readable at once).
    ep = ref()
    if ep is None or ep._closed:
        return
    del ep
    taken: int | None = 0
    drained = True
    while True:
        try:
            if taken is None:  # memory budget: leave the datagrams in the kernel's queue
                await trio.sleep(0.01)
            elif drained:
                await trio.lowlevel.wait_readable(sock)
            else:  # a full batch, or a reader to let catch up: yield, then go on
                await trio.lowlevel.checkpoint()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        except OSError as exc:
            if exc.errno in _CLOSED_ERRNOS:
                return
            raise
        ep = ref()
        if ep is None or ep._closed:
            return
        taken = ep._receive_batch()
        drained = ep._drained
        if ep._closed:
            return
        del ep


async def send_loop(ref: weakref.ReferenceType[DTLSEndpoint], sock: Any) -> None:
    while True:
        ep = ref()
        if ep is None or ep._closed:
            return
        if not ep._outq:
            wakeup = ep._send_wakeup
            assert wakeup is not None
            if wakeup.is_set():
                wakeup = ep._send_wakeup = trio.Event()
            del ep
            await wakeup.wait()
            continue
        try:
            full = ep._flush()
        except Exception as exc:
            ep._internal_error(exc)
            full = False
        del ep
        try:
            if full:
                await trio.lowlevel.wait_writable(sock)
            else:
                await trio.lowlevel.checkpoint()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        except OSError as exc:
            if exc.errno in _CLOSED_ERRNOS:
                return
            raise
