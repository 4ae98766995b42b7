"""Peer addresses: the routing key of an (IP literal, port) address, and how to print one."""

from __future__ import annotations

import ipaddress
import socket as stdlib_socket
from typing import Any

_AF_INET = stdlib_socket.AF_INET


def describe(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def address_key(address: Any) -> tuple[str, int]:
    """The routing key of an (IP literal, port) address: the forms recvfrom reports."""
    host, port = address[0], address[1]
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
