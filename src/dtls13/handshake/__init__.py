"""TLS 1.3 handshake as DTLS 1.3 needs it (RFC 9147 §5-8, RFC 8446 §4, §7)."""
