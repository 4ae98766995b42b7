"""A task waiting for its datagrams to leave resumes as soon as they have left, even when
they go out just before trio waits for I/O (after trio has chosen how long to sleep)."""

from __future__ import annotations

import threading
from typing import Any

import trio

from dtls13 import DTLSEndpoint
from dtls13.memory import PoolSet
from tests.support.trio_helpers import GENEROUS, configs, echo, udp_socket, wait_for

# Without a wake-up the closing task sleeps until the next deadline: the client's
# delayed ACK of the session ticket (about 0.25 s) or aclose()'s own 1 s bound.
PROMPT = 0.2


class ServerThread:
    """An echo server in its own thread and trio run: nothing it does wakes the client's
    run (in one run, the peer's socket turning readable would hide a missing wake-up)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.addr: Any = None
        self.pools = PoolSet()
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        _, server_config = configs()
        async with trio.open_nursery() as nursery:
            server = DTLSEndpoint(await udp_socket(), pools=self.pools, dos=GENEROUS)
            await nursery.start(server.serve, server_config, echo)
            self.addr = server.socket.getsockname()
            self.ready.set()
            while not self.stop.is_set():
                await trio.sleep(0.01)
            server.close()
            nursery.cancel_scope.cancel()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


async def test_aclose_returns_once_close_notify_has_left_not_at_the_next_timer() -> None:
    pools = PoolSet()
    client_config, _ = configs()
    slowest = 0.0
    with ServerThread() as server:
        for _ in range(3):
            async with DTLSEndpoint(await udp_socket(), pools=pools) as endpoint:
                channel = endpoint.connect(server.addr, client_config)
                with trio.fail_after(10):
                    await channel.do_handshake()
                    await wait_for(lambda ch=channel: ch.session is not None)  # ACK timer armed
                start = trio.current_time()
                await channel.aclose()
                slowest = max(slowest, trio.current_time() - start)
                assert endpoint.counters["datagrams_out"] >= 3
    assert slowest < PROMPT, f"aclose took {slowest:.3f} s"
    assert pools.in_use == 0 and server.pools.in_use == 0
