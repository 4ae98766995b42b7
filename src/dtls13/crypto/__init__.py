"""Cryptographic building blocks shared by the record and handshake layers."""
