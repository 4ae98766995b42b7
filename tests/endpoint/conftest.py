"""The modules named in BOTH_PATHS run twice: through the general receive path and through
the established data path (tests/support/established.py)."""

from __future__ import annotations

import pytest

from tests.support.established import PATHS, use_receive_path

BOTH_PATHS = {
    "test_endpoint",
    "test_demux",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_PATHS:
        metafunc.parametrize("receive_path", PATHS, indirect=True)


@pytest.fixture(autouse=True)
def receive_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    path: str = getattr(request, "param", "general")
    use_receive_path(monkeypatch, path)
    return path
