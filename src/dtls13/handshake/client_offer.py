"""What a client offers in its ClientHello (RFC 8446 §4.1.2, RFC 9147 §5.3): the hello
itself, built around the parts its configuration alone decides (client_hello.py), the PSKs
it offers (a session to resume, an external PSK, imported ones: RFC 8446 §4.2.11, RFC
9258), 0-RTT under the first of them, the certificate types (RFC 7250) and the padding
(RFC 7685).

Functions of `ClientHandshake` (client.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ClientConfig
from ..crypto.suites import SUITES
from . import ech, ech_client, grease, groups, permutation, raw_keys
from . import extensions as ext
from . import messages as msgs
from .client_hello import HelloTemplate, greased_template, hello_template
from .constants import ExtensionType, HandshakeType
from .key_schedule import KeySchedule
from .psk_import import PskOffer, imported_offers
from .tickets import Session
from .work import FlightKind

if TYPE_CHECKING:
    from .client import ClientHandshake


def send_client_hello(hs: ClientHandshake, pad_to: int = 0) -> None:
    """Make the ClientHello (and, offering 0-RTT, install the early write keys): padded to
    fill a datagram of `pad_to` bytes (0: not padded)."""
    cfg = hs.config
    if not hs._work.key_shares:
        for group in cfg.share_groups:
            hs._work.key_shares[group] = groups.generate(group)
    # What the configuration alone decides is encoded once per ClientConfig.
    template = hello_template(cfg)
    if cfg.grease:
        # From a random the path sees anyway: under ECH ClientHelloOuter's, never the
        # inner one, which must stay secret (RFC 9849 §7.2).
        offer = hs._work.ech
        greased = grease.grease_values(offer.outer_random if offer else hs._work.random)
        template = greased_template(template, cfg, greased)
    extensions = [template.supported_versions]
    # wolfSSL needs the cookie inside the first fragment of a fragmented ClientHello2.
    if hs._work.hrr_cookie is not None:
        extensions.append(
            ext.make_extension(ExtensionType.cookie, ext.push_cookie, hs._work.hrr_cookie)
        )
    extensions.append(template.supported_groups)
    shares = [ext.KeyShareEntry(g, kx.public_bytes) for g, kx in hs._work.key_shares.items()]
    # RFC 8446 §4.1.2: a HelloRetryRequest that picks a group leaves that group's share
    # alone in the second ClientHello; otherwise the shares (GREASE's too) stay.
    if cfg.grease and hs._work.key_shares.keys() == set(cfg.share_groups):
        shares.insert(0, grease.key_share(greased))
    extensions.append(
        ext.make_extension(ExtensionType.key_share, ext.push_key_share_client, shares)
    )
    extensions += template.signature_algorithms
    sni = hs._hello_server_name()
    # Where ClientHelloOuter names the public name when ClientHelloInner names none.
    outer_sni_at = len(extensions)
    if sni is not None:
        extensions.append(ext.make_extension(ExtensionType.server_name, ext.push_server_name, sni))
    extensions += template.before_cid
    if hs._work.local_cid is not None:
        extensions.append(
            ext.make_extension(
                ExtensionType.connection_id, ext.push_connection_id, hs._work.local_cid
            )
        )
    extensions += template.after_cid
    extensions += certificate_type_offers(cfg)
    extensions += template.after_types
    if hs._work.ech is not None:
        extensions.append(ech_client.inner_marker())
    elif hs._work.ech_extension is not None:
        extensions.append(hs._work.ech_extension)
    # RFC 9849 §6.1.7: a handshake with ClientHelloOuter resumes nothing.
    rejected = hs._ech_state is ech.EchStatus.REJECTED
    offers = hs._work.psk_offers = [] if rejected else psk_offers(hs)
    if offers:
        session = offers[0].session
        # RFC 8446 §4.2.10: early data goes under the first PSK offered.
        if session is not None and session.max_early_data and not hs.retried:
            extensions.append(ext.Extension(ExtensionType.early_data, b""))
            hs._work.early_offered = True
        # pre_shared_key comes last; its binders are computed over everything before it.
        extensions.append(
            ext.make_extension(
                ExtensionType.pre_shared_key,
                ext.push_pre_shared_key_client,
                ext.OfferedPsks(
                    tuple(ext.PskIdentity(o.identity, o.obfuscated_age) for o in offers),
                    tuple(bytes(o.schedule.hash_len) for o in offers),
                ),
            )
        )
    if cfg.permute_extensions:
        extensions = permutation.permuted(extensions, hs._work.random)
    if cfg.grease:
        # RFC 8701 §3.1, placed as BoringSSL places them: an empty one first, a non-empty
        # one last (before pre_shared_key, which stays last).
        at = len(extensions) - 1 if offers else len(extensions)
        extensions.insert(at, grease.last_extension(greased))
        extensions.insert(0, grease.first_extension(greased))
    if pad_to and hs._work.ech is None:
        # ClientHelloOuter is padded by its own rules (RFC 9849 §6.1.3).
        extensions = padded(extensions, hs._work.random, template, pad_to, bool(offers))
    natural: list[ext.Extension] = []  # ClientHelloOuter's, for ECH
    if hs._work.ech is not None:
        natural = list(extensions)
        if sni is None:
            natural.insert(outer_sni_at, ext.Extension(ExtensionType.server_name, b""))
        extensions = ech_client.inner_order(extensions)
    hello = msgs.ClientHello(
        random=hs._work.random,
        cipher_suites=template.cipher_suites,
        extensions=tuple(extensions),
    )
    if offers:
        prefix = msgs.binder_prefix(hello)
        binders = tuple(
            o.schedule.verify_data(
                o.binder_key(), hs._work.transcript.digest_with(prefix, o.schedule.hash_name)
            )
            for o in offers
        )
        hello = msgs.replace_binders(hello, binders)
    hs._work.client_hello = hello
    hs._out.flight = FlightKind.HANDSHAKE
    offer = hs._work.ech
    if offer is None:
        hs._send(hello, 0)
    else:
        # RFC 9849 §6.1: ClientHelloOuter goes out; both hellos are hashed until the
        # server's answer says which one it took (§6.1.4).
        outer = offer.seal(hello, natural, hs._hello_server_name())
        outer_type, outer_body = msgs.push_message(outer)
        _, inner_body = msgs.push_message(hello)
        hs._out.ech_inner_hello = inner_body
        hs._work.transcript.add(HandshakeType.client_hello, inner_body)
        offer.outer_transcript.add(HandshakeType.client_hello, outer_body)
        hs._send_encoded(outer_type, outer_body, 0, transcript=False)
    if hs._work.early_offered and offers[0].session is not None:
        first, session = offers[0].schedule, offers[0].session
        early = first.client_early_traffic_secret(hs._work.transcript.digest(first.hash_name))
        hs._install(1, write=True, secret=early, suite=session.suite)
        hs._work.early_budget = session.max_early_data
        if hs._work.keylog is not None:
            hs._log_secret("CLIENT_EARLY_TRAFFIC_SECRET", early)
        hs._keep_early_exporter(first)


def psk_offers(hs: ClientHandshake) -> list[PskOffer]:
    """The PSKs to offer, in order: the session to resume, the external PSK, the
    imported ones (RFC 9258) for each hash of our suites."""
    cfg = hs.config
    if cfg.session is None and cfg.psk is None and not cfg.imported_psks:
        return []
    offers: list[PskOffer] = []
    session = session_offer(hs)
    if session is not None:
        offers.append(session)
    if cfg.psk is not None:
        identity, key = cfg.psk
        schedule = KeySchedule("sha256", psk=key)
        offers.append(PskOffer(identity, 0, schedule, external=identity))
    hashes = [SUITES[s].hash_name for s in cfg.suites]
    offers += imported_offers(cfg.imported_psks, hashes)
    # After a HelloRetryRequest the transcript hash is fixed: a PSK of another hash
    # cannot be offered again (RFC 8446 §4.1.4 lets the client drop it).
    fixed = hs._work.transcript.hash_name
    return [o for o in offers if fixed in (None, o.schedule.hash_name)]


def session_offer(hs: ClientHandshake) -> PskOffer | None:
    """The session to resume, if the configuration still accepts it."""
    cfg = hs.config
    session = cfg.session
    if session is None:
        return None
    wall = hs._wall_clock().timestamp()
    if session.expired(wall) or session.suite not in cfg.suites:
        return None
    if not same_identity_kind(session, cfg):
        return None  # this configuration would not accept the session's server
    if not same_name(session.server_name, cfg.server_name):
        # RFC 8446 §4.6.1: "Clients ... SHOULD only resume if the SNI value matches
        # the one used in the original session": a full handshake instead.
        if not hs.retried:
            hs._count("session_server_name_mismatch", 1)
        return None
    schedule = KeySchedule(SUITES[session.suite].hash_name, psk=session.psk)
    return PskOffer(session.ticket, session.obfuscated_age(wall), schedule, session)


# A plaintext record's header and a handshake message's header (RFC 9147 §4, §5.2).
_HELLO_OVERHEAD = 13 + 12


def padded(
    extensions: list[ext.Extension],
    random: bytes,
    template: HelloTemplate,
    pad_to: int,
    psk: bool,
) -> list[ext.Extension]:
    """`extensions` with a padding extension (RFC 7685) that makes the ClientHello fill a
    datagram of `pad_to` bytes, before pre_shared_key, which stays last (RFC 8446 §4.2.11);
    unchanged when the hello already fills it."""
    hello = msgs.ClientHello(
        random=random, cipher_suites=template.cipher_suites, extensions=tuple(extensions)
    )
    room = pad_to - _HELLO_OVERHEAD - len(msgs.push_message(hello)[1]) - 4
    if room < 0:
        return extensions
    padding = ext.Extension(ExtensionType.padding, bytes(room))
    at = len(extensions) - 1 if psk else len(extensions)
    return [*extensions[:at], padding, *extensions[at:]]


def certificate_type_offers(cfg: ClientConfig) -> list[ext.Extension]:
    """server_certificate_type / client_certificate_type (RFC 7250 §4.1), offered only when
    a raw public key is among the types: X.509 alone is the default without them."""
    RPK = raw_keys.CertificateType.RawPublicKey
    offers = []
    if RPK in cfg.peer_types:
        offers.append(
            ext.make_extension(
                ExtensionType.server_certificate_type,
                raw_keys.push_certificate_types,
                list(cfg.peer_types),
            )
        )
    if RPK in cfg.own_types:
        offers.append(
            ext.make_extension(
                ExtensionType.client_certificate_type,
                raw_keys.push_certificate_types,
                list(cfg.own_types),
            )
        )
    return offers


def same_identity_kind(session: Session, cfg: ClientConfig) -> bool:
    """Whether `cfg` would accept the server identity `session` was authenticated with: a
    raw public key still pinned, or a certificate while X.509 is still accepted; never, with
    verify=True, an identity that was not accepted (a soft fail, or verify=False unchecked)."""
    verdict = session.peer_verification
    if cfg.verify and verdict is not None and not verdict.accepted:
        return False
    if session.peer_public_key is not None:
        return session.peer_public_key in cfg.pinned
    if session.peer_certificates:
        return raw_keys.CertificateType.X509 in cfg.peer_types
    return True


def same_name(a: str | None, b: str | None) -> bool:
    """Host names compare without regard to case (RFC 6066 §3, RFC 4343)."""
    return (a.lower() if a is not None else None) == (b.lower() if b is not None else None)
