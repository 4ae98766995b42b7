"""DTLSEndpointStatistics: the counters of one trio endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from ..statistics import ServerEndpointStatistics


@dataclass(frozen=True, slots=True)
class DTLSEndpointStatistics:
    """Counters of one endpoint (a snapshot)."""

    datagrams_in: int
    datagrams_out: int
    dropped_no_connection: int  # from an address with no connection, and no serve() running
    dropped_memory_budget: int  # no pooled buffer to receive into: left in the kernel's queue
    # Longer than max_datagram_size (cut by the kernel), or, in a receive batch with more
    # long datagrams than overflow areas, one whose tail a later one overwrote:
    dropped_long_datagrams: int
    send_errors: int
    receive_errors: int
    port_unreachable: int  # ICMP port unreachable reports on a connected socket
    internal_errors: int  # bugs caught at the edge (``last_internal_error`` has the newest)
    # Datagrams of other protocols (STUN, RTP/RTCP, ...; RFC 7983 §7) handed to
    # on_non_dtls_datagram, and the times it raised (``last_handler_error``):
    non_dtls_datagrams: int
    non_dtls_handler_errors: int
    connections: int  # live channels, client and server
    queued_datagrams: int  # waiting for room in the socket's send buffer
    memory_in_use: int  # bytes in use in the endpoint's pools
    server: ServerEndpointStatistics | None  # while serve() runs
