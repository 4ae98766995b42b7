"""A handshake message whose type exists in no epoch, in a record protected with the
handshake keys, was sent by the peer itself: unexpected_message, as such a message gets in
epoch 3 and later, not a quiet drop that leaves the handshake waiting (BoringSSL's runner
sends EncryptedExtensions with its type changed and waits for the alert)."""

from __future__ import annotations

import pytest

from dtls13.alerts import AlertDescription
from dtls13.handshake import context as handshake_context
from dtls13.handshake import work as handshake_work
from dtls13.handshake.constants import HandshakeType
from tests.support.dtls_pair import SERVER_ADDR, make_pair


@pytest.mark.parametrize("renamed", [HandshakeType.encrypted_extensions, HandshakeType.finished])
def test_a_server_message_of_an_unknown_type_in_epoch_2_is_unexpected_message(
    monkeypatch: pytest.MonkeyPatch, renamed: HandshakeType
) -> None:
    original = handshake_context.HandshakeContext._send_encoded

    def send_encoded(
        self: handshake_context.HandshakeContext,
        msg_type: int,
        body: bytes,
        epoch: int | None,
        *,
        transcript: bool = True,
    ) -> None:
        original(self, msg_type, body, epoch, transcript=transcript)
        if msg_type == renamed and not self.is_client:
            last = self._out.messages[-1]
            self._out.messages[-1] = handshake_work.OutMessage(last.epoch, msg_type + 42, body)

    monkeypatch.setattr(handshake_context.HandshakeContext, "_send_encoded", send_encoded)
    pair = make_pair()
    pair.client.connect(SERVER_ADDR, 0.0)
    assert pair.net.run(lambda: pair.client.closed, max_time=10)
    ended = pair.client.terminated
    assert ended is not None and not ended.by_peer
    assert ended.alert is AlertDescription.unexpected_message
    pair.server.close()
    pair.net.run(lambda: False, max_time=pair.net.now + 1)
