"""DTLS 1.3 record layer (RFC 9147 §4, §7)."""
