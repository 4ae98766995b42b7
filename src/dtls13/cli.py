"""`python -m dtls13`: an echo server and client in the spirit of openssl s_server/s_client.

Every failure the user can cause (bad options, unreadable keys, a port in use, a failed
handshake) ends with one line on stderr and a non-zero status; a clean close exits 0.

``server --workers N`` runs N processes on one port through SO_REUSEPORT (the kernel hashes
each client's address to one of them). They share the cookie and ticket secrets, which the
parent makes (or derives from --secret-file) and hands over by fork, never on a command
line, so any worker checks any cookie and resumes any ticket. With --connection-id, each
worker's CIDs start with its index and the kernel steers records carrying a CID to the
worker that issued it (dtls13.steering), so a client whose address changes keeps its
connection.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import trio

from . import __version__
from .alerts import AlertDescription
from .cid_layout import MAX_WORKERS, MIN_RANDOM_CID_BYTES, worker_cid_prefix
from .cli_keying import add_keying_options, keying_options, keying_report
from .config import ClientConfig, ServerConfig
from .connection import MIN_MTU
from .endpoint import DoSProtectionConfig
from .errors import (
    CertificateVerificationFailed,
    ConnectionEnded,
    DTLSError,
    HandshakeFailed,
    HandshakeTimeout,
    PeerClosed,
    PeerUnreachable,
)
from .handshake.antireplay import ReplayStore
from .steering import attach_steering, bind_group
from .trio import DTLSChannel, DTLSEndpoint, open_dtls_client

EXIT_USAGE = 2  # bad options or configuration
EXIT_FAILURE = 1  # runtime failures: bind, resolve, handshake
HANDSHAKE_TIMEOUT = 15.0
ECHO_TIMEOUT = 5.0
DEFAULT_MTU: int = ClientConfig.mtu
# A record's overhead with the suites on by default: a 5-byte header (16-bit sequence
# number and length), the content type byte and a 16-byte tag.
DEFAULT_CLEARTEXT_MTU = DEFAULT_MTU - 22


class UsageError(Exception):
    """A bad option or configuration: one line, exit status 2."""


class Failure(Exception):
    """A runtime failure: one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _integer(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a whole number, not {value!r}") from None


def _port(value: str) -> int:
    port = _integer(value, "a port")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def _positive(value: str) -> int:
    n = _integer(value, "it")
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a positive number")
    return n


def _count(value: str) -> int:
    n = _integer(value, "it")
    if not 0 <= n <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{n} is outside 0..4294967295")
    return n


def _mtu(value: str) -> int:
    n = _integer(value, "the MTU")
    if not MIN_MTU <= n <= 65535:
        raise argparse.ArgumentTypeError(f"the MTU must be between {MIN_MTU} and 65535, not {n}")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cert", metavar="F", help="certificate chain (PEM)")
    p.add_argument("--key", metavar="F", help="private key (PEM or DER)")
    p.add_argument(
        "--mtu",
        type=_mtu,
        metavar="N",
        help=f"largest datagram to send, in bytes ({DEFAULT_MTU}; {MIN_MTU}..65535)",
    )
    p.add_argument("--groups", type=_names, metavar="G,...", help="key exchange groups (IANA)")
    p.add_argument("--ciphers", type=_names, metavar="S,...", help="cipher suites (IANA)")
    p.add_argument("--alpn", type=_names, metavar="P,...", help="ALPN protocols to offer")
    p.add_argument("--keylog", metavar="F", help="NSS key log file (default: $SSLKEYLOGFILE)")
    add_keying_options(p)
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="say more")
    loud.add_argument("-q", "--quiet", action="store_true", help="only errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dtls13", description="DTLS 1.3 echo server and client")
    parser.add_argument("--version", action="version", version=f"dtls13 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    server = sub.add_parser("server", help="run an echo server")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    server.add_argument("--port", type=_port, default=4433, help="UDP port (4433; 0: any)")
    server.add_argument("--cafile", metavar="F", help="CAs for client certificates")
    server.add_argument("--require-client-cert", action="store_true")
    server.add_argument(
        "--cookie",
        choices=("always", "under_load", "never"),
        default="under_load",
        help="when to demand a HelloRetryRequest cookie (under_load)",
    )
    server.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="serve the port from N processes through SO_REUSEPORT (1)",
    )
    server.add_argument(
        "--connection-id",
        type=_count,
        default=0,
        metavar="LEN",
        help="issue LEN-byte connection IDs (RFC 9146), so clients keep their connection "
        "when their address changes (0: none; 8 is usual; with --workers the first byte "
        f"names the worker, so at least {1 + MIN_RANDOM_CID_BYTES})",
    )
    server.add_argument(
        "--secret-file",
        metavar="F",
        help="file of >= 32 random bytes the cookie and ticket keys derive from (share it "
        "between servers; default: fresh secrets per run)",
    )
    server.add_argument(
        "--max-early-data",
        type=_count,
        default=0,
        metavar="N",
        help="accept up to N bytes of 0-RTT data from resuming clients (0: refuse 0-RTT)",
    )
    server.add_argument(
        "--replay-store",
        metavar="URL",
        help="redis://host:port/db remembering used tickets, shared by every server that "
        "shares --secret-file (default: one table shared by the --workers)",
    )
    _common(server)
    client = sub.add_parser("client", help="echo stdin lines through a server")
    client.add_argument("--host", required=True)
    client.add_argument("--port", type=_port, required=True)
    trust = client.add_mutually_exclusive_group()
    trust.add_argument("--cafile", metavar="F", help="CAs to trust (default: the system's)")
    trust.add_argument("--insecure", action="store_true", help="do not verify the server")
    client.add_argument("--server-name", metavar="N", help="name to verify (default: --host)")
    client.add_argument("--count", type=_positive, metavar="N", help="send N messages and time")
    client.add_argument(
        "--size",
        type=_positive,
        default=64,
        metavar="B",
        help=f"message size with --count (64); one message is one datagram, so at most "
        f"{DEFAULT_CLEARTEXT_MTU} bytes at the default --mtu {DEFAULT_MTU} (MTU - 22 with the "
        "usual suites)",
    )
    _common(client)
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.mtu is not None:
        opts["mtu"] = args.mtu
    if args.groups:
        opts["groups"] = args.groups
        if args.command == "client":
            opts["key_share_groups"] = args.groups[:1]
    if args.ciphers:
        opts["cipher_suites"] = args.ciphers
    if args.alpn:
        opts["alpn_protocols"] = args.alpn
    keylog = args.keylog or os.environ.get("SSLKEYLOGFILE") or None
    if keylog:
        opts["keylog"] = keylog
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together")
    if args.cert is not None:
        opts["certificate_chain"] = args.cert
        opts["private_key"] = args.key
    opts.update(keying_options(args))
    return opts


class _Log:
    def __init__(self, args: argparse.Namespace, prefix: str = "") -> None:
        self.level = 0 if args.quiet else 2 if args.verbose else 1
        self.prefix = prefix

    def __call__(self, message: str, level: int = 1) -> None:
        if self.level >= level:
            print(self.prefix + message, file=sys.stderr, flush=True)


def _describe(channel: DTLSChannel) -> str:
    info = channel.handshake_info
    if info is None:
        return "no handshake"
    parts = [info.version, info.cipher_suite.name]
    if info.group is not None:
        parts.append(info.group.name)
    if info.alpn_protocol:
        parts.append(f"ALPN {info.alpn_protocol}")
    return ", ".join(parts)


def _peer(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# -- server ---------------------------------------------------------------------------


def server_config(args: argparse.Namespace, log: _Log) -> tuple[ServerConfig, str | None]:
    """The server's configuration; makes a self-signed certificate without --cert."""
    from .certgen import cert_pem, fingerprint, make_self_signed

    opts = _options(args)
    cert_path = None
    cert = None
    if "certificate_chain" not in opts:
        ips = ["127.0.0.1", "::1"]
        if args.host not in ips and args.host not in ("0.0.0.0", "::"):
            try:
                import ipaddress

                ipaddress.ip_address(args.host)
                ips.append(args.host)
            except ValueError:
                pass
        names = ["localhost"] + ([] if args.host in ips or ":" in args.host else [args.host])
        cert, key = make_self_signed(names, ips)
        opts["certificate_chain"], opts["private_key"] = [cert], key
    if args.require_client_cert:
        if not args.cafile:
            raise UsageError("--require-client-cert needs --cafile")
        opts["client_auth"] = "required"
    elif args.cafile:
        opts["client_auth"] = "optional"
    if args.cafile:
        opts["cafile"] = args.cafile
    if args.connection_id:
        if args.workers > 1 and args.connection_id < 1 + MIN_RANDOM_CID_BYTES:
            raise UsageError(
                f"--connection-id with --workers needs at least {1 + MIN_RANDOM_CID_BYTES} "
                "bytes: the first names the worker"
            )
        if args.workers > MAX_WORKERS:
            raise UsageError(f"--connection-id names at most {MAX_WORKERS} workers")
        opts["connection_id"] = args.connection_id
    opts.update(_secrets(args))
    opts["max_early_data"] = args.max_early_data
    store = _replay_store(args)
    if store is not None:
        opts["replay_store"] = store
    config = ServerConfig(**opts)
    if cert is not None:
        # Written once the configuration is known good: main() removes it at exit.
        fd, cert_path = tempfile.mkstemp(prefix="dtls13-echo-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem(cert))
        print(f"self-signed ECDSA P-256 certificate: {cert_path}", flush=True)
        print(f"SHA-256 fingerprint: {fingerprint(cert)}", flush=True)
    return config, cert_path


def _secrets(args: argparse.Namespace) -> dict[str, bytes]:
    """Cookie and ticket secrets every worker (or server given the file) shares."""
    if args.secret_file:
        try:
            with open(args.secret_file, "rb") as f:
                seed = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read {args.secret_file}: {exc.strerror or exc}") from None
        if len(seed) < 32:
            raise UsageError(f"{args.secret_file} holds {len(seed)} bytes; at least 32 needed")
        from .crypto.hkdf import hkdf_expand, hkdf_extract

        prk = hkdf_extract("sha256", b"dtls13 cli secrets", seed)
        return {
            "cookie_secret": hkdf_expand("sha256", prk, b"cookie", 32),
            "ticket_secret": hkdf_expand("sha256", prk, b"ticket", 32),
        }
    if args.workers > 1:
        return {"cookie_secret": os.urandom(32), "ticket_secret": os.urandom(32)}
    return {}  # one process: ServerConfig makes its own, as without --workers


def _replay_store(args: argparse.Namespace) -> ReplayStore | None:
    """Where used 0-RTT tickets are remembered: Redis if asked, else for --workers one
    table made here, before the fork, so every worker sees every use."""
    from .handshake.antireplay import RedisReplayGuard, SharedMemoryReplayGuard

    if args.replay_store:
        if not args.replay_store.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError("--replay-store takes a redis://host:port/db URL")
        try:
            return RedisReplayGuard.from_url(args.replay_store)
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    if args.workers > 1:
        return SharedMemoryReplayGuard()
    return None  # one process: the process-wide guard


async def run_server(
    args: argparse.Namespace,
    config: ServerConfig,
    log: _Log,
    *,
    bound: socket.socket | None = None,
    ready: Callable[[int], None] | None = None,
    dos: DoSProtectionConfig | None = None,
    cid_prefix: bytes = b"",
) -> None:
    """Serve until SIGINT/SIGTERM. A worker (`ready` given) serves on the socket its parent
    `bound` and reports it is serving through `ready` instead of printing the address."""
    if bound is not None:
        sock = trio.socket.from_stdlib_socket(bound)
    else:
        family = trio.socket.AF_INET6 if ":" in args.host else trio.socket.AF_INET
        sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        try:
            await sock.bind((args.host, args.port))
        except (OSError, UnicodeError) as exc:
            sock.close()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise Failure(f"cannot listen on {_peer((args.host, args.port))}: {reason}") from None
    port = sock.getsockname()[1]

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
        except (trio.BrokenResourceError, trio.ClosedResourceError, DTLSError, ValueError) as exc:
            log(f"{peer}: {exc}")
        if log.level >= 2:
            s = channel.statistics()
            log(
                f"{peer}: {s.app_bytes_in} bytes in, {s.app_bytes_out} out, "
                f"{s.retransmissions} retransmissions",
                2,
            )

    async with DTLSEndpoint(
        sock, cookie_policy=args.cookie, dos=dos, cid_prefix=cid_prefix
    ) as endpoint:
        if ready is None:
            print(f"dtls13 echo server listening on {_peer((args.host, port))}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(endpoint.serve, config, echo)
                if ready is not None:
                    ready(port)
                async for _ in signals:
                    log("stopping")
                    nursery.cancel_scope.cancel()
                    break


# -- workers --------------------------------------------------------------------------

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


# -- client ---------------------------------------------------------------------------


def client_config(args: argparse.Namespace) -> ClientConfig:
    opts = _options(args)
    opts["handshake_timeout"] = HANDSHAKE_TIMEOUT
    opts["server_name"] = args.server_name or args.host
    if args.insecure:
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


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """trio.run, with the one exception that matters taken out of trio's exception groups
    (a Ctrl-C or a failure inside a nursery arrives wrapped in one)."""
    try:
        trio.run(fn, *args, **kwargs)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        for kind in (KeyboardInterrupt, UsageError, Failure):
            for leaf in leaves:
                if isinstance(leaf, kind):
                    raise leaf from None
        raise


# -- entry point ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    cert_path = None
    try:
        args = parser.parse_args(argv)
        log = _Log(args)
        if args.command == "server":
            config, cert_path = server_config(args, log)
            if args.workers > 1:
                run_workers(args, config, log)
            else:
                _run(run_server, args, config, log)
        else:
            _run(run_client, args, client_config(args), log)
        return 0
    except UsageError as exc:
        print(f"dtls13: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, FileNotFoundError) as exc:  # configuration
        print(f"dtls13: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    except Failure as exc:
        print(f"dtls13: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 0
    finally:
        if cert_path is not None:
            os.unlink(cert_path)
