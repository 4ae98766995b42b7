"""dtls13: DTLS 1.3 (RFC 9147) for Python on trio."""

from __future__ import annotations

__version__ = "0.1.0"
