"""An application may abort a connection with an error alert of its choosing
(``Connection.close(alert=...)``), as it may with TLS libraries' fatal-alert calls."""

from __future__ import annotations

import pytest

from dtls13.alerts import AlertDescription
from tests.support.dtls_pair import SERVER_ADDR, Pair, make_pair

A = AlertDescription


def _connected() -> Pair:
    pair = make_pair()
    assert pair.handshake()
    return pair


def _ends(pair: Pair) -> None:
    pair.net.flush()
    pair.net.run(lambda: pair.terminated("server") is not None, max_time=pair.net.now + 5)


@pytest.mark.parametrize("alert", [A.access_denied, A.internal_error, A.handshake_failure])
def test_close_with_an_error_alert_sends_it_fatal(alert: AlertDescription) -> None:
    pair = _connected()
    pair.client.close(alert)
    _ends(pair)
    mine, theirs = pair.terminated("client"), pair.terminated("server")
    assert mine is not None and mine.alert is alert and not mine.by_peer
    assert theirs is not None and theirs.alert is alert and theirs.by_peer
    pair.close()
    assert pair.pools.in_use == 0


def test_close_with_user_canceled_then_close_notify() -> None:
    pair = _connected()
    pair.client.close(A.user_canceled)
    _ends(pair)
    mine, theirs = pair.terminated("client"), pair.terminated("server")
    assert mine is not None and mine.alert is A.user_canceled and not mine.by_peer
    # RFC 8446 §6.1: user_canceled is followed by close_notify, which ends the peer's side.
    assert theirs is not None and theirs.alert is A.close_notify and theirs.by_peer
    pair.close()


def test_close_by_default_is_close_notify() -> None:
    pair = _connected()
    pair.server.close()
    pair.net.flush()
    pair.net.run(lambda: pair.terminated("client") is not None, max_time=pair.net.now + 5)
    theirs = pair.terminated("client")
    assert theirs is not None and theirs.alert is A.close_notify and theirs.by_peer
    pair.close()


def test_close_during_the_handshake_with_an_alert_ends_it() -> None:
    pair = make_pair()
    pair.client.connect(SERVER_ADDR, pair.net.now)
    pair.client.close(A.user_canceled)
    ended = pair.terminated("client")
    assert ended is not None and ended.alert is A.user_canceled
    pair.close()


@pytest.mark.parametrize("alert", [30, "internal_error", None])
def test_close_refuses_what_is_not_an_alert_description(alert: object) -> None:
    pair = _connected()
    with pytest.raises(TypeError):
        pair.client.close(alert)  # type: ignore[arg-type]
    assert not pair.client.closed
    pair.close()
