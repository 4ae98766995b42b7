"""Wire constants of the TLS 1.3 handshake as DTLS 1.3 uses it (IANA registry names)."""

from __future__ import annotations

import enum

# Algorithm names the public API (configs, events) uses too: defined below the handshake.
from ..crypto.registry import NamedGroup as NamedGroup
from ..crypto.registry import SignatureScheme as SignatureScheme

# RFC 9147 §5.3: legacy_version is {254, 253} (DTLS 1.2); supported_versions carries
# {254, 252} for DTLS 1.3.
DTLS_LEGACY_VERSION = 0xFEFD
DTLS13_VERSION = 0xFEFC
DTLS12_VERSION = 0xFEFD
DTLS10_VERSION = 0xFEFF


class HandshakeType(enum.IntEnum):
    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    request_connection_id = 9
    new_connection_id = 10
    certificate = 11
    certificate_request = 13
    certificate_verify = 15
    finished = 20
    key_update = 24
    compressed_certificate = 25  # RFC 8879
    message_hash = 254


class ExtensionType(enum.IntEnum):
    server_name = 0
    max_fragment_length = 1
    status_request = 5
    supported_groups = 10
    ec_point_formats = 11
    signature_algorithms = 13
    use_srtp = 14
    heartbeat = 15
    application_layer_protocol_negotiation = 16
    signed_certificate_timestamp = 18
    client_certificate_type = 19  # RFC 7250
    server_certificate_type = 20  # RFC 7250
    padding = 21
    encrypt_then_mac = 22
    extended_master_secret = 23
    compress_certificate = 27  # RFC 8879
    record_size_limit = 28
    delegated_credential = 34  # RFC 9345
    session_ticket = 35
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    connection_id = 54
    ech_outer_extensions = 0xFD00  # RFC 9849 §5.1
    encrypted_client_hello = 0xFE0D  # RFC 9849 §5
    renegotiation_info = 0xFF01


class PskKeyExchangeMode(enum.IntEnum):
    psk_ke = 0
    psk_dhe_ke = 1


class KeyUpdateRequest(enum.IntEnum):
    update_not_requested = 0
    update_requested = 1
