"""A trio endpoint's server side: `serve()`, a handler task per association once its
handshake completes, the server connections' events and the end of serving.

Functions of `DTLSEndpoint` (endpoint.py binds them; it holds the state they use).
"""

from __future__ import annotations

import contextvars
from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from ..config import ServerConfig

if TYPE_CHECKING:
    from .channel import DTLSChannel
    from .endpoint import DTLSEndpoint, Handler

SHUTDOWN_GRACE = 1.0  # seconds given to close_notify datagrams when closing


async def serve(
    ep: DTLSEndpoint,
    config: ServerConfig,
    handler: Handler,
    *args: Any,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections and run ``await handler(channel, *args)`` for each.

    The handler starts once the handshake has completed; when it returns the channel
    is closed with close_notify. Runs until cancelled or the endpoint is closed.
    """
    from ..endpoint import ServerEndpoint

    ep._check_closed()
    if not isinstance(config, ServerConfig):
        raise TypeError("serve() needs a ServerConfig")
    if not callable(handler):
        raise TypeError("serve() needs a handler to call with each channel")
    if ep._server is not None:
        raise trio.BusyResourceError("another task is already serving on this endpoint")
    try:
        if ep.socket.getsockname()[1] == 0:
            raise OSError
    except OSError:
        raise RuntimeError("the DTLS socket must be bound before it can serve") from None
    kwargs: dict[str, Any] = {"pools": ep.pools, "cookie_policy": ep.cookie_policy}
    if ep.cid_prefix:
        kwargs["cid_prefix"] = ep.cid_prefix
    if ep.dos is not None:
        kwargs["dos"] = ep.dos
    ep._server = ServerEndpoint(config, **kwargs)
    ep._ensure_loops()
    try:
        async with trio.open_nursery() as nursery:
            ep._handlers, ep._handler, ep._handler_args = nursery, handler, args
            # Handlers see serve()'s context variables, as if it had spawned them.
            ep._handler_context = contextvars.copy_context()
            task_status.started()
            lot = ep._serving_lot = trio.lowlevel.ParkingLot()
            while not ep._closed:
                await lot.park()
    finally:
        ep._handlers = ep._handler = None
        if ep._server is not None and not ep._closed:
            for ch in list(ep._server_channels.values()):
                if not ch.closed:
                    ep._close_channel(ch)
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
                await ep._wait_sent(ep._queued)
        ep._stop_server()


def stop_server(ep: DTLSEndpoint) -> None:
    server, ep._server = ep._server, None
    if server is None:
        return
    for ch in ep._server_channels.values():
        ch._endpoint_closed()
    server.close()
    for lease, _ in server.datagrams_to_send(0.0):
        lease.release()
    # This releases the connections' memory, datagrams still in our queue included;
    # the send task skips released leases.
    server.release()
    ep._server_channels.clear()
    ep._graveyard = deque(g for g in ep._graveyard if not g[1]._server)


def start_handler(ep: DTLSEndpoint, channel: DTLSChannel) -> None:
    nursery, handler = ep._handlers, ep._handler
    # Once serve() is ending, its finally clause closes the channels left without one.
    if nursery is None or handler is None or nursery.cancel_scope.cancel_called:
        return
    ep._handler_context.run(nursery.start_soon, run_handler, handler, channel, ep._handler_args)


def attend_server(ep: DTLSEndpoint, now: float) -> None:
    """Events of the server connections whose timer fired or that the core ended (shed
    handshakes, superseded associations): only those, never a walk over all of them."""
    server = ep._server
    if server is None:
        return
    for conn in server.attention():
        channel = ep._server_channels.get(id(conn))
        if channel is None:
            continue
        channel._process_events()
        if channel._terminated is not None and not channel._buried:
            ep._collect_server_output(now)
            ep._bury(channel)


async def run_handler(handler: Handler, channel: DTLSChannel, args: tuple[Any, ...]) -> None:
    try:
        await handler(channel, *args)
    finally:
        await channel.aclose()
