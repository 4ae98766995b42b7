"""Shared fixtures: every test must leave every pool it created with nothing in use."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dtls13.memory import live_pools


@pytest.fixture(autouse=True)
def _pools_back_to_zero() -> Iterator[None]:
    before = {id(p) for p in live_pools()}
    yield
    gc.collect()
    leaked = [p for p in live_pools() if id(p) not in before and p.in_use]
    if leaked:
        pytest.fail(
            "test left leases live: "
            + ", ".join(f"{p.name} pool: {p.in_use} in use" for p in leaked),
            pytrace=False,
        )
