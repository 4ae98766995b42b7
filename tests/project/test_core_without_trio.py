"""The sans-IO core imports and runs a handshake with trio unimportable; only the trio
adapter's names need it, and asking for one says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter where `import trio` fails, as if trio were not installed.
_SCRIPT = textwrap.dedent(
    """
    import sys

    class NoTrio:
        def find_spec(self, name, path=None, target=None):
            if name == "trio" or name.startswith("trio."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTrio())

    import dtls13
    from dtls13 import ClientConfig, ServerConfig
    from dtls13.certgen import cert_pem, key_pem, make_self_signed
    from dtls13.connection import Connection
    from dtls13.endpoint import ServerEndpoint
    from dtls13.events import DataReceived, HandshakeCompleted
    from dtls13.memory import PoolSet
    from dtls13.statistics import ConnectionStatistics, ServerEndpointStatistics

    cert, key = make_self_signed()
    scfg = ServerConfig(certificate_chain=cert_pem(cert), private_key=key_pem(key))
    ccfg = ClientConfig(server_name="localhost", verify=False)
    pools = PoolSet()
    client_addr, server_addr = ("10.0.0.1", 40000), ("10.0.0.2", 4433)
    client = Connection(ccfg, pools=pools)
    server = Connection(scfg, pools=pools, peer_address=client_addr)
    now = 0.0
    client.connect(server_addr, now)
    events = {client: [], server: []}
    for _ in range(20):
        moved = False
        for src, dst, addr in ((client, server, client_addr), (server, client, server_addr)):
            for lease, _ in src.datagrams_to_send(now):
                dst.receive_datagram(bytes(lease), addr, now)
                lease.release()
                moved = True
        for conn in (client, server):
            while (ev := conn.next_event()) is not None:
                events[conn].append(ev)
        if not moved:
            break
        now += 0.01
    assert client.handshake_complete and server.handshake_complete
    assert any(isinstance(e, HandshakeCompleted) for e in events[client])
    client.send(b"ping")
    for lease, _ in client.datagrams_to_send(now):
        server.receive_datagram(bytes(lease), client_addr, now)
        lease.release()
    got = [e.data for e in iter(server.next_event, None) if isinstance(e, DataReceived)]
    assert got == [b"ping"], got
    assert isinstance(client.statistics(), ConnectionStatistics)
    for conn in (client, server):
        conn.close()
        for lease, _ in conn.datagrams_to_send(now):
            lease.release()
    assert pools.in_use == 0
    assert ServerEndpoint and ServerEndpointStatistics
    assert "trio" not in sys.modules, "the sans-IO core imported trio"

    assert "DTLSEndpoint" in dir(dtls13) and "DTLSEndpoint" in dtls13.__all__
    try:
        dtls13.DTLSEndpoint
    except ImportError as exc:
        assert "trio" in str(exc) and exc.name == "trio", (str(exc), exc.name)
    else:
        raise AssertionError("dtls13.DTLSEndpoint was found without trio")
    print("ok")
    """
)


def test_the_sans_io_core_imports_and_handshakes_without_trio() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_trio_names_load_on_first_use() -> None:
    import dtls13
    import dtls13.trio

    assert dtls13.DTLSEndpoint is dtls13.trio.DTLSEndpoint
    assert dtls13.serve_dtls is dtls13.trio.serve_dtls
    for name in dtls13.__all__:
        assert getattr(dtls13, name) is not None
    assert set(dtls13.__all__) <= set(dir(dtls13))
