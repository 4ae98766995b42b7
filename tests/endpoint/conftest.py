"""The modules named in BOTH_PATHS run twice: through the general receive path and through
the established data path (tests/support/established.py)."""

from __future__ import annotations

import pytest

from tests.support.established import parametrize_modules, receive_path

BOTH_PATHS = {
    "test_endpoint",
    "test_demux",
    "test_off_path_forgeries",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_modules(metafunc, BOTH_PATHS)


__all__ = ["receive_path"]  # the autouse fixture, defined once in tests/support/established.py
