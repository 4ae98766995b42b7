"""`python -m dtls13`: the echo server and client (see dtls13.cli)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
