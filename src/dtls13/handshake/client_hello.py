"""The parts of a client's ClientHello that its ClientConfig alone decides, encoded once per
configuration (kept in its `caches`) instead of on every connection and again for the
ClientHello that answers a HelloRetryRequest."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import ClientConfig
from . import compression, delegated, srtp, stapling, trust_anchors
from . import extensions as ext
from .authentication import signing_schemes
from .constants import DTLS13_VERSION, ExtensionType
from .grease import GreaseValues


@dataclass(frozen=True, slots=True)
class HelloTemplate:
    """Encoded extensions, in the order the ClientHello carries them, around the ones that
    change per connection (cookie, key_share, server_name, connection_id, ...)."""

    cipher_suites: tuple[int, ...]
    supported_versions: ext.Extension
    supported_groups: ext.Extension
    # signature_algorithms, signature_algorithms_cert.
    signature_algorithms: tuple[ext.Extension, ...]
    # application_layer_protocol_negotiation, record_size_limit: before connection_id.
    before_cid: tuple[ext.Extension, ...]
    # use_srtp: after connection_id.
    after_cid: tuple[ext.Extension, ...]
    # status_request .. psk_key_exchange_modes: after the certificate types (which the
    # client adds itself: client_offer.certificate_type_offers).
    after_types: tuple[ext.Extension, ...]


def hello_template(cfg: ClientConfig) -> HelloTemplate:
    """`cfg`'s template, made on first use."""
    template: HelloTemplate | None = cfg.caches.hello
    if template is None:
        template = cfg.caches.hello = _make(cfg)
    return template


def greased_template(
    template: HelloTemplate, cfg: ClientConfig, values: GreaseValues
) -> HelloTemplate:
    """`template` with a GREASE cipher suite, version, group and signature algorithm
    first in their lists (RFC 8701 §3.1): made per connection, as the values are."""
    return replace(
        template,
        cipher_suites=(values.cipher_suite, *template.cipher_suites),
        supported_versions=_versions([values.version, DTLS13_VERSION]),
        supported_groups=_groups([values.group, *cfg.group_order]),
        signature_algorithms=(
            _schemes(
                ExtensionType.signature_algorithms,
                [values.signature_algorithm, *signing_schemes(cfg.schemes)],
            ),
            template.signature_algorithms[1],
        ),
    )


def _versions(versions: list[int]) -> ext.Extension:
    return ext.make_extension(
        ExtensionType.supported_versions, ext.push_supported_versions_client, versions
    )


def _groups(groups: list[int]) -> ext.Extension:
    return ext.make_extension(ExtensionType.supported_groups, ext.push_supported_groups, groups)


def _schemes(ext_type: ExtensionType, schemes: list[int]) -> ext.Extension:
    return ext.make_extension(ext_type, ext.push_signature_algorithms, schemes)


def _make(cfg: ClientConfig) -> HelloTemplate:
    before_cid = []
    if cfg.alpn_protocols:
        before_cid.append(
            ext.make_extension(
                ExtensionType.application_layer_protocol_negotiation,
                ext.push_alpn,
                [p.encode() for p in cfg.alpn_protocols],
            )
        )
    if cfg.record_size_limit is not None:
        before_cid.append(
            ext.make_extension(
                ExtensionType.record_size_limit, ext.push_record_size_limit, cfg.record_size_limit
            )
        )
    after_cid = (srtp.client_extension(cfg.srtp, cfg.srtp_mki),) if cfg.srtp else ()
    after_types = stapling.client_extensions(cfg)
    after_types += trust_anchors.client_extension(cfg)
    if cfg.dc_schemes:
        after_types.append(delegated.client_extension(cfg.dc_schemes))
    if cfg.compression:
        # RFC 8879 §3: the server may send its Certificate compressed with one of these.
        after_types.append(
            ext.Extension(
                ExtensionType.compress_certificate, compression.extension_data(cfg.compression)
            )
        )
    # Sent even without a PSK to offer: a server must not issue tickets the client's
    # modes cannot use (RFC 8446 §4.2.9), and OpenSSL sends none to a client without it.
    modes = [1 if m == "psk_dhe_ke" else 0 for m in cfg.psk_modes]
    after_types.append(
        ext.make_extension(
            ExtensionType.psk_key_exchange_modes, ext.push_psk_key_exchange_modes, modes
        )
    )
    return HelloTemplate(
        cipher_suites=tuple(int(s) for s in cfg.suites),
        supported_versions=_versions([DTLS13_VERSION]),
        supported_groups=_groups(list(cfg.group_order)),
        signature_algorithms=(
            _schemes(ExtensionType.signature_algorithms, list(signing_schemes(cfg.schemes))),
            _schemes(ExtensionType.signature_algorithms_cert, list(cfg.schemes)),
        ),
        before_cid=tuple(before_cid),
        after_cid=after_cid,
        after_types=tuple(after_types),
    )
