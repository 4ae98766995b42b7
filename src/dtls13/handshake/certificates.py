"""Certificates, private keys, trust stores and CertificateVerify signatures.

The code lives in three modules, re-exported here: `credentials` (chains, keys and trust
stores loaded from configuration: raise at once, `FileNotFoundError` or `ValueError`),
`signatures` (key types, signature schemes, CertificateVerify) and `chains` (the peer's
chain, parsed and verified; bytes from the peer raise only `Alert` subclasses).
"""

from __future__ import annotations

from .chains import (
    parse_certificate_chain_untrusted,
    server_name_subject,
    verify_client_chain,
    verify_server_chain,
)
from .credentials import (
    SYSTEM_CA_FILES,
    CertificateSource,
    KeySource,
    TrustStore,
    check_key_matches_certificate,
    load_certificate_chain,
    load_identity,
    load_private_key,
    load_trust_store,
    system_trust_store,
)
from .signatures import (
    CLIENT_CONTEXT,
    DEFAULT_SIGNATURE_SCHEMES,
    HAVE_MLDSA,
    MIN_RSA_BITS,
    SERVER_CONTEXT,
    PrivateKey,
    PublicKey,
    certificate_verify_content,
    choose_scheme,
    schemes_for_certificate,
    schemes_for_key,
    sign_certificate_verify,
    verify_certificate_verify,
)

__all__ = [
    "CLIENT_CONTEXT",
    "DEFAULT_SIGNATURE_SCHEMES",
    "HAVE_MLDSA",
    "MIN_RSA_BITS",
    "SERVER_CONTEXT",
    "SYSTEM_CA_FILES",
    "CertificateSource",
    "KeySource",
    "PrivateKey",
    "PublicKey",
    "TrustStore",
    "certificate_verify_content",
    "check_key_matches_certificate",
    "choose_scheme",
    "load_certificate_chain",
    "load_identity",
    "load_private_key",
    "load_trust_store",
    "parse_certificate_chain_untrusted",
    "schemes_for_certificate",
    "schemes_for_key",
    "server_name_subject",
    "sign_certificate_verify",
    "system_trust_store",
    "verify_certificate_verify",
    "verify_client_chain",
    "verify_server_chain",
]
