"""A trio endpoint's send queue: when the datagrams its core produces leave (at once when
nothing waits before them; at the end of the receive batch, timer run or scheduler pass that
produced them, with one sendmmsg; `FLUSH_EARLY` at a time in a long burst), the send task
that takes over while the socket buffer is full, and waiting for one's datagrams to leave.

Functions of `DTLSEndpoint` (endpoint.py binds them; it holds the state they use).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import trio

from ..memory import Lease
from ._socketio import send_loop

if TYPE_CHECKING:
    from .endpoint import DTLSEndpoint


def enqueue(ep: DTLSEndpoint, datagrams: list[tuple[Lease, Any]]) -> None:
    """Queue datagrams the core produced (released at once on a closed endpoint)."""
    if not datagrams:
        return
    if ep._closed:
        for lease, _ in datagrams:
            lease.release()
        return
    outq = ep._outq
    waiting = len(outq)
    outq.extend(datagrams)
    ep._queued += len(datagrams)
    # Nothing queued before these: send them now, or at the end of the receive batch,
    # timer run or scheduler pass (the flusher) that produced them. Queued behind others:
    # the send task, if it has them, keeps the order. Unless the send task has them,
    # FLUSH_EARLY waiting leave at once, so that the peer starts on a burst before its end.
    queued = waiting + len(datagrams)
    if ep._holding:
        if queued >= ep._flush_early and not ep._held_behind and ep._flush():
            ep._held_behind = len(ep._outq)  # the socket is full: the send task's
            ep._wake_sender()
        return
    flusher = ep._flusher
    if waiting:
        if flusher is not None and queued >= ep._flush_early and ep in flusher.pending:
            del flusher.pending[ep]
            if ep._flush():
                ep._wake_sender()
        return
    if flusher is not None:
        flusher.pending[ep] = None
    elif ep._flush():
        ep._wake_sender()


def hold_sends(ep: DTLSEndpoint) -> bool:
    """Keep what the core produces queued until `_release_sends`: a receive batch or a
    timer run leaves with one sendmmsg. False if already holding (nested)."""
    if ep._holding:
        return False
    ep._holding = True
    ep._held_behind = len(ep._outq)
    return True


def release_sends(ep: DTLSEndpoint, held: bool) -> None:
    if not held:
        return
    ep._holding = False
    # Behind datagrams that were already waiting, the send task sends them in order.
    if ep._outq and not ep._held_behind and not ep._closed and ep._flush():
        ep._wake_sender()


def wake_sender(ep: DTLSEndpoint) -> None:
    # The send task only exists once the socket buffer was found full (rarely).
    if ep._sender_started:
        assert ep._send_wakeup is not None
        ep._send_wakeup.set()
    else:
        ep._sender_started = True
        ep._send_wakeup = trio.Event()
        trio.lowlevel.spawn_system_task(send_loop, weakref.ref(ep), ep.socket)


async def wait_sent(ep: DTLSEndpoint, target: int) -> None:
    """Backpressure: wait until the send task has sent the first `target` datagrams."""
    if ep._sent >= target or ep._closed:
        return
    lot = ep._progress
    if lot is None:
        lot = ep._progress = trio.lowlevel.ParkingLot()
    ep._progress_waiters += 1
    try:
        while ep._sent < target and not ep._closed:
            await lot.park()
    finally:
        ep._progress_waiters -= 1


def on_sent(ep: DTLSEndpoint, count: int) -> None:
    """`count` more datagrams left: buried channels whose datagrams have all gone are
    forgotten, and tasks waiting in `wait_sent` look again."""
    ep._sent += count
    graveyard = ep._graveyard
    while graveyard and graveyard[0][0] <= ep._sent:
        ep._forget(graveyard.popleft()[1])
    if ep._progress_waiters:
        assert ep._progress is not None
        ep._progress.unpark_all()
        if ep._flusher is not None:
            ep._flusher.woke = True
