"""A source's token bucket refills and spends exactly as its min/max definition says,
whatever the clock does (ahead, still, back) and in emergency mode."""

from __future__ import annotations

import random

from dtls13.admission import DoSProtectionConfig, _Bucket


class _Reference:
    """The bucket as defined: refill by the elapsed time (never negative), capped."""

    def __init__(self, cfg: DoSProtectionConfig, now: float) -> None:
        self.datagrams, self.bytes, self.stamp = cfg.datagram_burst, cfg.byte_burst, now

    def admit(self, cfg: DoSProtectionConfig, size: int, now: float, factor: float) -> bool:
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.datagrams = min(
            cfg.datagram_burst * factor,
            self.datagrams + elapsed * cfg.datagrams_per_second * factor,
        )
        self.bytes = min(
            cfg.byte_burst * factor, self.bytes + elapsed * cfg.bytes_per_second * factor
        )
        if self.datagrams < 1 or self.bytes < size:
            return False
        self.datagrams -= 1
        self.bytes -= size
        return True


def test_the_bucket_follows_its_definition_step_by_step() -> None:
    rng = random.Random(7)
    cfg = DoSProtectionConfig(
        datagrams_per_second=50.0, datagram_burst=20.0, bytes_per_second=20_000.0, byte_burst=9000.0
    )
    bucket, reference = _Bucket(cfg, 10.0), _Reference(cfg, 10.0)
    now = 10.0
    admitted = refused = 0
    for _ in range(5000):
        now += rng.choice((0.0, 0.0005, 0.002, 0.03, 1.0, -0.5, -0.0))
        size = rng.choice((60, 600, 1200, 9000, 9001))
        factor = rng.choice((1.0, 0.25))
        got = bucket.admit(cfg, size, now, factor)
        assert got is reference.admit(cfg, size, now, factor)
        assert (bucket.datagrams, bucket.bytes, bucket.stamp) == (
            reference.datagrams,
            reference.bytes,
            reference.stamp,
        )
        admitted += got
        refused += not got
    assert admitted and refused  # both outcomes were exercised
