"""`python -m dtls13 server|client --loop asyncio`: the same echo server and client as
``dtls13.cli``, on the asyncio adapter (uvloop is used when installed)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .asyncio import ClosedResourceError, DTLSChannel, DTLSEndpoint, open_dtls_client
from .cli import (
    DEFAULT_MTU,
    ECHO_TIMEOUT,
    Failure,
    UsageError,
    _describe,
    _Log,
    _peer,
)
from .cli_client import _handshake_failure
from .cli_keying import keying_report
from .config import ClientConfig, ServerConfig
from .errors import ConnectionEnded, DTLSError, HandshakeFailed, PeerClosed


def run(fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
    """Run `fn` on an asyncio loop: uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(fn(*args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(fn(*args))


async def run_server(args: argparse.Namespace, config: ServerConfig, log: _Log) -> None:
    """Serve until SIGINT/SIGTERM."""
    try:
        endpoint = DTLSEndpoint((args.host, args.port), cookie_policy=args.cookie)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise Failure(f"cannot listen on {_peer((args.host, args.port))}: {reason}") from None
    port = endpoint.socket.getsockname()[1]

    async def echo(channel: DTLSChannel) -> None:
        peer = _peer(channel.peer_address)
        log(f"{peer}: handshake done ({_describe(channel)})")
        for line in keying_report(channel, args):
            print(line, flush=True)
        try:
            async for message in channel:
                log(f"{peer}: {len(message)} bytes", 2)
                await channel.send(message)
            log(f"{peer}: closed by peer")
        except (ConnectionError, ClosedResourceError, DTLSError, ValueError) as exc:
            log(f"{peer}: {exc}")
        if log.level >= 2:
            s = channel.statistics()
            log(
                f"{peer}: {s.app_bytes_in} bytes in, {s.app_bytes_out} out, "
                f"{s.retransmissions} retransmissions",
                2,
            )

    async with endpoint:
        log(f"event loop: {type(asyncio.get_running_loop()).__module__} (asyncio adapter)", 2)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # After the handlers: a supervisor that reads the line may stop the server at once.
        print(f"dtls13 echo server listening on {_peer((args.host, port))}", flush=True)
        serving = asyncio.create_task(endpoint.serve(config, echo))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        log("stopping")
        for task in (serving, stopping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


async def run_client(args: argparse.Namespace, config: ClientConfig, log: _Log) -> None:
    peer = _peer((args.host, args.port))
    try:
        channel = await open_dtls_client(args.host, args.port, config)
    except HandshakeFailed as exc:  # first: on asyncio these are ConnectionErrors (OSErrors)
        raise _handshake_failure(peer, exc) from None
    except OSError as exc:
        raise Failure(f"cannot reach {peer}: {exc.strerror or exc}") from None
    log(f"connected to {_peer(channel.peer_address)} ({_describe(channel)})")
    for line in keying_report(channel, args):
        print(line, flush=True)
    try:
        if args.count:
            await _timed_echoes(channel, args.count, args.size, args.mtu or DEFAULT_MTU)
        else:
            await _echo_lines(channel, log)
    except PeerClosed:
        log("the server closed the connection")
    except ConnectionEnded as exc:
        raise Failure(f"the connection to {peer} failed: {exc}") from None
    finally:
        await channel.aclose()


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes]:
    """Lines of standard input (b"" at its end), read by a daemon thread: one blocked in
    a read neither stops the loop from ending nor the interpreter from exiting."""
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    fd = sys.stdin.fileno()

    def read() -> None:
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                loop.call_soon_threadsafe(lines.put_nowait, line + b"\n")
            if not chunk:
                if pending:
                    loop.call_soon_threadsafe(lines.put_nowait, pending)
                loop.call_soon_threadsafe(lines.put_nowait, b"")
                return

    threading.Thread(target=read, name="dtls13-stdin", daemon=True).start()
    return lines


async def _echo_lines(channel: DTLSChannel, log: _Log) -> None:
    """Send each non-empty line of stdin and print the echoes as they come; at the end of
    input wait up to ECHO_TIMEOUT for the last ones. Ends early when the server closes."""
    stdin, stdout = _stdin_lines(asyncio.get_running_loop()), sys.stdout.buffer
    limit = channel.get_cleartext_mtu()
    awaited = 0
    problems: list[str] = []

    async def print_echoes() -> None:
        nonlocal awaited
        async for echoed in channel:  # ends at the server's close_notify
            awaited -= 1
            stdout.write(echoed + b"\n")
            stdout.flush()
        log("the server closed the connection")

    async def send_lines() -> None:
        nonlocal awaited
        while line := await stdin.get():
            message = line.rstrip(b"\r\n")
            if not message:
                continue
            if len(message) > limit:
                problems.append(f"a line of {len(message)} bytes does not fit one datagram "
                                f"(at most {limit} bytes; raise --mtu)")  # fmt: skip
                continue
            await channel.send(message)
            awaited += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ECHO_TIMEOUT):
                while awaited > 0:
                    await asyncio.sleep(0.01)
        if awaited > 0:
            problems.append(f"{awaited} lines got no echo within {ECHO_TIMEOUT:g} s")

    printer = asyncio.create_task(print_echoes())
    sender = asyncio.create_task(send_lines())
    await asyncio.wait([printer, sender], return_when=asyncio.FIRST_COMPLETED)
    for task in (printer, sender):
        task.cancel()
    for task in (printer, sender):
        with contextlib.suppress(asyncio.CancelledError):
            await task  # raises what ended it (a failed connection)
    if problems:
        raise Failure(problems[-1] if len(problems) == 1 else f"{len(problems)} problems; "
                      f"the last: {problems[-1]}")  # fmt: skip


async def _timed_echoes(channel: DTLSChannel, count: int, size: int, mtu: int) -> None:
    limit = channel.get_cleartext_mtu()
    if size > limit:
        raise UsageError(
            f"--size {size} does not fit one datagram: at most {limit} bytes at --mtu {mtu} "
            "(raise --mtu, or lower --size)"
        )
    rtts: list[float] = []
    lost = 0
    started = time.perf_counter()
    for i in range(count):
        payload = (i.to_bytes(4, "big") * (size // 4 + 1))[:size]
        t0 = time.perf_counter()
        await channel.send(payload)
        try:
            async with asyncio.timeout(ECHO_TIMEOUT):
                while await channel.receive() != payload:
                    pass
            rtts.append(time.perf_counter() - t0)
        except TimeoutError:
            lost += 1
    elapsed = time.perf_counter() - started
    ms = sorted(r * 1000 for r in rtts)
    if ms:
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(
            f"{len(ms)}/{count} echoes of {size} bytes in {elapsed:.3f} s "
            f"({len(ms) / elapsed:.0f} msg/s); round trip ms: min {ms[0]:.3f} "
            f"avg {statistics.fmean(ms):.3f} p50 {statistics.median(ms):.3f} "
            f"p99 {p99:.3f} max {ms[-1]:.3f}",
            flush=True,
        )
    if lost:
        raise Failure(f"{lost} of {count} messages got no echo")
