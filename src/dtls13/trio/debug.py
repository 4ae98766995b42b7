"""What the trio adapter's ``debug_state()`` hooks show: for tests and debugging only.

Applications use ``statistics()``; these snapshots name internals whose shape may change
between versions.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ..connection import Connection


@dataclass(frozen=True, slots=True)
class DTLSChannelDebugState:
    """``DTLSChannel.debug_state()``: the sans-IO connection it drives and its receive side."""

    connection: Connection
    queued: int  # messages received and not yet taken by receive()
    reader_parked: bool  # a receive() waits, to be handed the next message directly


@dataclass(frozen=True, slots=True)
class DTLSEndpointDebugState:
    """``DTLSEndpoint.debug_state()``: the endpoint's tasks."""

    sender_started: bool  # the send task runs (started once the socket was first full)
    # The run's timer task's (shared by its endpoints: its deadline is their earliest timer),
    # while it sleeps and this endpoint is one of them:
    timer_scope: trio.CancelScope | None
    handlers: trio.Nursery | None  # where serve() starts its handlers, while it runs
