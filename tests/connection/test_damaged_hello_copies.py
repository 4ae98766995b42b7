"""A damaged copy of a hello that arrives just before the genuine one and is refused as
damaged leaves no trace: whatever byte of a ClientHello, HelloRetryRequest or ServerHello
record came changed, once the receiver dropped the copy (a hello that does not decode or
make sense, counted in dropped_damaged_hello), the genuine copy completes the handshake.
This is what a handler that changes its state before it finds a hello bad breaks: the
genuine hello then meets the damaged one's leftovers.

A damaged copy that still makes sense is taken as the genuine hello would be (nothing in
an unauthenticated hello tells them apart); what follows depends on the damage, and is
not what this test is about."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.dtls_pair import SERVER_ADDR, make_pair

SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "direct": ({}, {}),
    "retry_for_a_group": (
        {"groups": ["x25519", "secp256r1"], "key_share_groups": ["x25519"]},
        {"groups": ["secp256r1"]},
    ),
    "retry_for_a_cookie": ({}, {"require_cookie": True}),
}


def _hello_record_length(data: bytes) -> int:
    """The length of the datagram's first record if it is a plaintext hello, else 0."""
    if len(data) < 14 or data[0] != 22 or data[13] not in (1, 2):
        return 0
    return 13 + int.from_bytes(data[11:13], "big")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(sorted(SCENARIOS)),
    which=st.integers(0, 3),  # the hello datagram (in sending order) that gets a damaged copy
    at=st.floats(0.0, 1.0, exclude_max=True),  # where in its hello record
    flip=st.integers(1, 255),
)
def test_a_damaged_copy_before_the_genuine_hello_never_stops_the_handshake(
    scenario: str, which: int, at: float, flip: int
) -> None:
    client, server = SCENARIOS[scenario]
    pair = make_pair(3, client=client, server=server)
    hellos = 0

    def damage(src: Any, dst: Any, data: bytes) -> bytes:
        nonlocal hellos
        length = _hello_record_length(data)
        if length:
            if hellos == which:
                bad = bytearray(data)
                bad[int(at * length)] ^= flip
                pair.net.inject(src, dst, bytes(bad))  # delivered before `data`
            hellos += 1
        return data

    pair.net.tamper = damage
    pair.client.connect(SERVER_ADDR, 0.0)
    completed = pair.net.run(pair.completed, max_time=120.0)
    refused = (
        pair.client.stats["dropped_damaged_hello"] + pair.server.stats["dropped_damaged_hello"]
    )
    if refused:  # the damaged copy was refused: the genuine hello must find no trace of it
        assert completed, (pair.terminated("client"), pair.terminated("server"))
        assert pair.exchange(b"ping", b"pong")
    pair.close()
    assert pair.pools.in_use == 0
