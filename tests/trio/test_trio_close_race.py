"""Closing an endpoint while its receive task is being woken by a datagram (a race
bench_workers' load generators hit: they close client channels under load)."""

from __future__ import annotations

import socket
import time

import trio
import trio.testing

from dtls13 import DTLSEndpoint
from dtls13.memory import PoolSet
from tests.support.trio_helpers import configs, udp_socket


async def test_close_while_the_receive_task_is_runnable_ends_it_quietly() -> None:
    client_config, _ = configs()
    pools = PoolSet()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # sends without a checkpoint
    sender.bind(("127.0.0.1", 0))
    # Each round the closing task and the woken receive task run in one batch, in an order
    # trio picks at random: the receive task runs after close() in about half the rounds.
    for _ in range(24):
        sock = await udp_socket()
        endpoint = DTLSEndpoint(sock, pools=pools)
        endpoint.connect(sender.getsockname(), client_config)  # starts the tasks
        await trio.testing.wait_all_tasks_blocked()
        sender.sendto(b"\x16" * 40, sock.getsockname())
        time.sleep(0.002)  # the datagram is in the kernel's queue before we yield
        await trio.lowlevel.checkpoint()
        endpoint.close()
        await trio.testing.wait_all_tasks_blocked()
    sender.close()
    assert pools.in_use == 0
