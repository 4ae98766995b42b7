"""The handshake state machines are data: one enum per role, a transition table, one
`_set_state`. These tests walk the tables and hold the committed diagram to them."""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from dtls13.alerts import UnexpectedMessage
from dtls13.handshake.client import CLIENT_TRANSITIONS, ClientHandshake
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.constants import NamedGroup as G
from dtls13.handshake.context import HandshakeContext
from dtls13.handshake.diagram import diagram
from dtls13.handshake.server import SERVER_TRANSITIONS, ServerHandshake
from dtls13.handshake.state import (
    HELLO_STATES,
    HELLO_VERIFY_REQUEST,
    ClientState,
    ServerState,
    State,
    Transition,
)
from tests.support.conn_helpers import auth_pair
from tests.support.dtls_pair import SERVER_ADDR, Pair, configs, first_session, make_pair, wall_clock

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIAGRAM = ROOT / "docs" / "handshake-states.md"
MESSAGE_TYPES = sorted({int(t) for t in HandshakeType} | {0, HELLO_VERIFY_REQUEST, 99, 255})
ROLES: list[tuple[type[HandshakeContext], type[ClientState] | type[ServerState], dict]] = [
    (ClientHandshake, ClientState, CLIENT_TRANSITIONS),
    (ServerHandshake, ServerState, SERVER_TRANSITIONS),
]


def _context(cls: type[HandshakeContext]) -> HandshakeContext:
    cfg = configs()[0 if cls is ClientHandshake else 1]
    return cls(cfg, wall_clock=wall_clock, count=lambda name, n: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cls", "states", "table"), ROLES, ids=["client", "server"])
def test_every_message_not_in_the_table_is_unexpected_message(
    cls: type[HandshakeContext], states: type[ClientState] | type[ServerState], table: dict
) -> None:
    """RFC 8446 §A: in every state, every message type the table does not list for it
    (including types that do not exist) is unexpected_message, before it is decoded."""
    checked = 0
    for state in states:
        for msg_type in MESSAGE_TYPES:
            if (state, msg_type) in table:
                continue
            ctx = _context(cls)
            ctx._set_state(state)
            with pytest.raises(UnexpectedMessage, match=f"in state {state.value}$"):
                ctx.handle_message(msg_type, b"\x00garbage", 0.0)
            assert ctx.state is state
            checked += 1
    assert checked > len(MESSAGE_TYPES) * (len(states) - 2)


@pytest.mark.parametrize(("cls", "states", "table"), ROLES, ids=["client", "server"])
def test_every_transition_names_a_handler_and_states_of_its_role(
    cls: type[HandshakeContext], states: type[ClientState] | type[ServerState], table: dict
) -> None:
    for (state, _), transition in table.items():
        assert isinstance(state, states) and isinstance(transition, Transition)
        assert callable(getattr(cls, transition.handler))
        assert all(isinstance(t, states) for t in transition.targets)
        assert states.CLOSED not in transition.targets  # only close() ends a context
    assert cls.TRANSITIONS is table


def test_a_state_change_outside_the_transitions_targets_is_refused() -> None:
    """_set_state checks the target against the table entry being handled, so the
    diagram drawn from the table is the machine that runs."""
    ctx = _context(ClientHandshake)
    ctx._transition = CLIENT_TRANSITIONS[(ClientState.WAIT_FINISHED, HandshakeType.finished)]
    with pytest.raises(AssertionError):
        ctx._set_state(ClientState.WAIT_SERVER_HELLO)


def _finish(pair: Pair) -> None:
    assert pair.net.run(pair.completed)
    assert pair.exchange(b"ping", b"pong")
    pair.close()


def _handshakes() -> None:
    """A full handshake, one through a HelloRetryRequest, a resumption with 0-RTT and
    one with client authentication."""
    full = make_pair(1)
    full.client.connect(SERVER_ADDR, 0.0)
    _finish(full)
    hrr = make_pair(
        3,
        client={"groups": [G.x25519, G.secp384r1], "key_share_groups": [G.x25519]},
        server={"groups": [G.secp384r1, G.secp256r1]},
    )
    hrr.client.connect(SERVER_ADDR, 0.0)
    _finish(hrr)
    cfgs = configs(server={"max_early_data": 4096})
    session = first_session(cfgs)
    resumed = make_pair(4, cfgs=(dataclasses.replace(cfgs[0], session=session), cfgs[1]))
    resumed.client.connect(SERVER_ADDR, 0.0)
    resumed.client.send_early_data(b"early")
    _finish(resumed)
    auth = auth_pair(1200)
    auth.client.connect(SERVER_ADDR, 0.0)
    _finish(auth)


def test_every_state_is_reached_in_some_handshake(caplog: pytest.LogCaptureFixture) -> None:
    """Every state of both enums is entered (and logged at debug by _set_state) in a full
    handshake, a HelloRetryRequest, a resumption with 0-RTT or client authentication."""
    with caplog.at_level(logging.DEBUG, logger="dtls13.handshake"):
        _handshakes()
    seen: dict[str, set[str]] = {"client": set(), "server": set()}
    for record in caplog.records:
        if record.name == "dtls13.handshake":
            role, state, _ = record.args  # type: ignore[misc]
            seen[role].add(state)
    assert seen["client"] == {s.name for s in ClientState}
    assert seen["server"] == {s.name for s in ServerState}


def test_transitions_are_counted() -> None:
    """A full handshake: START, WAIT_SERVER_HELLO, WAIT_ENCRYPTED_EXTENSIONS,
    WAIT_CERTIFICATE_OR_REQUEST, WAIT_CERTIFICATE_VERIFY, WAIT_FINISHED, CONNECTED."""
    pair = make_pair(5)
    assert pair.handshake()
    assert pair.client.handshake.transitions == 7
    assert pair.client.state is ClientState.CONNECTED
    # WAIT_CLIENT_HELLO, WAIT_CLIENT_FINISHED, CONNECTED
    assert pair.server.handshake.transitions == 3
    pair.close()
    assert pair.client.state is ClientState.CLOSED and pair.server.state is ServerState.CLOSED


def test_the_committed_state_diagram_is_current() -> None:
    """docs/handshake-states.md is `python -m dtls13.handshake.diagram` output."""
    assert DIAGRAM.read_text() == diagram(), (
        "regenerate it: python -m dtls13.handshake.diagram > docs/handshake-states.md"
    )


def test_the_diagram_command_prints_the_diagram() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dtls13.handshake.diagram"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == diagram()
    every: list[State] = [*ClientState, *ServerState]
    for state in every:
        if state.name != "CLOSED":
            assert f" {state.name}" in done.stdout, state


def test_looking_a_state_up_runs_no_python_code() -> None:
    # Every transition looks its state up in a set and the handler table: identity hashing.
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)

    table = {ServerState.CONNECTED: 1, ClientState.START: 2}
    sys.setprofile(profile)
    try:
        found = (ServerState.CONNECTED in HELLO_STATES, ClientState.START in HELLO_STATES)
        value = table.get(ClientState.START)
    finally:
        sys.setprofile(None)
    assert found == (False, True) and value == 2
    assert calls == []
