"""BoringSSL's malloc-failure tests, on this library's pools: the n-th pool acquire of a
whole handshake and data exchange fails, for every n. Each run must end cleanly (the data
delivered after all, or a connection ended with an event), nothing may escape
receive_datagram / handle_timer / datagrams_to_send, and every lease must come back."""

from __future__ import annotations

import contextlib
import traceback
from typing import Any

import pytest

from dtls13._fast import MemoryBudgetExceeded
from dtls13.connection import Connection
from dtls13.events import ConnectionTerminated, DataReceived
from dtls13.memory import PoolSet
from dtls13.memory.faults import AcquireFault
from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR, cached_configs, wall_clock

PING, PONG = b"ping" * 8, b"pong" * 8


def scenario(
    fail_at: int,
    owners: list[str] | None = None,
    callers: list[str] | None = None,
    counters: dict[str, int] | None = None,
    client_args: dict[str, Any] | None = None,
    server_args: dict[str, Any] | None = None,
) -> tuple[AcquireFault, str]:
    """Handshake, one record each way, close; the `fail_at`-th acquire fails.
    Returns the fault (how many acquires there were) and how it ended; `owners` collects
    the owner of each acquire, `callers` the functions on the stack of the failing one,
    `counters` the two sides' statistics summed; `client_args` / `server_args`: the client and
    server configs' arguments."""
    pools = PoolSet()
    fault = pools.inject_acquire_fault(fail_at)
    assert fault is not None
    if owners is not None or callers is not None:
        inner = pools.acquire

        def logged(size: int, owner: Any = None, secure: bool = False) -> Any:
            if owners is not None:
                owners.append(owner.label if owner is not None else "")
            if callers is not None and fault.calls + 1 == fail_at:
                callers.extend(f.name for f in traceback.extract_stack())
            return inner(size, owner, secure)

        pools.acquire = logged
    ccfg, scfg = cached_configs(client=client_args, server=server_args)
    client = Connection(ccfg, pools=pools, wall_clock=wall_clock)
    server = Connection(scfg, pools=pools, peer_address=CLIENT_ADDR, wall_clock=wall_clock)
    got: dict[str, list[bytes]] = {"client": [], "server": []}
    ended: list[ConnectionTerminated] = []
    now = 0.0
    client.connect(SERVER_ADDR, now)
    outcome = "stuck"
    sent_this_tick = False
    app_retries = 3
    for _ in range(500):
        moved = False
        for src, dst, addr in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
            for lease, _ in src.datagrams_to_send(now):
                data = bytes(lease)
                lease.release()
                dst.receive_datagram(data, addr, now)
                moved = True
        for name, conn in (("client", client), ("server", server)):
            while (ev := conn.next_event()) is not None:
                if isinstance(ev, DataReceived):
                    got[name].append(ev.data)
                elif isinstance(ev, ConnectionTerminated):
                    ended.append(ev)
        if got["server"] and got["client"]:
            outcome = "delivered"
            break
        if ended:
            outcome = "ended: " + "; ".join(f"{e.alert} {e.reason} ({e.by_peer})" for e in ended)
            break
        if not moved and not sent_this_tick:
            # Application data, sent again after each timer tick until it arrives (as an
            # application over DTLS must).
            sent_this_tick = True
            for conn, data, peer in ((client, PING, "server"), (server, PONG, "client")):
                if conn.handshake_complete and not got[peer]:
                    # A refusal is a clean error to the caller, with nothing half-sent.
                    with contextlib.suppress(MemoryBudgetExceeded):
                        conn.send(data)
                    moved = True
        if not moved:
            sent_this_tick = False
            timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
            if not timers:
                if app_retries and (not got["server"] or not got["client"]):
                    # Nothing pending on either side, and the data was refused or lost:
                    # the application sends it again a little later (a few times).
                    app_retries -= 1
                    now += 1.0
                    continue
                break
            now = max(now, min(timers))
            for conn in (client, server):
                t = conn.get_timer()
                if t is not None and t <= now:
                    conn.handle_timer(now)
    assert set(got["server"]) <= {PING} and set(got["client"]) <= {PONG}
    if counters is not None:
        for conn in (client, server):
            stats = conn.statistics()
            for name in ("flight_datagrams_unsent", "tickets_withheld"):
                counters[name] = counters.get(name, 0) + getattr(stats, name)
    for conn in (client, server):
        conn.close()
        for lease, _ in conn.datagrams_to_send(now):
            lease.release()
    assert pools.in_use == 0, f"fail_at={fail_at}: {pools.leak_report()}"
    return fault, outcome


def test_a_run_without_a_fault_delivers_and_counts_its_acquires() -> None:
    fault, outcome = scenario(10**9)
    assert outcome == "delivered" and not fault.fired
    assert fault.calls > 20


def test_a_record_is_not_acknowledged_when_one_of_its_fragments_could_not_be_buffered() -> None:
    # The server's flight packs several messages in a record, the last one cut where the
    # record ends; the client's reassembly failing to buffer that last fragment must keep
    # the record unacknowledged, or the server never sends it again and the handshake
    # stalls until it times out. (Uncompressed, at an MTU of 500: the Certificate cannot
    # fit one record, so messages are reassembled whatever the exact sizes.)
    uncompressed = {"certificate_compression": ()}
    small = {"mtu": 500}
    owners: list[str] = []
    scenario(10**9, owners, client_args=uncompressed, server_args=small)
    reassembly = [i + 1 for i, label in enumerate(owners) if label.startswith("reassembly")]
    assert reassembly
    for n in reassembly:
        outcome = scenario(n, client_args=uncompressed, server_args=small)[1]
        assert outcome == "delivered", n


# Where a failed acquire happens decides what must follow:
# - receiving (a datagram's lease, a fragment's reassembly chunk): a lost datagram, so the
#   peer's retransmission recovers and the data gets through;
# - storing a handshake message of a flight we are building: the handshake has moved on
#   past a message it cannot keep (its keys and transcript include it), so the connection
#   ends at once with an event;
# - anything else sent (flight datagrams, ACKs, tickets, data, alerts): a lost datagram,
#   an optional message withheld (the server's tickets, stored in server_completed) or an
#   error to the caller, so the data gets through.
RECEIVING = {"_read_records", "buffer_fragment"}
BUILDING_A_FLIGHT = "add_encoded"
OPTIONAL_MESSAGES = "server_completed"


def test_every_single_acquire_failure_ends_as_its_path_requires() -> None:
    total = scenario(10**9)[0].calls
    outcomes: dict[str, list[int]] = {"delivered": [], "stuck": []}
    wrong: list[tuple[int, str, list[str]]] = []
    paths = {"receiving": 0, "building a flight": 0, "other": 0}
    for n in range(1, total + 1):
        callers: list[str] = []
        counters: dict[str, int] = {}
        fault, outcome = scenario(n, callers=callers, counters=counters)
        assert fault.fired, n
        outcomes.setdefault(outcome, []).append(n)
        ends = BUILDING_A_FLIGHT in callers and OPTIONAL_MESSAGES not in callers
        if RECEIVING & set(callers) or not ends:
            paths["receiving" if RECEIVING & set(callers) else "other"] += 1
            ok = outcome == "delivered"
        else:
            paths["building a flight"] += 1
            ok = outcome.startswith("ended:") and "timed out" not in outcome
        # Counted as what it is: a datagram not sent, or a ticket withheld.
        final_ack = "send_ack_for" in callers and OPTIONAL_MESSAGES in callers
        if "emit_datagrams" in callers or final_ack:
            ok = ok and counters["flight_datagrams_unsent"] == 1
        if OPTIONAL_MESSAGES in callers and BUILDING_A_FLIGHT in callers:
            ok = ok and counters["tickets_withheld"] >= 1
        if not ok:
            wrong.append((n, outcome, callers[-6:]))
    assert outcomes["stuck"] == [], outcomes
    assert wrong == [], wrong
    assert all(paths.values()), paths  # every path was walked
    # Most acquires are not a handshake message being stored: most failures recover.
    assert len(outcomes["delivered"]) >= total * 2 // 3, outcomes


def test_the_hook_is_removed_and_checks_its_argument() -> None:
    pools = PoolSet()
    core_acquire = pools.acquire
    assert pools.inject_acquire_fault(None) is None and pools.acquire == core_acquire
    with pytest.raises(ValueError):
        pools.inject_acquire_fault(0)
    fault = pools.inject_acquire_fault(2)
    assert fault is not None
    first = pools.acquire(10)
    with pytest.raises(MemoryBudgetExceeded, match="injected"):
        pools.acquire(10)
    third = pools.acquire(10)
    first.release()
    third.release()
    assert fault.calls == 3 and fault.fired
