"""What a stateless HelloRetryRequest's cookie keeps of Encrypted Client Hello, and how a
connection takes it up (RFC 9849 §7.1.1, RFC 9147 §5.1)."""

from __future__ import annotations

import pytest

from dtls13 import EchStatus, generate_ech_key
from dtls13.handshake.cookie import cookie_ech_state, pack_cookie_extra, unpack_cookie_extra
from dtls13.handshake.ech import EchCipherSuite
from dtls13.handshake.ech_server import ServerEch
from dtls13.handshake.hpke import AeadId, KdfId, setup_base_receiver, setup_base_sender

KEY = generate_ech_key(7, "public.example")
SUITE = EchCipherSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)


def _accepted_state(config_id: int = 7) -> tuple[bytes, bytes, object]:
    enc, sender = setup_base_sender(
        KEY.config.kem_id, SUITE.kdf, SUITE.aead, KEY.config.public_key, KEY.config.hpke_info
    )
    state = bytes((2, config_id)) + (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + enc
    return state, enc, sender


def test_cookie_extra_carries_the_ech_state_after_suite_and_group() -> None:
    extra = pack_cookie_extra(0x1301, 29, b"\x01")
    assert unpack_cookie_extra(extra) == (0x1301, 29)
    assert cookie_ech_state(extra) == b"\x01"
    assert cookie_ech_state(pack_cookie_extra(0x1301, None)) == b""
    assert unpack_cookie_extra(b"\x13") is None


def test_restore_takes_up_rejection_nothing_or_the_hpke_context_at_sequence_one() -> None:
    ech = ServerEch([KEY])
    assert ech.restore(b"") and ech.status is EchStatus.NOT_OFFERED
    assert ech.restore(b"\x01") and ech.status is EchStatus.REJECTED
    state, _, sender = _accepted_state()
    sender.seal(b"aad1", b"first")  # ClientHelloOuter1 took sequence 0
    ech = ServerEch([KEY])
    assert ech.restore(state) and ech.status is EchStatus.ACCEPTED
    assert ech._contexts[0].open(b"aad2", sender.seal(b"aad2", b"second")) == b"second"
    assert ech.retry_state() == state


@pytest.mark.parametrize("which", ["garbage", "unknown-id", "bad-enc", "no-keys"])
def test_restore_refuses_a_state_it_cannot_take_up(which: str) -> None:
    state, _, _ = _accepted_state()
    keys = [KEY]
    if which == "garbage":
        state = b"\x02\x07"
    elif which == "unknown-id":
        state = _accepted_state(8)[0]
    elif which == "bad-enc":
        state = state[:6] + bytes(32)
    else:
        keys = []
    ech = ServerEch(keys)
    assert not ech.restore(state)
    assert ech.status is EchStatus.NOT_OFFERED


def test_hpke_sequence_skips_forward_only() -> None:
    enc, _ = setup_base_sender(KEY.config.kem_id, 1, 1, KEY.config.public_key, b"")
    context = setup_base_receiver(KEY.config.kem_id, 1, 1, enc, KEY.private_key, b"")
    context.skip_to(3)
    assert context.sequence == 3
    with pytest.raises(ValueError):
        context.skip_to(2)
