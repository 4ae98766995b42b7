"""The server's first flight (RFC 8446 §2, §4.1.3, §4.3, RFC 9147 §5): ServerHello,
EncryptedExtensions, [CertificateRequest, Certificate, CertificateVerify], Finished, and
the keys it takes. What the ClientHello asked and server.py decided is answered here: in
the ServerHello, key_share, pre_shared_key and connection_id; in EncryptedExtensions,
server_name, ALPN, record_size_limit, use_srtp, early_data, the certificate types, ECH
retry configurations and the trust anchors available.

A function of `ServerHandshake` (server.py binds it; it holds the state it uses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import compression, srtp, stapling, trust_anchors
from . import extensions as ext
from . import messages as msgs
from .authentication import signing_schemes
from .constants import DTLS13_VERSION, ExtensionType
from .context import decode, record_size_limit
from .state import ServerState as S
from .work import FlightKind

if TYPE_CHECKING:
    from .psk_choice import Accepted
    from .server import ServerHandshake

# The ServerHello's supported_versions (always DTLS 1.3): encoded once.
_SH_SUPPORTED_VERSIONS = ext.make_extension(
    ExtensionType.supported_versions, ext.push_supported_versions_server, DTLS13_VERSION
)


def send_server_flight(
    hs: ServerHandshake,
    ch: msgs.ClientHello,
    group: int | None,
    server_share: bytes,
    shared: bytes | None,
    accepted: Accepted | None,
) -> None:
    """ServerHello, EncryptedExtensions, [CertificateRequest, Certificate,
    CertificateVerify], Finished: one flight, and the keys it takes."""
    cfg = hs.config
    out = hs._out
    out.flight = FlightKind.HANDSHAKE
    sh_ext = [_SH_SUPPORTED_VERSIONS]
    if group is not None:
        sh_ext.append(
            ext.make_extension(
                ExtensionType.key_share,
                ext.push_key_share_entry,
                ext.KeyShareEntry(group, server_share),
            )
        )
    if accepted is not None:
        sh_ext.append(
            ext.make_extension(
                ExtensionType.pre_shared_key, ext.push_pre_shared_key_server, accepted[0]
            )
        )
    cid_data = ch.extension(ExtensionType.connection_id)
    if cid_data is not None and hs._work.local_cid is not None:
        out.peer_cid = decode(cid_data, ext.pull_connection_id)
        sh_ext.append(
            ext.make_extension(
                ExtensionType.connection_id, ext.push_connection_id, hs._work.local_cid
            )
        )
        # 0-RTT records were sent before the client could know our CID.
        out.cid_optional = hs._work.early_accepted
    limit = ch.extension(ExtensionType.record_size_limit)
    if limit is not None:
        out.peer_record_limit = record_size_limit(limit)
    assert hs.suite is not None
    sh = msgs.ServerHello(random=hs._work.random, cipher_suite=hs.suite, extensions=tuple(sh_ext))
    sh = hs._work.ech.server_hello(sh, hs._work.transcript, ch.random)
    hs._work.random = sh.random
    hs._send(sh, 0)
    hs._derive_handshake_secrets(shared, accepted[1] if accepted else None)
    ee_ext = []
    if hs.server_name is not None and accepted is None and cfg.acknowledge_server_name:
        # RFC 6066 §3: a server that saw (and may select its certificate by) the name
        # says so with an empty server_name, but not when resuming.
        ee_ext.append(ext.Extension(ExtensionType.server_name, b""))
    if hs.alpn is not None:
        ee_ext.append(
            ext.make_extension(
                ExtensionType.application_layer_protocol_negotiation,
                ext.push_alpn,
                [hs.alpn.encode("latin-1")],
            )
        )
    if limit is not None and cfg.record_size_limit is not None:
        # RFC 8449 §4: the server answers in EncryptedExtensions, only when asked.
        ee_ext.append(
            ext.make_extension(
                ExtensionType.record_size_limit,
                ext.push_record_size_limit,
                cfg.record_size_limit,
            )
        )
        out.enforce_record_limit = True
    if hs.srtp is not None:
        ee_ext.append(srtp.server_extension(hs.srtp))  # RFC 8446 §4.2: CH, EE
    if hs._work.early_accepted:
        ee_ext.append(ext.Extension(ExtensionType.early_data, b""))
    ee_ext += hs._work.type_answers
    ee_ext += hs._work.ech.encrypted_extensions()
    anchors = trust_anchors.requested_untrusted(ch)
    if accepted is None:
        available = trust_anchors.available_extension(cfg, anchors)
        ee_ext += [available] if available is not None else []
    hs._send(msgs.EncryptedExtensions(tuple(ee_ext)), 2)
    authenticate_client = cfg.client_auth != "none" and accepted is None
    if authenticate_client:
        request_ext = [
            ext.make_extension(
                ExtensionType.signature_algorithms,
                ext.push_signature_algorithms,
                list(signing_schemes(cfg.schemes)),
            ),
        ]
        if cfg.compression:
            # RFC 8879 §3: the client may send its Certificate compressed.
            request_ext.append(
                ext.Extension(
                    ExtensionType.compress_certificate,
                    compression.extension_data(cfg.compression),
                )
            )
        request = msgs.CertificateRequest(b"", tuple(request_ext))
        hs._work.cert_request = request
        hs._send(request, 2)
    if accepted is None:
        chosen = hs._work.credential
        assert hs.scheme is not None and chosen is not None
        matched = trust_anchors.matched(chosen, anchors)
        body = stapling.server_body(cfg, chosen, ch, hs._count, matched) if chosen.chain else None
        hs._send_certificate_and_verify(
            hs.scheme, body or chosen.body, chosen.key, chosen.chain or None
        )
    ks = hs._work.schedule
    assert ks is not None
    hs._send(msgs.Finished(ks.verify_data(hs._work.s_hs, hs._work.transcript.digest())), 2)
    hs._derive_application_secrets()
    hs._install(3, write=True, secret=hs.write_secret)
    hs._set_state(S.WAIT_CLIENT_CERTIFICATE if authenticate_client else S.WAIT_CLIENT_FINISHED)
