"""The modules named in BOTH_PATHS run twice: through the general receive path and through
the established data path (tests/support/established.py)."""

from __future__ import annotations

import pytest

from tests.support.established import parametrize_modules, receive_path

BOTH_PATHS = {
    "test_connection",
    "test_connection_datapath",
    "test_connection_negative",
    "test_connection_robustness",
    "test_idle_release",
    "test_key_update_deferred",
    "test_record_size_limit",
    "test_connection_ids",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_modules(metafunc, BOTH_PATHS)


__all__ = ["receive_path"]  # the autouse fixture, defined once in tests/support/established.py
