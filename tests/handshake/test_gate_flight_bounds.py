"""The gate's amplification decision uses remembered flight bounds that equal a fresh
FlightBound.bytes for every offer, and it remembers only a bounded number of them."""

from __future__ import annotations

import itertools

from dtls13.handshake.gate import FlightBound, HelloGate
from dtls13.memory import PoolSet
from tests.support.dtls_pair import cached_configs


def test_remembered_bounds_decide_as_fresh_ones_and_stay_bounded() -> None:
    _, scfg = cached_configs(server={"certificate_compression": ("zlib",)})
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    gate.amplification_limit = 3.0
    gate._cannot_pay(1, None, False)  # makes the gate's FlightBound (one signature)
    fresh = gate._flight_bound  # (a signature's length varies: another could differ)
    assert isinstance(fresh, FlightBound)
    gate._bounds.clear()
    offers = [None, (), (29,), (23, 29), (0x11EC,), (29, 0x11EC), tuple(range(300, 330))]
    compressions = [None, (), (1,), (2, 1), (0xFFFF,)]
    for _ in range(2):  # the second round answers from the remembered bounds
        for shares, psk, offer in itertools.product(offers, (False, True), compressions):
            bound = fresh.bytes(shares, psk, offer)
            for paid in (bound // 3 - 1, bound // 3, bound // 3 + 1, bound):
                expected = paid * 3.0 < bound
                assert gate._cannot_pay(paid, shares, psk, offer) is expected
    assert 0 < len(gate._bounds) <= 64
    # Offers a client makes up one after another never grow the memory past the bound.
    for n in range(500):
        gate._cannot_pay(100, (n,), False, None)
        assert len(gate._bounds) <= 64
    gate.close()
