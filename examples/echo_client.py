"""A DTLS 1.3 echo client on trio.

    python examples/echo_client.py PORT CAFILE MESSAGE...

Connects to 127.0.0.1:PORT (trusting the certificate in CAFILE for "localhost"), sends
each MESSAGE, prints each echo with its round-trip time, then closes with close_notify.
"""

from __future__ import annotations

import sys

import trio

from dtls13 import ClientConfig, open_dtls_client


async def main(port: int, cafile: str, messages: list[str]) -> None:
    config = ClientConfig(server_name="localhost", cafile=cafile)
    channel = await open_dtls_client("127.0.0.1", port, config)
    info = channel.handshake_info
    assert info is not None  # open_dtls_client returns after the handshake
    group = info.group.name if info.group is not None else "no (EC)DHE"
    print(f"connected: {info.cipher_suite.name}, {group}")
    for text in messages:
        start = trio.current_time()
        await channel.send(text.encode())
        echo = await channel.receive()
        print(f"{echo.decode()} ({(trio.current_time() - start) * 1000:.2f} ms)")
    await channel.aclose()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], sys.argv[3:])
