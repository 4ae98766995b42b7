"""``python -m dtls13 client``: connect, then echo standard input's lines through the
server (or time --count round trips)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import trio

from .alerts import AlertDescription
from .cli import (
    DEFAULT_MTU,
    ECHO_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    Failure,
    UsageError,
    _describe,
    _Log,
    _options,
    _peer,
)
from .cli_keying import keying_report
from .config import ClientConfig
from .errors import (
    CertificateVerificationFailed,
    ConnectionEnded,
    HandshakeFailed,
    HandshakeTimeout,
    PeerClosed,
    PeerUnreachable,
)
from .trio import DTLSChannel, open_dtls_client


def client_config(args: argparse.Namespace) -> ClientConfig:
    opts = _options(args)
    opts["handshake_timeout"] = HANDSHAKE_TIMEOUT
    opts["server_name"] = args.server_name or args.host
    if args.insecure:
        if args.pin:
            raise UsageError("--pin verifies the server: leave out --insecure")
        opts["verify"] = False
    elif args.cafile:
        opts["cafile"] = args.cafile
    return ClientConfig(**opts)


# What to do about the alerts a server sends to end a handshake.
_ALERT_HINTS: dict[AlertDescription, str] = {
    AlertDescription.handshake_failure: "no cipher suite, group or signature algorithm in "
    "common (see --ciphers and --groups)",
    AlertDescription.protocol_version: "the server does not speak DTLS 1.3",
    AlertDescription.certificate_required: "the server requires a client certificate: "
    "give one with --cert and --key",
    AlertDescription.no_application_protocol: "no ALPN protocol in common (see --alpn)",
    AlertDescription.unknown_ca: "the server does not trust the CA of our client "
    "certificate (--cert)",
    AlertDescription.bad_certificate: "the server rejected our client certificate (--cert)",
    AlertDescription.certificate_unknown: "the server rejected our client certificate (--cert)",
    AlertDescription.access_denied: "the server refused us access",
}


def _handshake_failure(peer: str, exc: HandshakeFailed) -> Failure:
    """One line that says what went wrong and what to do."""
    if isinstance(exc, PeerUnreachable):
        return Failure(f"no answer from {peer}: nothing listens on that port (is the server "
                       "running, on that port?)")  # fmt: skip
    if isinstance(exc, HandshakeTimeout):
        return Failure(f"no answer from {peer} within {HANDSHAKE_TIMEOUT:g} s: is a DTLS 1.3 "
                       "server running there, and does a firewall let UDP through?")  # fmt: skip
    if isinstance(exc, CertificateVerificationFailed):
        why = exc.reason.removeprefix("certificate verification failed: ")
        return Failure(
            f"handshake with {peer} failed: the server's certificate was rejected: {why}. "
            "Trust its CA with --cafile (and check --server-name), or skip verification "
            "with --insecure"
        )
    if exc.by_peer and exc.alert is not None:
        hint = _ALERT_HINTS.get(exc.alert, "see the server's log")
        return Failure(f"handshake with {peer} failed: the server sent {exc.alert.name}: {hint}")
    return Failure(f"handshake with {peer} failed: {exc.reason}")


async def run_client(args: argparse.Namespace, config: ClientConfig, log: _Log) -> None:
    peer = _peer((args.host, args.port))
    try:
        channel = await open_dtls_client(args.host, args.port, config)
    except OSError as exc:
        raise Failure(f"cannot reach {peer}: {exc.strerror or exc}") from None
    except HandshakeFailed as exc:
        raise _handshake_failure(peer, exc) from None
    log(f"connected to {_peer(channel.peer_address)} ({_describe(channel)})")
    for line in keying_report(channel, args):
        print(line, flush=True)
    try:
        if args.count:
            await _timed_echoes(channel, args.count, args.size, args.mtu or DEFAULT_MTU)
        else:
            await _echo_lines(channel, log)
    except (trio.EndOfChannel, PeerClosed):
        log("the server closed the connection")
    except ConnectionEnded as exc:
        raise Failure(f"the connection to {peer} failed: {exc}") from None
    finally:
        await channel.aclose()


class _StdinLines:
    """Lines of standard input, read in a worker thread that Ctrl-C or the server's close
    may abandon. It reads the file descriptor itself: a thread left blocked inside
    ``sys.stdin``'s buffered reader holds its lock, and the interpreter then aborts at exit
    ("could not acquire lock ... at interpreter shutdown")."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = b""
        self._ended = False

    async def readline(self) -> bytes:
        """The next line with its newline; the unterminated rest at the end; b"" after."""
        while b"\n" not in self._pending and not self._ended:
            chunk = await trio.to_thread.run_sync(os.read, self._fd, 65536, abandon_on_cancel=True)
            self._ended = not chunk
            self._pending += chunk
        line, newline, self._pending = self._pending.partition(b"\n")
        return line + newline


async def _echo_lines(channel: DTLSChannel, log: _Log) -> None:
    """Send each non-empty line of stdin and print the echoes as they come; at the end of
    input wait up to ECHO_TIMEOUT for the last ones. Ends early when the server closes."""
    stdin, stdout = _StdinLines(sys.stdin.fileno()), sys.stdout.buffer
    limit = channel.get_cleartext_mtu()
    awaited = 0
    problems: list[str] = []
    async with trio.open_nursery() as nursery:

        async def print_echoes() -> None:
            nonlocal awaited
            async for echoed in channel:  # ends at the server's close_notify
                awaited -= 1
                stdout.write(echoed + b"\n")
                stdout.flush()
            log("the server closed the connection")
            nursery.cancel_scope.cancel()

        nursery.start_soon(print_echoes)
        while line := await stdin.readline():
            message = line.rstrip(b"\r\n")
            if not message:
                continue
            if len(message) > limit:
                problems.append(f"a line of {len(message)} bytes does not fit one datagram "
                                f"(at most {limit} bytes; raise --mtu)")  # fmt: skip
                continue
            await channel.send(message)
            awaited += 1
        with trio.move_on_after(ECHO_TIMEOUT):
            while awaited > 0:
                await trio.sleep(0.01)
        if awaited > 0:
            problems.append(f"{awaited} lines got no echo within {ECHO_TIMEOUT:g} s")
        nursery.cancel_scope.cancel()
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
    started = trio.current_time()
    for i in range(count):
        payload = (i.to_bytes(4, "big") * (size // 4 + 1))[:size]
        t0 = trio.current_time()
        await channel.send(payload)
        with trio.move_on_after(ECHO_TIMEOUT):
            while True:
                echoed = await channel.receive()
                if echoed == payload:
                    rtts.append(trio.current_time() - t0)
                    break
            continue
        lost += 1
    elapsed = trio.current_time() - started
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
