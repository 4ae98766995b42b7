"""`python -m dtls13`: command-line entry point."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sys.stderr.write(
        "dtls13: the echo server and client are not implemented yet "
        f"(asked for: {' '.join(args) or 'nothing'}); the package so far provides the "
        "memory subsystem (dtls13.memory) and the wire-format Buffer.\n"
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
