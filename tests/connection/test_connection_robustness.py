"""200 seeded handshakes per impairment: all complete, data arrives intact, pools drain.

Each handshake runs on a fake clock (a failed one costs no wall time), configs and
certificates are shared between handshakes, and one PoolSet serves all 200 connections
of a test so that a lease kept by any one of them shows up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls13.memory import PoolSet
from tests.support.dtls_pair import Pair, make_pair, pki
from tests.support.netsim import Impairments

RUNS = 200


@dataclass
class Scenario:
    impairments: Impairments
    seed_base: int
    kind: str = "ec256"
    config: dict[str, Any] = field(default_factory=dict)


SCENARIOS = {
    "loss30": Scenario(Impairments(loss=0.30), 0),
    "reorder": Scenario(Impairments(reorder=0.5, reorder_delay=0.2), 10_000),
    "duplicate": Scenario(Impairments(duplicate=0.5), 20_000),
    "mtu576_rsa4096": Scenario(Impairments(mtu=576), 40_000, "rsa4096", {"mtu": 576}),
}


def _one(pools: PoolSet, scenario: Scenario, seed: int) -> Pair:
    cfg = scenario.config
    pair = make_pair(
        seed,
        scenario.impairments,
        scenario.kind,
        client=dict(cfg),
        server=dict(cfg),
        pools=pools,
        cache=True,
    )
    return pair


def _check_drained(pair: Pair, pools: PoolSet) -> None:
    pair.close()
    assert pair.client.owner.in_use == 0 and pair.server.owner.in_use == 0
    assert pools.in_use == 0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_200_handshakes_under_impairment(name: str) -> None:
    scenario = SCENARIOS[name]
    pools = PoolSet()
    started = time.perf_counter()
    totals: dict[str, int] = {}
    for i in range(RUNS):
        seed = scenario.seed_base + i
        pair = _one(pools, scenario, seed)
        assert pair.handshake(), (seed, pair.terminated("client"), pair.terminated("server"))
        assert pair.exchange(b"client %d" % seed, b"server %d" % seed), seed
        for key in ("lost", "reordered", "duplicated", "too_big", "sent"):
            totals[key] = totals.get(key, 0) + getattr(pair.net.stats, key)
        assert pair.net.stats.largest <= (scenario.config.get("mtu") or 1200)
        _check_drained(pair, pools)
    # The impairment really happened.
    imp = scenario.impairments
    if imp.loss:
        assert totals["lost"] > 0.2 * totals["sent"]
    if imp.reorder:
        assert totals["reordered"] > 0.3 * totals["sent"]
    if imp.duplicate:
        assert totals["duplicated"] > 0.3 * totals["sent"]
    if imp.mtu:
        # Our side never sent anything too big for the path.
        assert totals["too_big"] == 0
    stats = pools.statistics()
    assert stats.in_use == 0 and stats.in_use_bytes == 0
    print(f"{name}: {RUNS} handshakes in {time.perf_counter() - started:.2f}s")


def test_mtu576_chain_is_rsa4096_and_fragmented() -> None:
    scenario = SCENARIOS["mtu576_rsa4096"]
    pools = PoolSet()
    pair = _one(pools, scenario, 1)
    assert pair.handshake()
    chain = pair.client.peer_certificates
    assert len(chain) == 2
    assert all(c.public_key().key_size == 4096 for c in chain)  # type: ignore[union-attr]
    # The server's flight (two 4096-bit certificates) took several datagrams.
    assert pair.net.stats.by_sender[("10.0.0.2", 4433)] >= 6
    _check_drained(pair, pools)


def _plaintext_hit(log: list[tuple[bytes, bytes]]) -> bool:
    """Did the network flip a bit inside an unprotected (DTLSPlaintext) record?"""
    for sent, delivered in log:
        flipped = next(i for i in range(len(sent)) if sent[i] != delivered[i])
        # DTLSPlaintext: type 22, version, epoch 0, seq, 16-bit length (RFC 9147 §4).
        if sent[0] == 0x16 and sent[3:5] == b"\0\0":
            end = 13 + int.from_bytes(sent[11:13], "big")
            if flipped < end:
                return True
    return False


def test_200_handshakes_under_5_percent_corruption() -> None:
    """Corrupted protected records fail their AEAD check and are dropped like a loss.

    The first ClientHello and the ServerHello travel unprotected (RFC 9147 §4): a bit
    flipped in them that still parses is only detected as a transcript mismatch, so that
    handshake fails (the peers can no longer read each other) or ends with an alert, as in
    any (D)TLS. The application then connects again, which is what this test does, and it
    checks that every failed attempt had such a datagram corrupted and that no corrupted
    data was ever delivered.
    """
    imp = Impairments(corrupt=0.05)
    pools = PoolSet()
    started = time.perf_counter()
    corrupted = 0
    retries = 0
    for i in range(RUNS):
        seed = 30_000 + i
        attempt = 0
        while True:
            pair = make_pair(seed + attempt * 1_000_000, imp, pools=pools, cache=True)
            ok = pair.handshake()
            if ok:
                break
            corrupted += pair.net.stats.corrupted
            assert _plaintext_hit(pair.net.stats.corrupted_log), (seed, attempt)
            for side in ("client", "server"):
                end = pair.terminated(side)
                assert end is not None
            _check_drained(pair, pools)
            attempt += 1
            retries += 1
            assert attempt < 3, seed
        assert pair.exchange(b"client %d" % seed, b"server %d" % seed), seed
        corrupted += pair.net.stats.corrupted
        _check_drained(pair, pools)
    assert corrupted > 0.03 * RUNS * 6  # about 6 datagrams per handshake and exchange
    # Only the few unprotected datagrams can cost a handshake.
    assert retries < RUNS * 0.1
    assert pools.statistics().in_use == 0
    print(f"corrupt5: {RUNS} handshakes, {retries} retried, {time.perf_counter() - started:.2f}s")


def test_one_damaged_protected_record_is_a_loss_not_a_restart() -> None:
    """A bit flipped in an epoch-2 record of the server's first flight only costs that
    record: the client, which authenticated the flight's other epoch-2 records, must not
    take the ServerHello the server repeats for a transcript split and start over."""
    from tests.support.conn_helpers import split_records

    pair = make_pair()
    # Peers that send each message in a record of its own (as OpenSSL and wolfSSL may).
    pair.server.coalesce_handshake_records = False
    state = {"done": False}

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        records = split_records(data)
        if state["done"] or src != ("10.0.0.2", 4433) or len(records) < 3:
            return data
        state["done"] = True
        # Damage the first protected record (EncryptedExtensions) of the first flight.
        bad = bytearray(records[1])
        bad[-1] ^= 0x01
        records[1] = bytes(bad)
        return b"".join(records)

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30)
    assert state["done"]
    assert pair.client.stats["handshake_restarts"] == 0
    assert pair.exchange(b"no", b"restart")
    pair.close()


def test_everything_at_once_under_loss_and_reordering() -> None:
    """Cookie HRR, a group HRR's worth of ML-KEM (fragmented ClientHello), client auth and
    a 700-byte MTU, 50 seeds under 20% loss with reordering and duplication."""
    leaf = pki().leaf("ec256", cn="client")
    pools = PoolSet()
    imp = Impairments(loss=0.2, reorder=0.3, duplicate=0.1)
    for i in range(50):
        pair = make_pair(
            50_000 + i,
            imp,
            client={
                "mtu": 700,
                "key_share_groups": ["X25519MLKEM768"],
                "certificate_chain": leaf.chain_pem,
                "private_key": leaf.key_pem,
            },
            server={
                "mtu": 700,
                "groups": ["X25519MLKEM768", "x25519"],
                "require_cookie": True,
                "client_auth": "required",
                "cafile": pki().root_pem,
            },
            pools=pools,
            cache=True,
        )
        assert pair.handshake(), (i, pair.terminated("client"), pair.terminated("server"))
        assert pair.server.stats["hello_retry_requests_sent"] >= 1
        assert pair.server.peer_certificates
        assert pair.exchange(b"all %d" % i, b"at once %d" % i)
        _check_drained(pair, pools)


def test_lost_hello_retry_request_after_a_fragmented_client_hello() -> None:
    """The server must not ACK a fragmented ClientHello1 it answered with an HRR: the HRR
    is not retransmitted on a timer, so the client's ClientHello1 retransmission is what
    brings it back; an ACK stopped that and both sides waited for the handshake timeout."""
    pair = make_pair(
        client={"key_share_groups": ["X25519MLKEM768"]},
        server={"groups": ["X25519MLKEM768"], "require_cookie": True},
    )
    dropped: list[bytes] = []

    def tamper(src: Any, dst: Any, data: bytes) -> bytes | None:
        if src == ("10.0.0.2", 4433) and not dropped:
            dropped.append(data)  # the HelloRetryRequest
            return None
        return data

    pair.net.tamper = tamper
    assert pair.handshake(max_time=30)
    assert dropped and dropped[0][0] == 0x16
    assert pair.net.now < 5  # recovered by the client's first retransmission
    assert pair.client.stats["acks_received"] == 0 or pair.client.stats["retransmissions"] > 0
    pair.close()


def test_key_updates_both_ways_under_loss_reordering_and_duplication() -> None:
    """100 seeds x 4 KeyUpdates (alternating sides, with and without update_requested)
    with data exchanged at every step under 30% loss, reordering and duplication."""
    pools = PoolSet()
    imp = Impairments(loss=0.3, reorder=0.3, duplicate=0.2)
    for i in range(100):
        pair = make_pair(60_000 + i, imp, pools=pools, cache=True)
        assert pair.handshake(), i
        for r in range(4):
            side = pair.client if r % 2 == 0 else pair.server
            side.key_update(request_peer=r % 3 != 0)
            assert pair.exchange(b"c %d %d" % (i, r), b"s %d %d" % (i, r)), (i, r)
            pair.net.run(lambda: False, max_time=pair.net.now + 3)
        # Every requested update happened: both sides moved past epoch 3, given the time a
        # retransmission timer backed off to its 60 s maximum needs where several ACKs in a
        # row were lost (30% loss: one seed in a hundred loses four in a row).
        c, s = pair.client._records, pair.server._records
        assert pair.net.run(
            lambda c=c, s=s: c.write_epoch > 3 and s.write_epoch > 3,
            max_time=pair.net.now + 600,
        ), i
        _check_drained(pair, pools)


def _forged_epoch3_record(cid: bytes = b"") -> bytes:
    """A unified-header record (16-bit sequence number, length) of epoch bits 3 whose
    ciphertext is junk: it can only fail authentication."""
    junk = bytes(range(32))
    return bytes([0x2F | (0x10 if cid else 0)]) + cid + b"\x12\x34" + b"\x00\x20" + junk


@pytest.mark.parametrize("suite", ["TLS_AES_128_CCM_8_SHA256", "TLS_AES_128_GCM_SHA256"])
def test_forgeries_past_the_integrity_limit_rotate_keys_instead_of_closing(suite: str) -> None:
    """RFC 9147 §4.5.3: count records failing authentication per key; before the limit,
    update keys with update_requested, and drop the old key at its limit rather than close.
    CCM-8's limit is 2^7: 1,000 forged records from the peer's address must not end it."""
    from tests.support.dtls_pair import CLIENT_ADDR, SERVER_ADDR

    opts = {"cipher_suites": [suite]}
    pair = make_pair(client=opts, server=opts)
    assert pair.handshake()
    for burst in range(10):
        for _ in range(100):
            pair.net.inject(CLIENT_ADDR, SERVER_ADDR, _forged_epoch3_record())
        pair.net.run(lambda: False, max_time=pair.net.now + 0.5)
        assert pair.exchange(b"c%d" % burst, b"s%d" % burst), burst
    assert not pair.server.closed and not pair.client.closed
    if suite == "TLS_AES_128_CCM_8_SHA256":
        assert pair.server.stats["key_updates_sent"] >= 1
        assert pair.server._records.auth_failures(pair.server._records.read_epochs()[-1]) < 128
    pair.close()
    assert pair.pools.in_use == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    plan=st.lists(
        st.tuples(st.sampled_from(["client", "server", "both"]), st.booleans(), st.floats(0, 2)),
        min_size=1,
        max_size=5,
    ),
)
def test_crossing_key_updates_under_loss_keep_data_flowing(
    seed: int, plan: list[tuple[str, bool, float]]
) -> None:
    """Both sides update keys at arbitrary moments, at once or not, with or without
    update_requested, while the network loses, reorders and duplicates: no ACK storm,
    no stall, and data still flows both ways."""
    pools = PoolSet()
    imp = Impairments(loss=0.2, reorder=0.3, duplicate=0.2)
    pair = make_pair(seed, imp, pools=pools, cache=True)
    assert pair.handshake()
    for step, (who, requested, pause) in enumerate(plan):
        for side in [pair.client, pair.server] if who == "both" else [getattr(pair, who)]:
            side.key_update(request_peer=requested)
        pair.net.run(lambda: False, max_time=pair.net.now + pause)
        assert pair.exchange(b"c%d" % step, b"s%d" % step), step
    datagrams = pair.client.stats["datagrams_out"] + pair.server.stats["datagrams_out"]
    pair.net.run(lambda: False, max_time=pair.net.now + 30)
    later = pair.client.stats["datagrams_out"] + pair.server.stats["datagrams_out"]
    assert later - datagrams <= 20  # quiet once the updates are acknowledged: no ACK storm
    _check_drained(pair, pools)
