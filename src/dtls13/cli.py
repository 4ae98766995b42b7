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
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import trio

from . import __version__
from .cid_layout import MAX_WORKERS, MIN_RANDOM_CID_BYTES
from .cli_keying import ChannelInfo, add_keying_options, keying_options, keying_report
from .config import ClientConfig, ServerConfig
from .connection import MIN_MTU
from .endpoint import DoSProtectionConfig
from .errors import (
    DTLSError,
)
from .handshake.antireplay import ReplayStore
from .trio import DTLSChannel, DTLSEndpoint

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
    p.add_argument("--cert", metavar="F", action="append", help="certificate chain (PEM)")
    p.add_argument("--key", metavar="F", action="append", help="private key (PEM or DER)")
    p.add_argument(
        "--raw-key",
        action="store_true",
        help="present the key as a raw public key (RFC 7250) to peers that accept one "
        "(--cert becomes optional)",
    )
    p.add_argument(
        "--pin",
        action="append",
        metavar="F",
        help="accept the peer's raw public key (RFC 7250) if it is in this PEM file "
        "(PUBLIC KEY or CERTIFICATE blocks; repeatable)",
    )
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
    p.add_argument(
        "--loop",
        choices=("trio", "asyncio"),
        default="trio",
        help="event loop and adapter: trio, or asyncio (on uvloop when installed) (trio)",
    )
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
    certs, keys = args.cert or [], args.key or []
    if args.raw_key and keys and not certs:
        # A bare key, presented as a raw public key (RFC 7250).
        if len(keys) > 1:
            raise UsageError("--raw-key takes one --key")
        opts["private_key"] = keys[0]
    elif len(certs) != len(keys):
        raise UsageError(
            "--cert and --key go together: one --key for each --cert (a bare --key needs --raw-key)"
        )
    if len(certs) > 1 and args.command != "server":
        raise UsageError("a client takes one --cert and one --key")
    if certs:
        # A server's further pairs: chosen per client by SNI and signature_algorithms.
        opts["certificate_chain"], opts["private_key"] = certs[0], keys[0]
        if len(certs) > 1:
            opts["certificates"] = list(zip(certs[1:], keys[1:], strict=True))
    if args.raw_key:
        opts["raw_public_key"] = True
    if args.pin:
        opts["pinned_public_keys"] = list(args.pin)
    opts.update(keying_options(args))
    return opts


class _Log:
    def __init__(self, args: argparse.Namespace, prefix: str = "") -> None:
        self.level = 0 if args.quiet else 2 if args.verbose else 1
        self.prefix = prefix

    def __call__(self, message: str, level: int = 1) -> None:
        if self.level >= level:
            print(self.prefix + message, file=sys.stderr, flush=True)


def _describe(channel: ChannelInfo) -> str:
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
    from .certgen import cert_pem, fingerprint, make_self_signed, public_key_pem

    opts = _options(args)
    cert_path = None
    cert = None
    if "private_key" not in opts:
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
        if not args.cafile and not args.pin:
            raise UsageError("--require-client-cert needs --cafile or --pin")
        opts["client_auth"] = "required"
    elif args.cafile or args.pin:
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
            if args.raw_key:  # for a client's --pin
                f.write(public_key_pem(config.key))
        print(f"self-signed ECDSA P-256 certificate: {cert_path}", flush=True)
        print(f"SHA-256 fingerprint: {fingerprint(cert)}", flush=True)
        if args.raw_key:
            print(f"raw public key (pin it with --pin): {cert_path}", flush=True)
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
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(endpoint.serve, config, echo)
                # Printed once serving and with SIGTERM handled: a supervisor that reads
                # the line may stop the server at once, cleanly.
                if ready is None:
                    print(f"dtls13 echo server listening on {_peer((args.host, port))}", flush=True)
                else:
                    ready(port)
                async for _ in signals:
                    log("stopping")
                    nursery.cancel_scope.cancel()
                    break


# -- running --------------------------------------------------------------------------


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
        if args.loop == "asyncio":
            from . import cli_asyncio

            if args.command == "server" and args.workers > 1:
                raise UsageError("--workers runs trio workers: leave out --loop asyncio")
        if args.command == "server":
            config, cert_path = server_config(args, log)
            if args.workers > 1:
                from .cli_workers import run_workers

                run_workers(args, config, log)
            elif args.loop == "asyncio":
                cli_asyncio.run(cli_asyncio.run_server, args, config, log)
            else:
                _run(run_server, args, config, log)
        else:
            from .cli_client import client_config, run_client

            if args.loop == "asyncio":
                cli_asyncio.run(cli_asyncio.run_client, args, client_config(args), log)
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
