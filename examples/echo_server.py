"""A DTLS 1.3 echo server on trio.

    python examples/echo_server.py [PORT [CERT_OUT]]

Makes a self-signed certificate, writes it to CERT_OUT (for clients to trust), prints the
port it listens on (PORT 0: any free port) and echoes every message back until Ctrl-C.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import trio

from dtls13 import DTLSChannel, ServerConfig, serve_dtls
from dtls13.certgen import cert_pem, fingerprint, make_self_signed


async def echo(channel: DTLSChannel) -> None:
    peer = channel.peer_address
    try:
        async for message in channel:  # ends at the client's close_notify
            await channel.send(message)
        print(f"{peer}: closed", flush=True)
    except trio.BrokenResourceError as exc:
        print(f"{peer}: {exc}", flush=True)


async def main(port: int, cert_out: str | None) -> None:
    cert, key = make_self_signed(["localhost"], ["127.0.0.1"])
    if cert_out:
        Path(cert_out).write_bytes(cert_pem(cert))
    config = ServerConfig(certificate_chain=[cert], private_key=key)
    async with trio.open_nursery() as nursery:
        endpoint = await nursery.start(
            functools.partial(serve_dtls, echo, port, config, host="127.0.0.1")
        )
        port = endpoint.socket.getsockname()[1]
        print(f"listening on 127.0.0.1:{port}, SHA-256 {fingerprint(cert)}", flush=True)


if __name__ == "__main__":
    try:
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 4433, (sys.argv[2:] or [None])[0])
    except* KeyboardInterrupt:  # Ctrl-C: trio may hand it over inside an exception group
        pass
