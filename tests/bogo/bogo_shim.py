"""A BoGo shim: BoringSSL's test runner drives dtls13's sans-IO Connection through it.

The runner is a TCP server; for each connection (the first, then -resume-count
resumptions) the shim connects, sends its shim id, and speaks the runner's DTLS framing
(framing.py). The clock is fake: it moves only when the runner sends a timeout. After the
handshake the shim behaves as BoringSSL's bssl_shim does: optionally writes "hello" first,
then echoes each record with every byte XORed with 0xff until the runner closes, then sends
close_notify. Exit 0: success; 89: a flag or configuration not implemented; anything else:
failure, with the reason on stderr (config.json's ErrorMap matches it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
import sys
from typing import Any

import psk_credentials
import ticket_hooks
from flags import (
    DTLS13,
    Flags,
    NotDTLS13,
    Unimplemented,
    check_supported,
    parse,
    prescan_versions,
)
from framing import (
    EXPECT_NEXT_TIMEOUT,
    MTU,
    NO_TIMEOUT,
    PACKET,
    TIMEOUT,
    UPDATE_TIMEOUT,
    Closed,
    Framing,
)

PEER = ("127.0.0.1", 1)  # the runner, as the connection sees it
START = 1000.0  # the fake clock's start (seconds); it never reads a real clock
DEFAULT_MTU = 16384 + 256
CLOCK_SLACK = 1e-9  # the runner counts in nanoseconds; our float seconds round apart
HANDSHAKE_TIMEOUT = 1e9  # the runner's timeouts decide when a handshake has failed


class ShimFailure(Exception):
    """The test failed on our side: the message goes to stderr, exit 1."""


def _reject_alpn(offered: tuple[str, ...]) -> str | None:
    """-reject-alpn: an ALPN callback that accepts none of the client's protocols."""
    return None


def _select_empty_alpn(offered: tuple[str, ...]) -> str | None:
    """-select-empty-alpn: an ALPN callback answering an empty name, which nobody offers."""
    return ""


def _alpn_list(wire: str) -> list[str]:
    """-advertise-alpn's value: length-prefixed protocol names, as on the wire."""
    raw = wire.encode("latin-1")
    out, i = [], 0
    while i < len(raw):
        n = raw[i]
        out.append(raw[i + 1 : i + 1 + n].decode("latin-1"))
        i += 1 + n
    return out


@functools.cache
def verify_callback(
    fail: bool, custom: bool, ech_name: str | None = None, no_ech_name: bool = False
) -> Any:
    """BoringSSL's verify callbacks in test_config.cc (one object per kind, so configs that
    share flags compare equal): accept every chain, or with -verify-fail reject it. The
    custom callback (-use-custom-verify-callback) leaves BoringSSL's default alert,
    certificate_unknown; the legacy one fails with X509_V_ERR_APPLICATION_VERIFICATION,
    which SSL_alert_from_verify_result turns into handshake_failure. Both reject a chain
    verified for another ECH name override than -expect-(no-)ech-name-override says
    (CheckVerifyCallback)."""
    from dtls13.alerts import AlertDescription

    alert = AlertDescription.certificate_unknown if custom else AlertDescription.handshake_failure

    def callback(peer: Any) -> Any:
        override = peer.ech_name_override
        if (no_ech_name and override is not None) or (
            ech_name is not None and override != ech_name
        ):
            return alert
        return alert if fail else True

    return callback


def _verify_callback(f: Flags) -> Any:
    return verify_callback(
        f.has("-verify-fail"),
        f.has("-use-custom-verify-callback"),
        f.str("-expect-ech-name-override"),
        f.has("-expect-no-ech-name-override"),
    )


def _sct_list(wire: bytes) -> list[bytes]:
    """-signed-cert-timestamps' value: a SignedCertificateTimestampList (RFC 6962 §3.3) as
    on the wire; the library takes its serialized SCTs."""
    items, i = [], 2
    if len(wire) < 2 or int.from_bytes(wire[:2], "big") != len(wire) - 2:
        raise ShimFailure("INVALID_SCT_LIST: bad list length")
    while i < len(wire):
        n = int.from_bytes(wire[i : i + 2], "big")
        item = wire[i + 2 : i + 2 + n]
        if not n or len(item) != n:
            raise ShimFailure("INVALID_SCT_LIST: bad SCT")
        items.append(item)
        i += 2 + n
    if not items:
        raise ShimFailure("INVALID_SCT_LIST: empty list")
    return items


def cert_properties(c: Flags) -> dict[str, Any]:
    """-cert-properties (a CertificatePropertyList, draft-ietf-tls-trust-anchor-ids): its
    trust_anchor_id property as the credential's; trust anchor groups are not implemented."""
    wire = c.get("-cert-properties")
    if not isinstance(wire, bytes):
        return {}
    try:
        (length,) = struct.unpack("!H", wire[:2])
        body, out, i = wire[2:], {}, 0
        if length != len(body):
            raise ShimFailure("-cert-properties: bad length")
        while i < len(body):
            kind, size = struct.unpack("!HH", body[i : i + 4])
            data, i = body[i + 4 : i + 4 + size], i + 4 + size
            if kind != 0:  # 1: trust anchor group inclusions
                raise Unimplemented(f"certificate property {kind}")
            out["trust_anchor_id"] = data
    except struct.error:
        raise ShimFailure("-cert-properties: truncated") from None
    return out


def trust_anchor_ids(wire: bytes) -> list[bytes]:
    """-requested-trust-anchors: uint8-prefixed IDs one after the other."""
    ids, i = [], 0
    while i < len(wire):
        ids.append(wire[i + 1 : i + 1 + wire[i]])
        i += 1 + wire[i]
    return ids


def _sct_wire(items: tuple[bytes, ...]) -> bytes:
    body = b"".join(len(i).to_bytes(2, "big") + i for i in items)
    return len(body).to_bytes(2, "big") + body if items else b""


class Shim:
    """One shim process: its configurations, its fake clock and the session it resumes."""

    def __init__(self, common: Flags, psks: list[psk_credentials.PskCredential]) -> None:
        self.common = common
        self.psks = psks  # -new-psk-credential: imported PSKs (RFC 9258), in order
        self.now = START
        self.session: Any = None
        self.ticket_secret = (common.get("-ticket-key") or os.urandom(32))[:32]  # type: ignore[index]
        # One set of ticket hooks for every connection, so that the resumption opens the
        # first connection's ticket.
        self.ticket_hooks = ticket_hooks.ticket_hooks(common)
        self._server_config: Any = None
        self._server_key: tuple[Any, ...] | None = None
        # The -new-*-credential credentials and the default one, as given to the library.
        self.credentials: tuple[list[Any], Any] = ([], None)
        # This connection's messages as test_config.cc's MessageCallback writes them.
        self.trace: list[str] = []

    # -- configuration -------------------------------------------------------------------

    def _common_options(self, f: Flags) -> dict[str, Any]:
        from dtls13.handshake.constants import NamedGroup, SignatureScheme
        from dtls13.handshake.groups import SUPPORTED_GROUPS

        opts: dict[str, Any] = {
            "debug": False,
            "idle_release_after": None,
            # Only the runner's timeouts move the clock; it decides when a handshake is over.
            "handshake_timeout": HANDSHAKE_TIMEOUT,
            # BoringSSL's timer: 400 ms initial, doubling up to 60 s (the runner's timeouts).
            "retransmit_initial": 0.4,
            "retransmit_max": 60.0,
            # ...giving up at the timeout after the 12th retransmission (DTLS1_MAX_TIMEOUTS).
            "max_retransmissions": 12,
        }
        # BoringSSL never splits an application record to fit the MTU (the runner sends and
        # expects back records of 2^14 bytes); this library keeps every record within one
        # datagram, so without -mtu the shim's MTU is large enough for such records.
        opts["mtu"] = f.int("-mtu") if f.has("-mtu") else DEFAULT_MTU
        if f.has("-expect-msg-callback"):
            opts["message_callback"] = self.trace_message
        if f.has("-max-cert-list"):
            # BoringSSL's cap on the peer's certificate list bounds its largest handshake
            # message, as max_handshake_message does here.
            opts["max_handshake_message"] = f.int("-max-cert-list")
        if f.has("-initial-timeout-duration-ms"):
            opts["retransmit_initial"] = (f.int("-initial-timeout-duration-ms") or 0) / 1000
        curves = f.ints("-curves")
        if curves:
            groups = []
            for c in curves:
                try:
                    g = NamedGroup(c)
                except ValueError:
                    raise Unimplemented(f"-curves: group {c} not implemented") from None
                if g not in SUPPORTED_GROUPS:
                    raise Unimplemented(f"-curves: group {g.name} not implemented")
                groups.append(g)
            opts["groups"] = groups
        # With a credential list, -signing-prefs belong to the credentials (_credentials).
        schemes = f.ints("-verify-prefs") or ([] if f.credentials() else f.ints("-signing-prefs"))
        if schemes:
            try:
                opts["signature_schemes"] = [SignatureScheme(s) for s in schemes]
            except ValueError as e:
                raise Unimplemented(f"signature algorithm: {e}") from None
        if f.has("-srtp-profiles"):
            # OpenSSL's profile names, as this library's SrtpProtectionProfile spells them.
            opts["srtp_profiles"] = (f.str("-srtp-profiles") or "").split(":")
        if f.has("-cipher"):
            # BoringSSL's cipher strings configure TLS 1.2 suites only; TLS 1.3 suites are
            # not configurable there either.
            pass
        return opts

    def _credentials(self, f: Flags, cls: Any) -> tuple[list[Any], Any]:
        """The credential list (-new-x509-credential, -new-rpk-credential and the flags after
        each) and the default credential (-cert-file, -key-file, -signing-prefs before any),
        as library credentials of class `cls`. BoringSSL tries the default after the list."""
        from dtls13.handshake.constants import SignatureScheme

        if f.has("-must-match-issuer"):
            raise Unimplemented("-must-match-issuer without a -new-*-credential")
        if f.has("-delegated-credential"):
            raise Unimplemented("-delegated-credential without -new-delegated-credential")

        def schemes(c: Flags) -> list[Any] | None:
            try:
                return [SignatureScheme(v) for v in c.ints("-signing-prefs")] or None
            except ValueError as e:
                raise Unimplemented(f"signature algorithm: {e}") from None

        def stapled(c: Flags) -> dict[str, Any]:
            """A server credential's -ocsp-response and -signed-cert-timestamps."""
            response, scts = c.get("-ocsp-response"), c.get("-signed-cert-timestamps")
            if "ocsp_response" not in getattr(cls, "__dataclass_fields__", {}):
                if response is not None or scts is not None:
                    raise Unimplemented("a client credential with stapled data")
                return {}
            out: dict[str, Any] = {}
            if response is not None:
                out["ocsp_response"] = response
            if isinstance(scts, bytes):
                out["signed_certificate_timestamps"] = _sct_list(scts)
            return out

        made = []
        try:
            for c in f.credentials():
                opts: dict[str, Any] = {
                    "private_key": c.str("-key-file"),
                    "signature_schemes": schemes(c),
                    "must_match_issuer": c.has("-must-match-issuer"),
                    **stapled(c),
                    **cert_properties(c),
                }
                if c.get("type") == "rpk":
                    if c.has("-cert-file"):
                        raise Unimplemented("a raw public key credential with a certificate")
                    opts["raw_public_key"] = True
                else:
                    opts["certificate_chain"] = c.str("-cert-file")
                if c.get("type") == "delegated":
                    # The leaf's chain, the DC's key, the DC (RFC 9345).
                    opts["delegated_credential"] = c.get("-delegated-credential")
                made.append(cls(**opts))
            default = None
            if f.has("-cert-file"):
                default = cls(
                    f.str("-cert-file"),
                    f.str("-key-file"),
                    signature_schemes=schemes(f),
                    **stapled(f),
                    **cert_properties(f),
                )
        except ValueError as e:
            raise Unimplemented(f"credential refused: {e}") from None
        return made, default

    def client_config(self, f: Flags) -> Any:
        from dtls13.config import ClientConfig
        from dtls13.handshake.identity import Credential

        opts = self._common_options(f)
        if f.has("-advertise-alpn"):
            opts["alpn_protocols"] = _alpn_list(f.str("-advertise-alpn") or "")
        shares = f.ints("-key-shares")
        if f.has("-no-key-shares"):
            raise Unimplemented("-no-key-shares: a ClientHello always carries a key share")
        if shares:
            opts["key_share_groups"] = shares
        elif "groups" in opts:
            # BoringSSL's default shares (ssl_setup_key_shares): the first group, and the
            # first after it of the other kind (post-quantum or classical).
            groups = opts["groups"]
            pq = ["MLKEM" in g.name for g in groups]
            other = next((g for g, q in zip(groups, pq, strict=True) if q != pq[0]), None)
            opts["key_share_groups"] = [groups[0]] + ([other] if other is not None else [])
        if f.credentials():
            made, default = self.credentials = self._credentials(f, Credential)
            opts["certificates"] = made + ([default] if default is not None else [])
        elif f.has("-cert-file") or f.has("-key-file"):
            opts["certificate_chain"] = f.str("-cert-file")
            opts["private_key"] = f.str("-key-file")
        # BoringSSL's callback replaces chain verification (ours has the last word); with
        # SSL_VERIFY_PEER (-verify-peer) its rejection is fatal, else only recorded (soft
        # fail: SSL_get_verify_result, -expect-verify-result).
        opts["verify"] = f.has("-verify-peer")
        opts["verify_callback"] = _verify_callback(f)
        opts["reverify_on_resume"] = f.has("-reverify-on-resume")
        if f.str("-trust-cert"):  # empty for a PSK credential
            opts["cafile"] = f.str("-trust-cert")
        if self.psks:
            opts["imported_psks"] = psk_credentials.imported_psks(self.psks)
            # BoringSSL: a client with PSK credentials takes a certificate instead only
            # when it verifies certificates (SSL_VERIFY_PEER), else MISSING_EXTENSION.
            opts["require_psk"] = not f.has("-verify-peer")
        if f.has("-host-name"):
            opts["server_name"] = f.str("-host-name")
        if f.has("-requested-trust-anchors"):
            opts["trust_anchor_ids"] = trust_anchor_ids(f.get("-requested-trust-anchors") or b"")  # type: ignore[arg-type]
        opts["request_ocsp"] = f.has("-enable-ocsp-stapling")
        opts["request_signed_certificate_timestamps"] = f.has("-enable-signed-cert-timestamps")
        if f.has("-use-ocsp-callback"):
            # test_config.cc's LegacyOCSPCallback on a client: accept unless told to fail.
            fail = f.has("-fail-ocsp-callback")
            opts["ocsp_callback"] = lambda response, chain: not fail
        opts["session"] = self.session
        opts["permute_extensions"] = f.has("-permute-extensions")
        if f.has("-ech-config-list"):
            opts["ech_config_list"] = f.get("-ech-config-list")
        opts["ech_grease"] = f.has("-enable-ech-grease")
        opts["grease"] = f.has("-enable-grease")
        try:
            cfg = ClientConfig(**opts)
        except ValueError as e:
            if "ech_config_list" in str(e):  # SSL_set1_ech_config_list refuses it
                raise ShimFailure(f"invalid ECH config list: {e}") from None
            raise Unimplemented(f"configuration refused: {e}") from None
        if f.has("-reject-unusable-ech-config"):
            from dtls13.handshake.ech_client import choose

            if choose(cfg.ech_configs) is None:
                raise ShimFailure("unusable ECH config list: no config this client supports")
        available = f.ints("-available-client-cert-types")
        if available and set(available) != {int(t) for t in cfg.own_types}:
            # The client offers the certificate types of its credentials (in their order).
            raise Unimplemented(
                f"-available-client-cert-types {available}: the credentials give {cfg.own_types}"
            )
        return cfg

    def server_config(self, f: Flags) -> Any:
        from dtls13.config import ServerConfig
        from dtls13.handshake.selection import ServerCertificate

        opts = self._common_options(f)
        opts["acknowledge_server_name"] = not f.has("-no-server-name-ack")
        if f.has("-select-alpn"):
            opts["alpn_protocols"] = [f.str("-select-alpn")]
        if f.has("-reject-alpn"):
            opts["alpn_callback"] = _reject_alpn
        elif f.has("-select-empty-alpn"):
            opts["alpn_callback"] = _select_empty_alpn
        if self.psks and f.credentials():
            # BoringSSL orders PSK and certificate credentials in one list: the PSKs all
            # first or all last is the library's psks_before_certificates.
            places = [c.position for c in self.psks]
            if places == list(range(len(places))):
                opts["psks_before_certificates"] = True
            elif places == list(range(len(f.credentials()), len(f.credentials()) + len(places))):
                if f.has("-cert-file"):
                    raise Unimplemented("a default credential after certificates-then-PSKs")
                opts["psks_before_certificates"] = False
            else:
                raise Unimplemented("PSK credentials between certificate credentials")
        if f.credentials():
            made, default = self._credentials(f, ServerCertificate)
            opts["certificates"] = made + ([default] if default is not None else [])
        if self.psks:
            opts["imported_psks"] = psk_credentials.imported_psks(self.psks)
        elif not f.credentials() and not f.has("-cert-file"):
            raise Unimplemented("a server without a certificate or a PSK credential")
        if not f.credentials() and f.has("-cert-file"):
            opts["certificate_chain"] = f.str("-cert-file")
            opts["private_key"] = f.str("-key-file")
        # As test_config.cc sets the mode: -verify-peer wins (SSL_VERIFY_PEER: a certificate
        # is asked for, not required), else -require-any-client-certificate requires one.
        if f.has("-verify-peer"):
            opts["client_auth"] = "optional"
        elif f.has("-require-any-client-certificate"):
            opts["client_auth"] = "required"
        if "client_auth" in opts:
            # BoringSSL's callback decides (flags.check_verify_flags); with -trust-cert the
            # library's own verdict, which the callback overrides, has the runner's root.
            opts["verify_callback"] = _verify_callback(f)
            if f.str("-trust-cert"):  # empty for a PSK credential
                opts["cafile"] = f.str("-trust-cert")
        self._server_stapling(f, opts)
        opts.update(_ech_keys(f))
        # Two tickets, as BoringSSL sends (its num_tickets); the runner waits for both.
        opts["session_tickets"] = 0 if f.has("-no-ticket") else 2
        opts.update(self.ticket_hooks or {"ticket_secret": self.ticket_secret})
        key = tuple(sorted((k, repr(v)) for k, v in opts.items()))
        if self._server_key != key:
            # One config (its ticket and cookie keys) for the connections that share flags.
            try:
                self._server_config = ServerConfig(**opts)
            except ValueError as e:
                raise Unimplemented(f"configuration refused: {e}") from None
            self._server_key = key
            if f.credentials():
                self.credentials = (made, default)
        return self._server_config

    @staticmethod
    def _server_stapling(f: Flags, opts: dict[str, Any]) -> None:
        """-ocsp-response, -signed-cert-timestamps and test_config.cc's LegacyOCSPCallback on
        a server: it sets the response (-set-ocsp-in-callback), declines or fails."""
        response = f.get("-ocsp-response")
        scts = f.get("-signed-cert-timestamps")
        in_callback = f.has("-use-ocsp-callback") and f.has("-set-ocsp-in-callback")
        if not f.credentials():  # else each credential has its own (_credentials)
            if isinstance(scts, bytes):
                opts["signed_certificate_timestamps"] = _sct_list(scts)
            if response is not None and not in_callback:
                opts["ocsp_response"] = response
        if not f.has("-use-ocsp-callback"):
            return
        fail, decline = f.has("-fail-ocsp-callback"), f.has("-decline-ocsp-callback")

        def callback(certificate: Any) -> bytes | None:
            if fail:
                raise RuntimeError("OCSP_CB_ERROR: the OCSP callback failed")
            if decline:
                return None
            return response if in_callback else certificate.ocsp_response  # type: ignore[return-value]

        opts["ocsp_callback"] = callback

    def trace_message(self, m: Any) -> None:
        """The library's message_callback, written as test_config.cc's MessageCallback."""
        from dtls13.record import ContentType

        what = "write " if m.sent else "read "
        if m.ech_inner:
            what += "clienthelloinner"
        elif m.content_type == ContentType.handshake:
            what += f"hs {m.message_type}"
        elif m.content_type == ContentType.alert:
            what += f"alert {m.data[0]} {m.data[1]}"
        else:
            what += "ack"
        self.trace.append(what + "\n")

    # -- one connection ------------------------------------------------------------------

    def run_connection(self, f: Flags, resumed: bool) -> None:
        from dtls13.connection import Connection
        from dtls13.memory import PoolSet

        is_server = f.has("-server")
        cfg = self.server_config(f) if is_server else self.client_config(f)
        family = socket.AF_INET6 if f.has("-ipv6") else socket.AF_INET
        host = "::1" if f.has("-ipv6") else "127.0.0.1"
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect((host, f.int("-port")))
        sock.sendall(struct.pack("<Q", f.int("-shim-id") or 0))
        pools = PoolSet()
        self.trace = []
        conn = Connection(cfg, pools=pools, peer_address=PEER if is_server else None)
        try:
            Driver(self, f, conn, Framing(sock), resumed).run()
        finally:
            if not conn.closed:
                conn.abandon("shim done")
            for lease, _ in conn.datagrams_to_send(self.now):
                lease.release()
            drain_and_close(sock)


def drain_and_close(sock: socket.socket) -> None:
    """Half-close, then read until the runner closes (as bssl_shim does): closing at once
    could reset the connection under the runner's last write, before it read our alert."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5.0)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()


class Driver:
    """Drives one Connection through the runner's framing."""

    def __init__(self, shim: Shim, f: Flags, conn: Any, io: Framing, resumed: bool) -> None:
        self.shim, self.f, self.conn, self.io, self.resumed = shim, f, conn, io, resumed
        self.handshake_done = False
        self.got_ticket = False
        self.ended = False  # close_notify from the runner, or the TCP connection closed

    def flush(self) -> None:
        for lease, _ in self.conn.datagrams_to_send(self.shim.now):
            try:
                data = bytes(lease)
            finally:
                lease.release()
            if TRACE_PATH:
                trace(f"send {data.hex()}")
            # If the runner already hung up, what we say no longer matters.
            with contextlib.suppress(OSError):
                self.io.write_packet(data)

    def run(self) -> None:
        from dtls13.alerts import AlertDescription
        from dtls13.events import (
            ConnectionTerminated,
            DataReceived,
            HandshakeCompleted,
            NewSessionTicketReceived,
        )

        f, conn = self.f, self.conn
        if not f.has("-server"):
            conn.connect(PEER, self.shim.now)
        while not self.ended:
            while (ev := conn.next_event()) is not None:
                if TRACE_PATH:
                    trace(f"event {ev!r:.300}")
                if isinstance(ev, HandshakeCompleted):
                    self.on_handshake(ev)
                    if f.has("-shim-shuts-down"):
                        self.flush()
                        conn.close()
                        self.flush()
                        return
                elif isinstance(ev, DataReceived):
                    if not self.handshake_done:
                        raise ShimFailure("data before the handshake completed")
                    if f.has("-key-update"):
                        self.update_keys()
                    self.send(bytes(b ^ 0xFF for b in ev.data))
                    if f.has("-key-update-before-read"):
                        # bssl_shim updates its keys before every read, not only the first.
                        self.update_keys()
                elif isinstance(ev, NewSessionTicketReceived):
                    self.shim.session = ev.session
                    self.got_ticket = True
                elif isinstance(ev, ConnectionTerminated):
                    self.flush()
                    if ev.alert is AlertDescription.close_notify and ev.by_peer:
                        if not self.handshake_done:
                            raise ShimFailure("close_notify before the handshake completed")
                        self.ended = True
                        break
                    check_ech_rejection(f, ev)
                    raise ShimFailure(describe(ev))
            self.flush()
            if self.ended:
                break
            try:
                op, value = self.io.read_frame()
            except (Closed, ConnectionResetError):
                if not self.handshake_done:
                    raise ShimFailure("the runner closed the connection mid-handshake") from None
                break
            self.on_frame(op, value)
        self.finish()

    def update_keys(self) -> None:
        from dtls13.alerts import LocalProtocolError

        try:
            self.conn.key_update(request_peer=False)
        except LocalProtocolError as e:  # no epoch or message number left for one
            raise ShimFailure(f"key update refused: {e}") from None

    def send(self, data: bytes) -> None:
        try:
            self.conn.send(data)
        except ValueError as e:  # the record does not fit the MTU: the library refuses it
            raise ShimFailure(f"write refused: {e}") from None

    def on_frame(self, op: int, value: object) -> None:
        conn, shim = self.conn, self.shim
        if TRACE_PATH:
            trace(f"frame {chr(op)} {value.hex() if isinstance(value, bytes) else value}")
        if op == PACKET:
            conn.receive_datagram(value, PEER, shim.now)
        elif op == TIMEOUT:
            self.io.write_timeout_ack()
            assert isinstance(value, int)
            shim.now += value / 1e9
            t = conn.get_timer()
            if t is not None and t <= shim.now + CLOCK_SLACK:
                # A timer the runner's clock reached, up to float rounding of the sums.
                shim.now = max(shim.now, t)
                conn.handle_timer(shim.now)
        elif op == MTU:
            assert isinstance(value, int)
            try:
                conn.set_ciphertext_mtu(value)
            except ValueError as e:
                raise Unimplemented(f"MTU {value}: {e}") from None
        elif op == EXPECT_NEXT_TIMEOUT:
            t = conn.get_timer()
            if t is not None and t - shim.now > HANDSHAKE_TIMEOUT / 2:
                t = None  # only the handshake deadline, which the shim set out of the way
            if value == NO_TIMEOUT:
                if t is not None:
                    raise ShimFailure(f"Expected no timeout, but got {t - shim.now:.6f}s.")
            else:
                assert isinstance(value, int)
                want_us = value // 1000
                # A timer already due is 0 (DTLSv1_get_timeout's answer), not negative.
                got_us = None if t is None else max(0, round((t - shim.now) * 1e6))
                if got_us != want_us:
                    got = "none" if got_us is None else f"{got_us / 1e6:.6f}s"
                    raise ShimFailure(f"Expected timeout of {want_us / 1e6:.6f}s, but got {got}.")
        elif op == UPDATE_TIMEOUT:
            # DTLSv1_set_initial_timeout_duration: running timers are rescaled too.
            assert isinstance(value, int)
            try:
                conn.set_retransmit_timeout(value / 1000)
            except ValueError as e:
                raise Unimplemented(f"initial timeout {value} ms: {e}") from None

    def on_handshake(self, ev: Any) -> None:
        f, conn = self.f, self.conn
        self.handshake_done = True
        check_handshake(f, ev, conn, self.resumed)
        if self.shim.psks:
            self.check_selected_credential(ev)
        else:
            check_credential(f, ev, self.shim.credentials)
        export = f.int("-export-keying-material", 0) or 0
        if export > 0:
            # bssl_shim writes the exported bytes to the runner, which compares them.
            label = (f.str("-export-label") or "").encode()
            context = (f.str("-export-context") or "").encode()
            if not f.has("-use-export-context"):
                context = b""  # TLS 1.3: no context and an empty one are the same
            try:
                material = conn.export_keying_material(label, context, export)
            except ValueError as e:  # an empty label: HkdfLabel.label is <7..255>
                raise ShimFailure(f"export refused: {e}") from None
            self.send(material)
        for _ in range(f.int("-repeat-shim-initial-write", 1) or 1):
            if f.has("-shim-writes-first"):
                self.send((f.str("-shim-initial-write") or "hello").encode())
        if f.has("-key-update-before-read"):
            self.update_keys()

    def check_selected_credential(self, ev: Any) -> None:
        """-expect-selected-credential: the index of the credential the handshake used
        (-1: none of them): the PSK whose identity the library reports, or the certificate
        credential it reports, at their places in the whole list."""
        want = self.f.int("-expect-selected-credential")
        if want is None:
            return
        got = next((c.position for c in self.shim.psks if c.identity == ev.psk_identity), -1)
        if [c.identity for c in self.shim.psks].count(ev.psk_identity) > 1:
            raise Unimplemented("two PSK credentials with one identity: which was used?")
        made = self.shim.credentials[0]
        if ev.psk_identity is None and ev.credential is not None and ev.credential in made:
            # A certificate credential: its place among the certificates, after the PSKs
            # when they come first (psks_before_certificates).
            index = made.index(ev.credential)
            before = self.shim.psks[0].position == 0
            got = index + (len(self.shim.psks) if before else 0)
        if got != want:
            raise ShimFailure(f"selected credential {got}, wanted {want}")

    def finish(self) -> None:
        f, conn = self.f, self.conn
        want = f.str("-expect-msg-callback")
        if want and "".join(self.shim.trace) != want:
            got = "".join(self.shim.trace)
            raise ShimFailure(f"Bad message callback trace. Wanted:\n{want}\nGot:\n{got}")
        if not f.has("-server"):
            want_ticket = not f.has("-expect-no-session") and not f.has("-shim-shuts-down")
            if want_ticket != self.got_ticket:
                raise ShimFailure(
                    "new session was%s cached, but we expected the opposite"
                    % ("" if self.got_ticket else " not")
                )
            # As bssl_shim: the newest ticket's 0-RTT support, checked both ways.
            early = self.got_ticket and self.shim.session.max_early_data > 0
            if want_ticket and early != f.has("-expect-ticket-supports-early-data"):
                raise ShimFailure(
                    "new session did%s support early data, but we expected the opposite"
                    % ("" if early else " not")
                )
        if not conn.closed:
            conn.close()
            self.flush()


def check_handshake(f: Flags, ev: Any, conn: Any, resumed: bool) -> None:
    """The -expect-* flags about the handshake (BoringSSL's CheckHandshakeProperties)."""
    # BoringSSL's "session reused" means a ticket: an external PSK handshake is none.
    reused = ev.resumed and ev.psk_identity is None
    if resumed and reused == f.has("-expect-session-miss"):
        raise ShimFailure(f"session unexpectedly was{'' if reused else ' not'} reused")
    if not resumed and reused:
        raise ShimFailure("session unexpectedly resumed on the first connection")
    # -expect-session-id: a session cached statefully (a session ID); this library has only
    # tickets, so -expect-no-session-id always holds. -expect-ticket-renewal concerns TLS 1.2
    # (bssl_shim checks it below TLS 1.3 only); -use-early-callback only moves where
    # BoringSSL installs its one credential. bssl_shim checks none of -expect-early-data-reason,
    # -expect-accept-early-data and -expect-reject-early-data over DTLS.
    if f.has("-expect-session-id") and not resumed:
        raise ShimFailure("session was not cached on the server.")
    version = f.int("-expect-version")
    if version is not None and version != DTLS13:
        raise ShimFailure(f"Version mismatch: got {DTLS13:#x}, wanted {version:#x}")
    cipher = f.int("-expect-cipher")
    if cipher is not None and cipher != ev.cipher_suite:
        raise ShimFailure(f"Cipher mismatch: got {int(ev.cipher_suite):#x}, wanted {cipher:#x}")
    curve = f.int("-expect-curve-id")
    if curve is not None and (ev.group is None or curve != ev.group):
        raise ShimFailure(f"Group mismatch: got {ev.group}, wanted {curve}")
    alpn = f.str("-expect-alpn")
    if alpn is not None and alpn != (ev.alpn_protocol or ""):
        raise ShimFailure(f"ALPN mismatch: got {ev.alpn_protocol!r}, wanted {alpn!r}")
    if f.has("-expect-ech-retry-configs") or f.has("-expect-no-ech-retry-configs"):
        raise ShimFailure("Expected ECH rejection, but connection succeeded.")
    st = conn.statistics()
    hrr = st.hello_retry_requests_sent + st.hello_retry_requests_received > 0
    if f.has("-expect-hrr") and not hrr:
        raise ShimFailure("expected a HelloRetryRequest")
    if f.has("-expect-no-hrr") and hrr:
        raise ShimFailure("unexpected HelloRetryRequest")
    sigalg = f.int("-expect-peer-signature-algorithm")
    if sigalg is not None:
        if f.has("-server"):
            raise Unimplemented("the client's CertificateVerify scheme is not reported")
        if ev.signature_scheme is None or sigalg != ev.signature_scheme:
            raise ShimFailure(f"Signature algorithm mismatch: {ev.signature_scheme}, {sigalg}")
    server_name = f.str("-expect-server-name")
    got_name = getattr(conn._hs, "server_name", None)  # the server's view of the client's SNI
    if server_name is not None and got_name != server_name:
        raise ShimFailure(f"Server name mismatch: got {got_name!r}")
    if f.has("-expect-no-server-name") and got_name is not None:
        raise ShimFailure("unexpected server name")
    if f.has("-expect-verify-result"):
        # bssl_shim: SSL_get_verify_result is X509_V_OK, or with -verify-fail the callback's
        # X509_V_ERR_APPLICATION_VERIFICATION (kept by a soft-failing client, and by the
        # session for its resumptions). No certificate verified: X509_V_OK.
        verdict = conn.peer_verification
        if (verdict is not None and not verdict.accepted) != f.has("-verify-fail"):
            raise ShimFailure("Wrong certificate verification result")
    if f.has("-expect-no-peer-cert") and ev.peer_certificates:
        raise ShimFailure("unexpected peer certificate")
    ocsp = f.get("-expect-ocsp-response")
    if ocsp is not None and ocsp != ev.peer_ocsp_response:
        raise ShimFailure("OCSP response mismatch")
    scts = f.get("-expect-signed-cert-timestamps")
    if scts is not None and scts != _sct_wire(ev.peer_signed_certificate_timestamps):
        raise ShimFailure("SCT list mismatch")
    # bssl_shim: whether ECH was accepted must match -expect-ech-accept, both ways.
    accepted = getattr(getattr(ev, "ech_status", None), "name", None) == "ACCEPTED"
    if accepted != f.has("-expect-ech-accept"):
        raise ShimFailure(f"ECH was {'' if accepted else 'not '}accepted, but wanted opposite.")
    cert_file = f.str("-expect-peer-cert-file")
    if cert_file is not None:
        from cryptography import x509

        with open(cert_file, "rb") as fh:
            want = x509.load_pem_x509_certificates(fh.read())
        if list(ev.peer_certificates) != want:
            raise ShimFailure("peer certificate chain mismatch")


def check_ech_rejection(f: Flags, ev: Any) -> None:
    """-expect-ech-retry-configs / -expect-no-ech-retry-configs on a failed connection: it
    ended by ECH rejection (EchRejected), with these retry configs (bssl_shim)."""
    expect_none = f.has("-expect-no-ech-retry-configs")
    expected = f.get("-expect-ech-retry-configs")
    if not expect_none and expected is None:
        return
    if not ev.ech_rejected:
        raise ShimFailure(f"Expected ECH rejection, but: {describe(ev)}")
    if ev.ech_retry_configs != (None if expect_none else expected):
        raise ShimFailure(f"ECH retry configs mismatch: got {ev.ech_retry_configs!r}")


def _ech_keys(f: Flags) -> dict[str, Any]:
    """-ech-server-config / -ech-server-key / -ech-is-retry-config, one key per triple."""
    from dtls13.handshake.ech_keys import EchKey

    configs = list(f.get("-ech-server-config", ()))  # type: ignore[call-overload]
    keys = list(f.get("-ech-server-key", ()))  # type: ignore[call-overload]
    retry = f.ints("-ech-is-retry-config")
    if not configs and not keys and not retry:
        return {}
    if not len(configs) == len(keys) == len(retry):
        raise Unimplemented("-ech-server-config, -ech-server-key, -ech-is-retry-config unpaired")
    try:
        triples = zip(configs, keys, retry, strict=True)
        made = [EchKey.from_bytes(c, k, retry=bool(r)) for c, k, r in triples]
    except ValueError as e:
        raise Unimplemented(f"ECH key refused: {e}") from None
    return {"ech_keys": made}


def check_credential(f: Flags, ev: Any, credentials: tuple[list[Any], Any]) -> None:
    """-expect-selected-credential: the index in the credential list of the credential the
    library reports it authenticated with (HandshakeCompleted.credential); -1 the default."""
    want = f.int("-expect-selected-credential")
    if want is None:
        return
    made, default = credentials
    got: int | str = next((i for i, c in enumerate(made) if c is ev.credential), "none")
    if ev.credential is not None and ev.credential is default:
        got = -1
    if got != want:
        raise ShimFailure(f"credential {got} was selected, wanted {want}")


# BOGO_SHIM_TRACE=<file>: what the shim saw and did, for debugging a test. Read once: a test
# of 65,000 key updates passes some 400,000 frames, each of which would look it up.
TRACE_PATH = os.environ.get("BOGO_SHIM_TRACE")


def trace(line: str) -> None:
    """Append `line` to the BOGO_SHIM_TRACE file (callers check TRACE_PATH first)."""
    if TRACE_PATH:
        with open(TRACE_PATH, "a") as fh:
            fh.write(line + "\n")


def describe(ev: Any) -> str:
    """A terminal event as the ErrorMap sees it: 'sent alert: X' / 'received alert: X'."""
    if ev.timed_out:
        return f"timed out: {ev.reason}"
    if ev.alert is None:
        return f"connection ended: {ev.reason}"
    side = "received" if ev.by_peer else "sent"
    return f"{side} alert: {ev.alert.name}: {ev.reason}"


def log_outcome(code: int, kind: str, reason: str) -> None:
    """With BOGO_SHIM_LOG=<file>, one JSON line per shim run (run.sh's summary reads it)."""
    path = os.environ.get("BOGO_SHIM_LOG")
    if path:
        import json

        with open(path, "a") as fh:
            fh.write(json.dumps({"code": code, "kind": kind, "reason": reason}) + "\n")


def main(argv: list[str]) -> int:
    code = run(argv)
    return code


def run(argv: list[str]) -> int:
    if "-is-handshaker-supported" in argv:
        print("No")
        return 0
    try:
        prescan_versions(argv)
        argv, psks = psk_credentials.split(argv)
        common, first, again = parse(argv)
        check_supported(first)
        resume_count = common.int("-resume-count", 0) or 0
        if resume_count:
            check_supported(again, resumption=True)
        shim = Shim(common, psks)
        for i in range(resume_count + 1):
            shim.run_connection(first if i == 0 else again, resumed=i > 0)
    except Unimplemented as e:
        print(f"unimplemented: {e}", file=sys.stderr)
        log_outcome(89, "version" if isinstance(e, NotDTLS13) else "flag", str(e))
        return 89
    except ShimFailure as e:
        print(e, file=sys.stderr)
        log_outcome(1, "failure", str(e))
        return 1
    except Exception:
        # A crash: the library or the shim raised where it must not. Counted apart.
        import traceback

        print("SHIM CRASHED", file=sys.stderr)
        traceback.print_exc()
        log_outcome(3, "crash", traceback.format_exc(limit=3))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
