"""Add seeds captured from wolfSSL on 127.0.0.1 to fuzz/corpus/ (files named ``wolfssl-*``).

Needs wolfSSL's example programs: ``bash .ci/build_wolfssl.sh`` builds them into .peers/.
wolfSSL's client handshakes with our ServerEndpoint and wolfSSL's server with our client,
over real UDP sockets; every datagram wolfSSL sends is kept. Its plaintext records (first
ClientHellos, HelloRetryRequests, ServerHellos) decode everywhere; its encrypted records
carry wolfSSL's random keys, so in the harnesses they exercise the paths of records that
fail to authenticate. Handshake messages it sends in plaintext also seed the codecs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_codecs
import fuzz_common
import fuzz_endpoint
import make_corpus

from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.handshake import messages as msgs
from dtls13.memory import PoolSet

ROOT = Path(__file__).resolve().parent.parent
WOLFSSL = Path(os.environ.get("DTLS13_WOLFSSL", ROOT / ".peers" / "wolfssl"))
HOST = "127.0.0.1"


def _pump(
    sock: socket.socket, ours: Any, until: Any, seconds: float, peer: Any = None
) -> list[bytes]:
    """Drive a sans-IO endpoint over `sock` with the real clock; what it received."""
    got: list[bytes] = []
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds and not until():
        now = time.monotonic()
        for lease, addr in ours.datagrams_to_send(now):
            sock.sendto(bytes(lease), addr)
            lease.release()
        try:
            data, addr = sock.recvfrom(65536)
        except TimeoutError:
            data = b""
        except ConnectionRefusedError:
            continue
        now = time.monotonic()
        if data:
            got.append(data)
            ours.receive_datagram(data, addr if peer is None else peer, now)
        timer = ours.get_timer()
        if timer is not None and timer <= now:
            ours.handle_timer(now)
    return got


def wolfssl_client(flags: list[str], scenario: int) -> list[bytes]:
    """What wolfSSL's client sends to our ServerEndpoint in one handshake."""
    pools = PoolSet()
    cfg = fuzz_common.make_configs(fuzz_common.SCENARIOS[scenario], scenario)
    ep = ServerEndpoint(cfg.server, pools=pools, cookie_policy="always")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        argv = [str(WOLFSSL / "examples/client/client"), "-u", "-v", "4", "-h", HOST]
        argv += ["-p", str(port), "-d", *flags]
        with subprocess.Popen(
            argv, cwd=WOLFSSL, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:  # fmt: skip
            got = _pump(
                sock,
                ep,
                lambda: any(c.handshake_complete for c in ep.connections.values()),
                5.0,
            )
            done = any(c.handshake_complete for c in ep.connections.values())
            print(f"wolfSSL client {' '.join(flags)}: handshake complete: {done}")
            got += _pump(sock, ep, lambda: False, 0.5)
            proc.kill()
    ep.close()
    fuzz_common.drain(ep, 0.0)
    ep.release()
    return got


def wolfssl_server(flags: list[str], scenario: int) -> list[bytes]:
    """What wolfSSL's server sends to our client in one handshake."""
    pools = PoolSet()
    cfg = fuzz_common.make_configs(fuzz_common.SCENARIOS[scenario], scenario)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    argv = [str(WOLFSSL / "examples/server/server"), "-u", "-v", "4", "-p", str(port), "-d"]
    with subprocess.Popen(
        [*argv, *flags], cwd=WOLFSSL, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        time.sleep(0.5)
        client = Connection(cfg.client, pools=pools)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            client.connect((HOST, port), time.monotonic())
            got = _pump(sock, client, lambda: client.handshake_complete, 5.0)
            done = client.handshake_complete
            print(f"wolfSSL server {' '.join(flags)}: handshake complete: {done}")
            client.send(b"hello wolfSSL")
            got += _pump(sock, client, lambda: False, 0.5)
            client.close()
            _pump(sock, client, lambda: False, 0.1)
        proc.kill()
    fuzz_common.drain(client, 0.0)
    return got


def plaintext_messages(datagram: bytes) -> list[tuple[int, bytes]]:
    """(msg_type, body) of each whole handshake message in DTLSPlaintext records."""
    out = []
    offset = 0
    while offset + 13 <= len(datagram) and datagram[offset] in (21, 22, 26):
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        payload = datagram[offset + 13 : offset + 13 + length]
        if datagram[offset] == 22 and len(payload) >= 12:
            msg_length = int.from_bytes(payload[1:4], "big")
            if payload[6:9] == b"\0\0\0" and int.from_bytes(payload[9:12], "big") == msg_length:
                out.append((payload[0], payload[12 : 12 + msg_length]))
        offset += 13 + length
    return out


def main() -> None:
    if not (WOLFSSL / "examples/client/client").exists():
        sys.exit(f"no wolfSSL at {WOLFSSL}: run `bash .ci/build_wolfssl.sh` first")
    with fuzz_common.pinned_key_shares():
        capture()


def capture() -> None:
    client_runs = [
        wolfssl_client(flags, scenario)
        for flags, scenario in (
            ([], 0),
            (["-l", "TLS13-CHACHA20-POLY1305-SHA256"], 1),
            (["--pqc", "X25519MLKEM768"], 1),
            (["--cid", "wolfcli"], 5),
        )
    ]
    server_runs = [
        (scenario, wolfssl_server(flags, scenario))
        for flags, scenario in (([], 0), (["--cid", "wolfsrv1"], 5), ([], 4))
    ]
    from_client = [d for run in client_runs for d in run]
    from_server = [d for _, run in server_runs for d in run]
    print(f"captured {len(from_client)} datagrams from wolfSSL's client, "
          f"{len(from_server)} from its server")  # fmt: skip

    index = {decoder.__name__: i for i, (decoder, _) in enumerate(fuzz_codecs.TARGETS)}
    codecs = []
    for datagram in from_client + from_server:
        for msg_type, body in plaintext_messages(datagram):
            codecs.append(bytes([index["_message"], msg_type]) + body)
            puller = msgs._PULLERS.get(msg_type)
            if puller is not None and puller.__name__ in index:
                codecs.append(bytes([index[puller.__name__]]) + body)
    make_corpus.write("codecs", codecs, "wolfssl-")
    make_corpus.write("record", [b"\0" + d for d in from_client + from_server], "wolfssl-")
    make_corpus.write(
        "client",
        [bytes([i]) + fuzz_common.join_chunks([(0, d) for d in run]) for i, run in server_runs],
        "wolfssl-",
    )
    make_corpus.write(
        "server",
        [b"\0" + fuzz_common.join_chunks([(0, d) for d in run]) for run in client_runs],
        "wolfssl-",
    )
    last = len(fuzz_endpoint.SOURCES) - 1
    make_corpus.write(
        "endpoint",
        [b"\x20" + fuzz_common.join_chunks([(last, d) for d in run]) for run in client_runs],
        "wolfssl-",
    )


if __name__ == "__main__":
    main()
