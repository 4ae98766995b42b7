"""UDP helpers shared by the event-loop adapters (no event loop imported here)."""

from __future__ import annotations

import ipaddress
import socket as stdlib_socket
from typing import Any

from .arguments import check_port

_AF_INET = stdlib_socket.AF_INET


class RawSocket(stdlib_socket.socket):
    """A dup of an endpoint's socket for non-blocking calls. Collected unclosed, it closes
    quietly: the endpoint that owns it is the one that warns."""

    __slots__ = ()

    def __del__(self) -> None:
        self.close()


def describe_address(address: Any) -> str:
    """``host:port``, or ``[host]:port`` for IPv6."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def address_key(address: Any) -> tuple[str, int]:
    """The routing key of an (IP literal, port) address: the forms recvfrom reports."""
    host, port = address[0], address[1]
    check_port(port)
    try:
        # The usual case, a dotted quad already in the form recvfrom reports, costs no parse.
        if stdlib_socket.inet_ntop(_AF_INET, stdlib_socket.inet_pton(_AF_INET, host)) == host:
            return host, int(port)
    except (OSError, TypeError, ValueError):
        pass
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).compressed, int(port)
    except (ValueError, AttributeError):
        raise ValueError(
            f"{address!r}: connect() takes an IP address; resolve host names first "
            "(open_dtls_client does)"
        ) from None
