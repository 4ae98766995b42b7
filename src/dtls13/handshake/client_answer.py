"""The server's answer to the ClientHello as the client reads it (RFC 8446 §4.1.3, §4.1.4):
a ServerHello (the version, suite, PSK and key share it chose, its connection ID; the
handshake keys follow) or a HelloRetryRequest (a cookie, another group: the ClientHello
again), and what either says of Encrypted Client Hello (RFC 9849 §6.1.4).

Functions of `ClientHandshake` (client.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..alerts import (
    IllegalParameter,
    MissingExtension,
    ProtocolVersion,
    UnexpectedMessage,
    UnsupportedExtension,
)
from ..crypto.suites import SUITES, CipherSuite
from . import ech, ech_client, groups, stapling
from . import extensions as ext
from . import messages as msgs
from .constants import DTLS13_VERSION, ExtensionType, HandshakeType, NamedGroup
from .context import decode
from .key_schedule import KeySchedule
from .state import ClientState as S

if TYPE_CHECKING:
    from .client import ClientHandshake

# Wire values to enum members by a dict lookup (cheaper than calling the enum).
_CIPHER_SUITES = {int(s): s for s in CipherSuite}
_NAMED_GROUPS = {int(g): g for g in NamedGroup}


def on_server_hello(
    hs: ClientHandshake, sh: msgs.ServerHello, body: bytes, now: float, *_: Any
) -> None:
    """A ServerHello or HelloRetryRequest: what the server chose, checked against what we
    offered; a ServerHello's key share and PSK make the handshake keys."""
    cfg = hs.config
    versions = sh.extension(ExtensionType.supported_versions)
    if versions is None:
        raise ProtocolVersion("the server does not speak DTLS 1.3 (no supported_versions)")
    if decode(versions, ext.pull_supported_versions_server) != DTLS13_VERSION:
        raise IllegalParameter("server selected a version other than DTLS 1.3")
    if sh.legacy_version != 0xFEFD or sh.legacy_session_id_echo != b"":
        raise IllegalParameter("bad legacy_version or legacy_session_id_echo")
    if sh.legacy_compression_method != 0:
        raise IllegalParameter("non-zero compression method")
    if sh.cipher_suite not in cfg.suites:
        raise IllegalParameter(f"server chose suite 0x{sh.cipher_suite:04x} we did not offer")
    if hs._work.ech is not None or hs._ech_state is ech.EchStatus.GREASE:
        # Before anything else: the answer says which ClientHello the server took.
        hs._ech_answer(sh, body)
    hs._check_solicited(sh.extensions, "ServerHello", sh.is_hello_retry_request)
    suite = _CIPHER_SUITES[sh.cipher_suite]  # one of cfg.suites
    if hs.suite is not None and suite != hs.suite:
        raise IllegalParameter("ServerHello suite differs from HelloRetryRequest's")
    hs.suite = suite
    hs.params = SUITES[suite]
    if sh.is_hello_retry_request:
        hs._on_hello_retry(sh, body)
        return
    if hs._work.transcript.hash_name is None:
        hs._work.transcript.select(hs.params.hash_name)
    schedule: KeySchedule | None = None
    hs._work.psk_identity = None  # a ServerHello dropped as damaged may have set it
    psk_data = sh.extension(ExtensionType.pre_shared_key)
    if psk_data is not None:
        selected = decode(psk_data, ext.pull_pre_shared_key_server)
        # RFC 8446 §4.2.11: "Clients MUST verify that the server's selected_identity is
        # within the range supplied by the client" (else illegal_parameter).
        if not 0 <= selected < len(hs._work.psk_offers):
            raise IllegalParameter("server selected a PSK we did not offer")
        offer = hs._work.psk_offers[selected]
        schedule = offer.schedule
        if schedule.hash_name != hs.params.hash_name:
            raise IllegalParameter("server selected a suite whose hash differs from the PSK's")
        hs.resumed = True
        hs._work.psk_identity = offer.external
        if offer.session is not None:
            # The resumption inherits the original's authentication (RFC 8446 §2.2).
            hs.peer_chain = offer.session.peer_certificates
            hs.peer_public_key = offer.session.peer_public_key
            hs.peer_stapled = stapling.of_session(offer.session)
    elif cfg.require_psk and (cfg.psk is not None or cfg.imported_psks):
        # Configured with external PSKs only: a certificate is nothing we can check.
        raise MissingExtension("the server did not select one of our external PSKs")
    key_share = sh.extension(ExtensionType.key_share)
    shared: bytes | None = None
    if key_share is None:
        if schedule is None or "psk_ke" not in cfg.psk_modes:
            raise MissingExtension("ServerHello without key_share")
    else:
        entry = decode(key_share, ext.pull_key_share_entry)
        kx = hs._work.key_shares.get(entry.group)
        if kx is None:
            raise IllegalParameter("server key share for a group we did not send")
        shared = kx.shared_secret(entry.key_exchange)
        hs.group = _NAMED_GROUPS[entry.group]  # one of our key shares' groups
    out = hs._out
    cid_data = sh.extension(ExtensionType.connection_id)
    if cid_data is not None:
        if hs._work.local_cid is None:
            raise UnsupportedExtension("connection_id in ServerHello, not offered")
        out.peer_cid = decode(cid_data, ext.pull_connection_id)
    hs._work.key_shares.clear()
    hs._work.transcript.add(HandshakeType.server_hello, body)
    out.answered = True
    hs._derive_handshake_secrets(shared, schedule)
    hs._set_state(S.WAIT_ENCRYPTED_EXTENSIONS)


def ech_answer(hs: ClientHandshake, sh: msgs.ServerHello, body: bytes) -> None:
    """Whether the server accepted ECH (RFC 9849 §6.1.4): the confirmation in the last 8
    bytes of ServerHello.random, or in a HelloRetryRequest's encrypted_client_hello."""
    hash_name = SUITES[CipherSuite(sh.cipher_suite)].hash_name
    offer = hs._work.ech
    if sh.is_hello_retry_request:
        ech_client.check_hrr_signal(sh)
    elif sh.extension(ech_client.ECH_TYPE) is not None:
        # §5: the extension belongs in HelloRetryRequest and EncryptedExtensions only.
        raise UnsupportedExtension("encrypted_client_hello in ServerHello")
    if offer is None:
        return  # GREASE: a HelloRetryRequest's extension is checked, then ignored (§6.2.1)
    accepted = ech_client.accepted(hash_name, hs._work.random, hs._work.transcript, sh, body)
    if not accepted and hs._ech_state is ech.EchStatus.ACCEPTED:
        # §6.1.5: the HelloRetryRequest accepted ECH, so must the ServerHello.
        raise IllegalParameter("ServerHello rejects the ECH its HelloRetryRequest accepted")
    if accepted:
        hs._ech_state = ech.EchStatus.ACCEPTED
        if not sh.is_hello_retry_request:
            hs._work.ech = None
        return
    # Rejected: the handshake goes on with ClientHelloOuter (§6.1.6), for the public
    # name (§6.1.7), with the outer transcript and random, resuming nothing.
    hs._ech_state = ech.EchStatus.REJECTED
    hs.ech_name_override = offer.public_name
    hs._work.transcript = offer.outer_transcript
    hs._work.client_hello = offer.outer_hello
    hs._work.random = hs._work.client_random = offer.outer_random
    hs._work.psk_offers = []
    assert offer.outer_hello is not None
    hs._work.ech_extension = ext.Extension(
        ech_client.ECH_TYPE, offer.outer_hello.extension(ech_client.ECH_TYPE) or b""
    )
    hs._work.ech = None


def on_hello_retry(hs: ClientHandshake, hrr: msgs.ServerHello, body: bytes) -> None:
    """A HelloRetryRequest (RFC 8446 §4.1.4): its cookie or group, and the ClientHello again."""
    cfg = hs.config
    assert hs.params is not None
    if hs.retried:
        raise UnexpectedMessage("second HelloRetryRequest")
    # Checked before anything changes: a HelloRetryRequest refused here is dropped as
    # damaged (connection_handshake.py), and the genuine one must find nothing changed.
    cookie_data = hrr.extension(ExtensionType.cookie)
    cookie = decode(cookie_data, ext.pull_cookie) if cookie_data is not None else None
    group_data = hrr.extension(ExtensionType.key_share)
    group = decode(group_data, ext.pull_key_share_hrr) if group_data is not None else None
    if group is not None and (group not in cfg.group_order or group in hs._work.key_shares):
        raise IllegalParameter("HelloRetryRequest selected an unusable group")
    if cookie is None and group is None:
        # RFC 8446 §4.1.4: an HRR that would not change the ClientHello is illegal.
        raise IllegalParameter("HelloRetryRequest changes nothing")
    hs._set_state(S.WAIT_SERVER_HELLO_AFTER_RETRY)
    if hs._work.early_offered:
        # RFC 8446 §4.2.10: no early data after a HelloRetryRequest.
        hs._work.early_offered = False
        hs._work.early_result = False
    hs._count("hello_retry_requests_received", 1)
    hs._work.transcript.select(hs.params.hash_name)
    hs._work.transcript.restart_with_message_hash()
    hs._work.transcript.add(HandshakeType.server_hello, body)
    if cookie is not None:
        hs._work.hrr_cookie = cookie
    if group is not None:
        hs._work.key_shares = {group: groups.generate(group)}
    hs._send_client_hello()
