"""Drive the sans-IO core through its established data path (`receive_datagram_data`)
instead of `receive_datagram`, so that the same tests check both: the data it returns
becomes the `DataReceived` event the general path would have queued."""

from __future__ import annotations

from typing import Any

import pytest

from dtls13.connection import Connection
from dtls13.endpoint import ServerEndpoint
from dtls13.events import DataReceived

PATHS = ["general", "established"]


def _connection_receive(self: Connection, data: Any, addr: Any, now: float) -> None:
    got = self.receive_datagram_data(data, addr, now)
    if got is not None:
        self._event(DataReceived(got))


def _server_receive(self: ServerEndpoint, data: Any, addr: Any, now: float) -> Any:
    conn, got = self.receive_datagram_data(data, addr, now)
    if got is not None:
        assert conn is not None
        conn._event(DataReceived(got))
    return conn


def use_receive_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Route every receive_datagram of Connection and ServerEndpoint through `path`."""
    if path == "established":
        monkeypatch.setattr(Connection, "receive_datagram", _connection_receive)
        monkeypatch.setattr(ServerEndpoint, "receive_datagram", _server_receive)


def parametrize_modules(metafunc: pytest.Metafunc, modules: set[str]) -> None:
    """A conftest's pytest_generate_tests: run the tests of `modules` through both paths."""
    if metafunc.module.__name__.rsplit(".", 1)[-1] in modules:
        metafunc.parametrize("receive_path", PATHS, indirect=True)


@pytest.fixture(autouse=True)
def receive_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The path a test runs through ("general" unless parametrized); import it into a conftest."""
    path: str = getattr(request, "param", "general")
    use_receive_path(monkeypatch, path)
    return path
