"""The handshake state machines drawn from their transition tables.

``python -m dtls13.handshake.diagram`` prints both as Mermaid state diagrams in Markdown;
docs/handshake-states.md is its committed output (a test fails when it is stale).
"""

from __future__ import annotations

import sys

from .client import CLIENT_TRANSITIONS
from .server import SERVER_TRANSITIONS
from .state import LOCAL_TRANSITIONS, ClientState, ServerState, State, Transition, type_name


def tables() -> dict[str, dict[tuple[State, int], Transition]]:
    """The transition table of each role, by role name."""
    return {"client": CLIENT_TRANSITIONS, "server": SERVER_TRANSITIONS}


def accepts(state: State) -> frozenset[int]:
    """The handshake message types `state` accepts; any other is unexpected_message."""
    table = tables()["client" if isinstance(state, ClientState) else "server"]
    return frozenset(t for (s, t) in table if s is state)


def diagram() -> str:
    """The state diagrams of both roles, Mermaid in Markdown, drawn from the tables."""
    lines = [
        "# Handshake states",
        "",
        "Generated from the transition tables in `src/dtls13/handshake/client.py` and",
        "`src/dtls13/handshake/server.py` by `python -m dtls13.handshake.diagram`;",
        "a test fails when this file is stale. A message not drawn from a state is",
        "`unexpected_message`; any state goes to CLOSED on a fatal alert, a timeout or",
        "`close()`.",
    ]
    starts: dict[str, State] = {
        "client": ClientState.START,
        "server": ServerState.WAIT_CLIENT_HELLO,
    }
    for role, table in tables().items():
        lines += ["", f"## {role.capitalize()}", "", "```mermaid", "stateDiagram-v2"]
        lines.append(f"    [*] --> {starts[role].name}")
        edges: dict[tuple[str, str], list[str]] = {}
        for (state, label), to in LOCAL_TRANSITIONS.items():
            if type(state) is type(starts[role]):
                edges.setdefault((state.name, to.name), []).append(label)
        for (state, msg_type), transition in table.items():
            for target in transition.targets:
                edges.setdefault((state.name, target.name), []).append(type_name(msg_type))
        for (a, b), labels in edges.items():
            lines.append(f"    {a} --> {b} : {', '.join(dict.fromkeys(labels))}")
        lines.append("```")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m dtls13.handshake.diagram", file=sys.stderr)
        return 2
    sys.stdout.write(diagram())
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the docs test
    raise SystemExit(main(sys.argv[1:]))
