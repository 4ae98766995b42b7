"""``python -m dtls13 server --workers N``: N processes serving one port through
SO_REUSEPORT, each datagram steered to its worker by the connection ID it carries."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from typing import Any

import trio

from .cid_layout import worker_cid_prefix
from .cli import EXIT_FAILURE, Failure, UsageError, _Log, _peer, run_server
from .config import ServerConfig
from .endpoint import DoSProtectionConfig
from .steering import attach_steering, bind_group

WORKER_START_TIMEOUT = 30.0
WORKER_STOP_TIMEOUT = 5.0


class _Stop(Exception):
    """SIGINT or SIGTERM reached the parent."""


class SharedMonotonicClock(trio.abc.Clock):
    """trio's clock on CLOCK_MONOTONIC, which every process of the machine shares.

    trio's default clock starts at a random offset per run; the cookie jar's ticks and
    rotation periods come from the clock it is given, so workers need one clock to accept
    each other's cookies.
    """

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.monotonic()


def _worker(
    index: int,
    args: argparse.Namespace,
    config: ServerConfig,
    group: list[socket.socket],
    conn: Any,
    dos: DoSProtectionConfig | None,
) -> None:
    """One worker process (forked): serve until SIGINT/SIGTERM, exit 0; report failures."""
    # The other workers' sockets came along with the fork: held here too, a worker's
    # socket would outlive it in the SO_REUSEPORT group and swallow its datagrams.
    for i, other in enumerate(group):
        if i != index:
            other.close()
    prefix = worker_cid_prefix(index) if config.cid_length else b""
    log = _Log(args, prefix=f"worker {index}: ")

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # Not the parent's handlers (inherited by fork): a stop request before trio listens,
    # or one trio re-delivers as it stops listening, ends this worker cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)
    try:
        trio.run(
            lambda: run_server(
                args,
                config,
                log,
                bound=group[index],
                ready=lambda p: conn.send(("ready", p)),
                dos=dos,
                cid_prefix=prefix,
            ),
            clock=SharedMonotonicClock(),
        )
    except Failure as exc:
        conn.send(("error", str(exc)))
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


def _steer(sock: socket.socket, log: _Log) -> bool:
    """Attach the CID steering program to the workers' group; on failure say so once and
    let the kernel hash addresses."""
    if os.environ.get("DTLS13_STEERING", "").lower() == "off":
        log("DTLS13_STEERING=off: workers are chosen by address hash only")
        return False
    try:
        attach_steering(sock)
    except OSError as exc:
        log(
            f"cannot steer by connection ID ({exc.strerror or exc}): workers are chosen by "
            "address hash, so a client whose address changes may lose its connection"
        )
        return False
    return True


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_workers(
    args: argparse.Namespace,
    config: ServerConfig,
    log: _Log,
    *,
    dos: DoSProtectionConfig | None = None,
) -> None:
    """Fork `args.workers` servers on one port, print its address once, supervise them.

    SIGINT/SIGTERM stop every worker and return; a worker that ends on its own stops the
    rest and raises Failure. `dos`: the endpoints' limits (benchmarks raise them).
    """
    import multiprocessing
    from multiprocessing.connection import wait

    if not hasattr(socket, "SO_REUSEPORT"):
        raise UsageError("--workers needs SO_REUSEPORT, which this system lacks")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # The workers' sockets are bound here, in worker order, so that socket i of the
    # SO_REUSEPORT group is worker i's (the steering program returns that index); being
    # bound, they also hold the port from the start and report a port in use at once. A
    # first bind without SO_REUSEPORT makes sure no other server (one with SO_REUSEPORT
    # included, which we would silently join) has the port.
    group: list[socket.socket] = []
    port = args.port
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((args.host, port))
            port = probe.getsockname()[1]
        group.extend(bind_group(family, (args.host, port), args.workers))
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise Failure(f"cannot listen on {_peer((args.host, port))}: {reason}") from None
    steered = bool(config.cid_length) and _steer(group[0], log)
    # fork: the workers inherit the configuration (keys, secrets) without it ever being
    # serialized or put on a command line.
    ctx = multiprocessing.get_context("fork")
    workers: list[Any] = []
    pipes: dict[Any, int] = {}
    stopping = False

    def stop_all() -> None:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()

    def on_signal(signum: int, frame: object) -> None:
        if not stopping:
            raise _Stop

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(args.workers):
            receiver, sender = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker,
                args=(i, args, config, group, sender, dos),
                name=f"dtls13-worker-{i}",
            )
            proc.start()
            sender.close()
            workers.append(proc)
            pipes[receiver] = i
        waiting = dict(pipes)
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"{len(waiting)} of {args.workers} workers did not start")
            ready: Any
            for ready in wait(list(waiting), left):
                i = waiting.pop(ready)
                try:
                    kind, value = ready.recv()
                except EOFError:
                    workers[i].join(WORKER_STOP_TIMEOUT)
                    code = _exit_reason(workers[i].exitcode)
                    raise Failure(f"worker {i} failed to start ({code})") from None
                if kind != "ready":
                    raise Failure(f"worker {i}: {value}")
        for sock in group:  # the workers hold them now
            sock.close()
        pids = ", ".join(str(p.pid) for p in workers)
        how = ", steered by connection ID" if steered else ""
        print(f"{args.workers} workers (pids {pids}) share the port through SO_REUSEPORT{how}")
        print(f"dtls13 echo server listening on {_peer((args.host, port))}", flush=True)
        sentinels = {proc.sentinel: i for i, proc in enumerate(workers)}
        ended = wait(list(sentinels))
        i = sentinels[ended[0]]
        proc = workers[i]
        proc.join()
        raise Failure(
            f"worker {i} (pid {proc.pid}) ended unexpectedly ({_exit_reason(proc.exitcode)}); "
            "stopped the others"
        )
    except _Stop:
        log("stopping")
    finally:
        stopping = True
        for sock in group:
            sock.close()
        stop_all()
        for receiver in pipes:
            receiver.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
