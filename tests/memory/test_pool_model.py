"""Hypothesis state machine: the pools against a plain model of who holds what."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dtls13.memory import Lease, LeaseReleasedError, MemoryBudgetExceeded, PoolSet

SIZES = st.sampled_from([1, 60, 64, 200, 1200, 1536, 3000, 16000])


class PoolModel(RuleBasedStateMachine):
    @initialize(limit=st.integers(2000, 60000), conn_limit=st.integers(500, 20000))
    def setup(self, limit: int, conn_limit: int) -> None:
        self.pools = PoolSet(max_total_memory=limit, policy="conservative")
        self.endpoint = self.pools.owner("endpoint", "e")
        self.conns = [
            self.pools.owner("connection", i, conn_limit, parent=self.endpoint) for i in range(2)
        ]
        self.conn_limit = conn_limit
        self.limit = limit
        self.live: dict[int, tuple[Lease, int, int]] = {}  # id -> (lease, owner idx, slot)
        self.views: list[tuple[memoryview, Lease]] = []
        self.released: list[Lease] = []
        self.next_id = 0

    def _bytes(self, owner: int | None = None) -> int:
        return sum(slot for _, o, slot in self.live.values() if owner is None or o == owner)

    @rule(size=SIZES, owner=st.integers(0, 1), secure=st.booleans())
    def acquire(self, size: int, owner: int, secure: bool) -> None:
        # The smallest class that holds `size`, as the model sees the public classes.
        slot = min(p.slot_size for p in self.pools.pools if p.slot_size >= size)
        fits = self._bytes() + slot <= self.limit and self._bytes(owner) + slot <= self.conn_limit
        try:
            lease = self.pools.acquire(size, self.conns[owner], secure)
        except MemoryBudgetExceeded:
            assert not fits
            return
        assert fits
        addresses = {_addr(le) for le, _, _ in self.live.values()}
        assert _addr(lease) not in addresses  # never lent twice
        lease.write(0, bytes([self.next_id % 256]) * size)
        self.live[self.next_id] = (lease, owner, slot)
        self.next_id += 1

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def slice_then_release(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.live)))
        lease, _, _ = self.live.pop(key)
        view = lease.view(0, min(len(lease), 8))
        lease.release()
        self.views.append((view, lease))
        self.released.append(lease)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.live)))
        lease, _, _ = self.live.pop(key)
        lease.release()
        self.released.append(lease)

    @precondition(lambda self: self.views)
    @rule()
    def drop_view(self) -> None:
        view, _ = self.views.pop(0)
        view.release()

    @precondition(lambda self: self.released)
    @rule()
    def stale_release_raises(self) -> None:
        try:
            self.released[-1].release()
        except LeaseReleasedError:
            return
        raise AssertionError("second release did not raise")

    @invariant()
    def counts_match_the_model(self) -> None:
        if not hasattr(self, "pools"):
            return
        held_by_views = {id(lease) for _, lease in self.views}
        assert self.pools.in_use == len(self.live) + len(held_by_views)
        assert self.pools.in_use_bytes == self._bytes()  # budgets count live leases only
        for i, conn in enumerate(self.conns):
            assert conn.in_use == self._bytes(i)
            assert conn.live == sum(1 for _, o, _ in self.live.values() if o == i)
        assert self.endpoint.in_use == self._bytes()
        for key, (lease, _, _) in self.live.items():
            assert lease.tobytes()[:1] in (b"", bytes([key % 256]))

    def teardown(self) -> None:
        if hasattr(self, "pools"):
            for view, _ in self.views:
                view.release()
            for lease, _, _ in self.live.values():
                lease.release()
            assert self.pools.in_use == 0


def _addr(lease: Lease) -> int:
    import ctypes

    view = memoryview(lease)
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view)) if len(view) else id(lease)
    finally:
        view.release()


TestPoolModel = PoolModel.TestCase
TestPoolModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
