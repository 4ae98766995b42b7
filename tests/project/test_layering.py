"""The package's import graph follows its layering: a module imports only from its own
layer or the layers below it (CONTRIBUTING.md, "Layers": memory → record → handshake →
connection → endpoint → trio → cli).

Every ``import`` counts, wherever it is written (module level, inside a function, under
``if TYPE_CHECKING:``): a type-only import is still a dependency a reader has to follow.
A module's layer is the one of its longest dotted prefix in ``LAYERS``, so a new module in
``dtls13/handshake/`` is a handshake module without an entry of its own; a new top-level
module must be placed here before the test passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "dtls13"

# Lowest first. Leaf modules every layer may use sit at the bottom with the Cython core.
LAYER_ORDER = (
    "base",  # _fast, errors, alerts, crypto, events, statistics, certgen, session
    "memory",
    "record",
    "handshake",
    "config",  # ClientConfig / ServerConfig: gathers what handshake modules define
    "roles",  # the handshake contexts of each role: they read the configuration
    "connection",
    "endpoint",
    "trio",  # the event-loop adapters: trio/ and asyncio/
    "facade",  # dtls13/__init__.py: the public names, importing from everything below
    "cli",
)
LAYERS: dict[str, str] = {
    "dtls13._fast": "base",
    "dtls13._io": "base",  # batched datagram I/O (Cython)
    "dtls13.errors": "base",
    "dtls13.alerts": "base",
    "dtls13.crypto": "base",
    "dtls13.events": "base",
    "dtls13.statistics": "base",
    "dtls13.certgen": "base",
    "dtls13.session": "base",
    "dtls13.peer_verification": "base",
    "dtls13.demux": "base",  # RFC 7983 first-byte classes: no imports
    "dtls13.cid_layout": "base",  # connection ID layout: no imports
    "dtls13.steering": "base",  # the reuseport BPF program: sockets only
    "dtls13.arguments": "base",  # checks of the programmer's arguments: no imports
    "dtls13.memory": "memory",
    "dtls13.record": "record",
    "dtls13.handshake": "handshake",
    "dtls13.config": "config",
    "dtls13.handshake.context": "roles",
    "dtls13.handshake.work": "handshake",  # a step's output and working state: no config
    "dtls13.handshake.client": "roles",
    "dtls13.handshake.server": "roles",
    "dtls13.handshake.psk_choice": "roles",  # the server's PSK choice, split from server.py
    "dtls13.handshake.ticket_issue": "roles",  # the server's NewSessionTickets, likewise
    "dtls13.handshake.diagram": "roles",  # drawn from the roles' transition tables
    "dtls13.handshake.client_hello": "roles",  # the client's ClientHello, split from client.py
    "dtls13.handshake.client_offer": "roles",  # the ClientHello a client sends and its PSKs
    "dtls13.handshake.client_answer": "roles",  # the ServerHello or HelloRetryRequest it reads
    "dtls13.handshake.authentication": "roles",  # Certificate, CertificateVerify: both roles
    "dtls13.handshake.server_flight": "roles",  # the server's first flight, split from server.py
    "dtls13.connection": "connection",
    "dtls13.connection_alerts": "connection",
    "dtls13.connection_flights": "connection",
    "dtls13.connection_handshake": "connection",
    "dtls13.connection_keying": "connection",
    "dtls13.connection_new_association": "connection",
    "dtls13.connection_path": "connection",
    "dtls13.connection_receive": "connection",
    "dtls13.connection_send": "connection",
    "dtls13.connection_timers": "connection",
    "dtls13.endpoint": "endpoint",
    "dtls13.admission": "endpoint",
    "dtls13.endpoint_admission": "endpoint",  # how ServerEndpoint admits a new association
    "dtls13.trio": "trio",
    "dtls13.asyncio": "trio",  # the other event-loop adapter, beside trio's (never imports it)
    "dtls13.udp": "endpoint",  # socket helpers the adapters share
    "dtls13.channel_view": "endpoint",  # what both adapters' channels report
    "dtls13": "facade",
    "dtls13.cli": "cli",
    "dtls13.cli_keying": "cli",
    "dtls13.cli_client": "cli",
    "dtls13.cli_workers": "cli",
    "dtls13.cli_asyncio": "cli",
    "dtls13.__main__": "cli",
}
RANK = {name: i for i, name in enumerate(LAYER_ORDER)}


def layer_of(module: str) -> str | None:
    """The layer of `module`: that of its longest prefix in LAYERS ("dtls13" only exactly)."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return LAYERS.get(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> list[tuple[str, Path]]:
    found = [(module_name(p), p) for p in sorted(PACKAGE.rglob("*.py"))]
    found += [(module_name(p), p) for p in sorted(PACKAGE.rglob("*.pyx"))]
    return found


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported dtls13 module, line) for every import in `path`."""
    if path.suffix == ".pyx":
        return  # Cython: it cimports C, nothing of the package
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dtls13":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dtls13":
                continue
            for alias in node.names:
                # `from . import x` imports submodule x when there is one, else a name of `.`.
                sub = f"{target}.{alias.name}"
                yield (sub if _exists(sub) else target), node.lineno


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (
        (SRC / rel).with_suffix(".py").exists()
        or (SRC / rel).with_suffix(".pyx").exists()  # a compiled module (dtls13._io)
        or (SRC / rel / "__init__.py").exists()
    )


def upward_edges(found: list[tuple[str, Path]] | None = None) -> list[str]:
    edges: list[str] = []
    for module, path in modules() if found is None else found:
        here = layer_of(module)
        for target, line in imports_of(module, path):
            there = layer_of(target)
            assert here is not None and there is not None
            if RANK[there] > RANK[here]:
                rel = path.relative_to(SRC.parent) if path.is_relative_to(SRC) else path
                edge = f"{rel}:{line}: {module} ({here}) imports {target} ({there})"
                if edge not in edges:
                    edges.append(edge)
    return edges


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m, _ in modules() if layer_of(m) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    edges = upward_edges()
    assert not edges, "imports from a higher layer:\n" + "\n".join(edges)


def test_the_core_never_imports_trio() -> None:
    offenders = []
    for module, path in modules():
        if path.suffix != ".py" or RANK[layer_of(module) or "cli"] >= RANK["trio"]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "trio" or n.startswith("trio.") for n in names):
                offenders.append(f"{module}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("dtls13.handshake.client", "roles"),
        ("dtls13.handshake.cookie", "handshake"),
        ("dtls13.handshake.gate", "handshake"),
        ("dtls13.handshake.partial_hellos", "handshake"),
        ("dtls13.handshake.work", "handshake"),
        ("dtls13.handshake.negotiation", "handshake"),
        ("dtls13.record.layer", "record"),
        ("dtls13.record.epochs", "record"),
        ("dtls13.trio.channel", "trio"),
        ("dtls13.trio._sendqueue", "trio"),
        ("dtls13", "facade"),
        ("dtls13.cli", "cli"),
    ],
)
def test_a_module_is_in_the_layer_of_its_package(module: str, layer: str) -> None:
    assert layer_of(module) == layer


def test_an_upward_import_fails_naming_its_edge(tmp_path: Path) -> None:
    fake = tmp_path / "header.py"
    source = (PACKAGE / "record" / "header.py").read_text()
    fake.write_text(source + "\nfrom ..connection import Connection\n")
    line = fake.read_text().count("\n")
    assert upward_edges([("dtls13.record.header", fake)]) == [
        f"{fake}:{line}: dtls13.record.header (record) imports dtls13.connection (connection)"
    ]
    assert upward_edges([("dtls13.record.header", PACKAGE / "record" / "header.py")]) == []
