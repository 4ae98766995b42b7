"""The server's gate for ClientHellos from addresses that have no connection yet.

RFC 9147 §5.1: a server answers a first ClientHello with a HelloRetryRequest carrying a
stateless cookie and keeps no state until a second ClientHello brings the cookie back. The
one exception is a first ClientHello that arrives in fragments (post-quantum key shares make
it larger than one datagram): partial_hellos.py holds it, within budgets, until it is whole.
Nothing else is kept; every refusal and eviction is counted.

A stateless reply (HelloRetryRequest, alert) carries the record sequence number of the
ClientHello record it answers, the DTLS convention since RFC 6347 §4.2.1 ("In order to
avoid sequence number duplication in case of multiple HelloVerifyRequests, the server MUST
use the record sequence number in the ClientHello as the record sequence number in the
HelloVerifyRequest"). The gate therefore keeps no counter of its replies: one shared by
every source would number a client's HRR after all those sent to strangers, and a client
that keeps one epoch-0 replay window across the HRR (OpenSSL does) would then refuse the
ServerHello of the connection that follows, numbered from 0 (see Connection, which numbers
its epoch-0 records after the ClientHello's).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from .._fast import (
    DecodeError,
    Lease,
    MemoryBudgetExceeded,
    Owner,
    encode_plaintext_header,
    scan_client_hello,
)
from ..alerts import Alert, AlertDescription, AlertLevel
from ..crypto.suites import SUITES
from ..memory import PoolSet
from ..record import ContentType
from . import compression, groups, negotiation, partial_hellos, stapling
from . import extensions as ext
from . import messages as msgs
from .certificates import schemes_for_key, sign_certificate_verify
from .constants import DTLS13_VERSION, ExtensionType, HandshakeType
from .cookie import pack_cookie_extra
from .ech_server import ServerEch
from .flights import handshake_fragment
from .key_schedule import Transcript
from .messages import transcript_header
from .settings import ServerSettings

_ECH_TYPE = ExtensionType.encrypted_client_hello.to_bytes(2, "big")


def _ignore(name: str, n: int) -> None:
    """Counts of a ClientHello the gate looks into: the connection that follows counts."""


class Verdict(enum.Enum):
    DROP = "drop"  # nothing to do (counted)
    REPLY = "reply"  # send `reply` (a stateless HelloRetryRequest), keep nothing
    ACCEPT = "accept"  # make a Connection(first_message_seq=...) and give it `datagram`


@dataclass(frozen=True, slots=True)
class GateResult:
    verdict: Verdict
    reply: list[Lease] | None = None  # datagrams to send, then release
    datagram: bytes | None = None  # the whole ClientHello in one plaintext record
    first_message_seq: int = 0
    # The ClientHello as the gate decoded it, with its body: the connection need not
    # decode the same bytes again (Connection.expect_client_hello).
    client_hello: tuple[bytes, msgs.ClientHello] | None = None


PLAINTEXT_HEADER = 13
# Flight bounds remembered by what the ClientHello offered (HelloGate._cannot_pay).
_MAX_BOUNDS = 64


@dataclass(frozen=True, slots=True)
class FlightBound:
    """An upper bound of the bytes of a server's first flight, ServerHello to Finished, with
    record and fragment headers: what a ClientHello must cover under an amplification
    limit (RFC 9147 §5.1)."""

    base: int  # ServerHello without its share, EncryptedExtensions, Finished, headers
    certificate: int  # Certificate, CertificateVerify (and a CertificateRequest): 0 with PSKs
    shares: dict[int, int]  # our key share's length by group
    # What compressing the Certificate saves, by algorithm (RFC 8879).
    saves: dict[compression.Algorithm, int] = field(default_factory=dict)

    @classmethod
    def of(cls, config: ServerSettings) -> FlightBound:
        certificate = 0
        # The largest of the configured chains (one a certificate_callback makes on the
        # spot is still held to the connection's own amplification limit), and for each
        # compression algorithm the largest compressed one.
        sizes: list[tuple[int, dict[Any, int]]] = []
        for cred in config.server_certificates.certificates:
            chain, key = cred.chain, cred.key
            scheme = schemes_for_key(key)[0]
            signature = sign_certificate_verify(key, scheme, bytes(32), is_server=True)
            if not chain:  # a raw public key credential (RFC 7250): never compressed
                sizes.append((len(cred.body) + len(signature) + 200, {}))
                continue
            size = sum(len(c.public_bytes(Encoding.DER)) + 5 for c in chain)
            size += stapling.stapled_size(cred)  # an OCSP response, SCTs on the leaf
            sizes.append(
                (size + len(signature) + 200, compression.savings(chain, config.compression))
            )
        own_spki = getattr(config, "own_spki", b"")
        if own_spki and config.key is not None:
            # A raw public key (RFC 7250) instead: its SubjectPublicKeyInfo, ~100 bytes,
            # never compressed.
            scheme = schemes_for_key(config.key)[0]
            signature = sign_certificate_verify(config.key, scheme, bytes(32), is_server=True)
            sizes.append((len(own_spki) + 5 + len(signature) + 200, {}))
        saves: dict[Any, int] = {}
        if sizes:
            certificate = max(size for size, _ in sizes)
            for algorithm in config.compression:
                largest = max(size - saved.get(algorithm, 0) for size, saved in sizes)
                saves[algorithm] = certificate - largest
        shares = {int(g): groups.server_share_length(g) for g in config.group_order}
        return cls(600, certificate, shares, saves)

    def bytes(
        self, offered: Sequence[int] | None, psk: bool = False, compressions: Any = ()
    ) -> int:
        """The bound when the client offers key shares of `offered` (None: unknown; an HRR
        for the group then comes first anyway, so assume our largest share), with `psk`
        resumes (no certificate), and offers certificate compression with `compressions`
        (None: unknown, so assume the best)."""
        ours = [n for g, n in self.shares.items() if offered is None or g in offered]
        share = max(ours or self.shares.values())
        certificate = self.certificate - compression.saved(self.saves, compressions)
        return self.base + share + (0 if psk else certificate)


def _share_groups(ch: msgs.ClientHello) -> tuple[int, ...] | None:
    """The groups of the ClientHello's key shares (None: none, or unreadable)."""
    data = ch.extension(ExtensionType.key_share)
    if data is None:
        return None
    try:
        return tuple(e.group for e in ext.decode(data, ext.pull_key_share_client))
    except DecodeError:
        return None


_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384}
_U16s = tuple[int, ...]
_Scan = tuple[int, int, _U16s, _U16s | None, _U16s | None, _U16s | None, int, bool]
GATE_COUNTERS = (
    "datagrams",
    "not_client_hello",
    "malformed",
    "hello_retry_sent",
    "accepted",
    "bad_cookie",
    "partials_started",
    "partials_expired",
    "partials_refused",
    "partials_evicted",
    "fragment_mismatch",
    "budget",
)


class HelloGate:
    """Stateless handling of ClientHellos before any connection exists."""

    def __init__(
        self,
        config: ServerSettings,
        pools: PoolSet,
        *,
        owner: Owner | None = None,
        per_source_bytes: int = 8192,
        total_bytes: int = 1024 * 1024,
        max_sources: int = 1024,
        timeout: float = 5.0,
        max_hello: int = 8192,
        mtu: int | None = None,
    ) -> None:
        self.config = config
        self.pools = pools
        self.owner = pools.owner("hello gate", id(self), total_bytes, owner)
        self.per_source_bytes = per_source_bytes
        self.max_sources = max_sources
        self.timeout = timeout
        self.max_hello = max_hello
        self.mtu = mtu or config.mtu
        # Partial ClientHellos by address, least recently progressed first (an entry moves
        # to the end when a fragment brings new bytes), and how many each host holds.
        self._partials: dict[Any, tuple[Owner, partial_hellos.PartialHello]] = {}
        self._hosts: dict[Any, int] = {}
        # (suite, group, cookie length) -> the HRR fragment's bytes before the cookie: the
        # cookie is the last thing in a HelloRetryRequest, so a flood costs one concatenation
        # per reply instead of building the message.
        self._hrr_prefixes: dict[tuple[int, int | None, int], bytes] = {}
        self.counters: dict[str, int] = dict.fromkeys(GATE_COUNTERS, 0)
        # Set (by the endpoint): first ClientHellos too small to pay for our first flight
        # at this many times their size get a cookie (RFC 9147 §5.1). None: no such rule.
        self.amplification_limit: float | None = None
        self._flight_bound: FlightBound | None = None  # made on first use (one signature)
        # Its bytes() by (shares, psk, compressions): most ClientHellos ask the same few.
        self._bounds: dict[tuple[Any, bool, Any], int] = {}

    @property
    def partials(self) -> int:
        return len(self._partials)

    @property
    def bytes_held(self) -> int:
        return self.owner.in_use

    # First ClientHellos that arrive in fragments (partial_hellos.py).
    next_expiry = partial_hellos.next_expiry
    expire = partial_hellos.expire
    _client_hello_fragments = partial_hellos.client_hello_fragments
    _assemble = partial_hellos.assemble
    _discard = partial_hellos.discard

    def close(self) -> None:
        for addr in list(self._partials):
            self._discard(addr)
        self.pools.release_owner(self.owner)

    def receive_untrusted(
        self,
        data: Any,
        addr: Any,
        now: float,
        *,
        require_cookie: bool | None = None,
    ) -> GateResult:
        """Decide what a datagram from an address without a connection deserves.

        `require_cookie` overrides the config's `require_cookie` for this datagram (the
        endpoint demands cookies under load and from addresses that have a connection).
        With `amplification_limit` set, a first ClientHello too small to pay for our first
        flight under that limit gets a cookie anyway (RFC 9147 §5.1).
        """
        self.counters["datagrams"] += 1
        if self._partials:
            self.expire(now)
        cookie = self.config.require_cookie if require_cookie is None else require_cookie
        scan = scan_client_hello(data, self.max_hello)
        if scan is not None:
            # A lone, whole, well-formed first ClientHello without a cookie extension (its
            # certificate compression unread: the best is assumed, _decide looks again).
            if not cookie and self.amplification_limit is not None:
                cookie = self._cannot_pay(len(data), scan[5], scan[7], None)
            if cookie:
                retry = self._fast_retry(scan, data, addr, now)
                if retry is not None:
                    return retry
            if self._partials:
                self._discard(addr)  # a whole ClientHello replaces a partial one
            whole_datagram = bytes(data)
            body = whole_datagram[scan[0] : scan[0] + scan[1]]
            return self._decide(body, 0, addr, now, cookie, scan[6], whole_datagram)
        try:
            fragments = self._client_hello_fragments(data)
        except (DecodeError, Alert):
            self.counters["malformed"] += 1
            return GateResult(Verdict.DROP)
        if not fragments:
            self.counters["not_client_hello"] += 1
            return GateResult(Verdict.DROP)
        for header, body, record_seq in fragments:
            assembled = self._assemble(addr, header, body, now, record_seq)
            if assembled is not None:
                whole, record_seq = assembled
                # A ClientHello whole in this datagram goes to the connection with the rest
                # of the datagram (0-RTT records may follow it).
                original = (
                    bytes(data) if len(fragments) == 1 and header.length == len(body) else None
                )
                return self._decide(
                    whole, header.message_seq, addr, now, cookie, record_seq, original
                )
        return GateResult(Verdict.DROP)

    def _cannot_pay(
        self, paid: int, shares: Sequence[int] | None, psk: bool, compressions: Any = ()
    ) -> bool:
        """Whether `paid` bytes of ClientHello, offering key shares of `shares` (and a
        PSK, which spares the certificate if we take it, and certificate compression,
        see FlightBound.bytes), are too few for our first flight
        under the amplification limit. A PSK we then refuse makes the flight bigger than
        judged here: the connection holds it back until the client's repeated ClientHellos
        have paid for it."""
        assert self.amplification_limit is not None
        key = (shares, psk, compressions)  # tuples or None from the scan and _decide
        bound = self._bounds.get(key)
        if bound is None:
            if self._flight_bound is None:
                self._flight_bound = FlightBound.of(self.config)
            bound = self._flight_bound.bytes(shares, psk, compressions)
            if len(self._bounds) >= _MAX_BOUNDS:  # the client chooses the keys: bounded
                self._bounds.clear()
            self._bounds[key] = bound
        return paid * self.amplification_limit < bound

    # -- decisions ------------------------------------------------------------------

    def _decide(
        self,
        body: bytes,
        message_seq: int,
        addr: Any,
        now: float,
        require_cookie: bool,
        record_seq: int,
        original: bytes | None = None,
    ) -> GateResult:
        cfg = self.config
        try:
            ch = msgs.pull_message(HandshakeType.client_hello, body)
        except DecodeError:
            self.counters["malformed"] += 1
            return GateResult(Verdict.DROP)
        assert isinstance(ch, msgs.ClientHello)
        cookie_data = ch.extension(ExtensionType.cookie)
        if message_seq == 1 and cookie_data is not None:
            try:
                cookie = ext.decode(cookie_data, ext.pull_cookie)
            except DecodeError:
                cookie = b""
            if cfg.cookie_jar.check(cookie, now, addr) is None:
                # RFC 9147 §5.1: an invalid cookie MUST end the handshake with
                # illegal_parameter, so the client starts over without one. The alert is
                # smaller than what came in (no amplification) and keeps no state.
                self.counters["bad_cookie"] += 1
                return GateResult(
                    Verdict.REPLY,
                    reply=self._alert(AlertDescription.illegal_parameter, record_seq),
                )
            return self._accept(body, 1, record_seq, original, ch)
        if message_seq != 0:
            self.counters["malformed"] += 1
            return GateResult(Verdict.DROP)
        if not require_cookie and self.amplification_limit is not None:
            # What the ClientHello cost its sender: the datagram, or for one rebuilt from
            # fragments its body with one handshake and one record header at least.
            paid = len(original) if original is not None else len(body) + PLAINTEXT_HEADER + 12
            psk = ch.extension(ExtensionType.pre_shared_key) is not None
            offer = compression.offered_in(ch.extension(ExtensionType.compress_certificate))
            require_cookie = self._cannot_pay(paid, _share_groups(ch), psk, offer)
        if not require_cookie:
            return self._accept(body, 0, record_seq, original, ch)
        hrr = self._stateless_retry(ch, body, addr, now, record_seq)
        if hrr == []:
            return GateResult(Verdict.DROP)  # no memory for the reply: counted as budget
        if hrr is None:
            # Nothing we could retry with: let a connection answer with the right alert.
            return self._accept(body, 0, record_seq, original, ch)
        self.counters["hello_retry_sent"] += 1
        return GateResult(Verdict.REPLY, reply=hrr)

    def _hrr_fragment(self, suite: int, group: int | None, cookie: bytes) -> bytes:
        """The HelloRetryRequest as one DTLS handshake fragment (message_seq 0)."""
        key = (suite, group, len(cookie))
        prefix = self._hrr_prefixes.get(key)
        if prefix is None:
            if len(self._hrr_prefixes) >= 64:
                self._hrr_prefixes.clear()
            # Built once from the message codec with a stand-in cookie of the same length.
            stand_in = bytes(len(cookie))
            hrr = negotiation.hello_retry_request(suite, group, stand_in)
            msg_type, body = msgs.push_message(hrr)
            whole = handshake_fragment(msg_type, len(body), 0, 0, body)
            assert whole.endswith(stand_in)
            prefix = self._hrr_prefixes[key] = whole[: len(whole) - len(stand_in)]
        return prefix + cookie

    def _record(self, content_type: ContentType, payload: bytes, seq: int) -> list[Lease] | None:
        """One DTLSPlaintext record numbered `seq` (the record it answers) in a datagram
        of its own; None when it would not fit the MTU. Raises MemoryBudgetExceeded."""
        size = PLAINTEXT_HEADER + len(payload)
        if size > self.mtu:
            return None
        lease = self.pools.acquire(size, self.owner)
        encode_plaintext_header(lease, 0, content_type, 0, seq, len(payload))
        lease.write(PLAINTEXT_HEADER, payload)
        return [lease]

    def _alert(self, description: AlertDescription, record_seq: int) -> list[Lease]:
        """A fatal plaintext alert for the sender (empty when no memory is left)."""
        try:
            alert = bytes([AlertLevel.FATAL, description])
            return self._record(ContentType.alert, alert, record_seq) or []
        except MemoryBudgetExceeded:
            self.counters["budget"] += 1
            return []

    def _accept(
        self,
        body: bytes,
        message_seq: int,
        record_seq: int,
        original: bytes | None = None,
        ch: msgs.ClientHello | None = None,
    ) -> GateResult:
        """The whole ClientHello as one plaintext record, for the new connection: the
        datagram as it came, or rebuilt from fragments and numbered like the last of
        their records (the connection numbers its own epoch-0 records after it)."""
        self.counters["accepted"] += 1
        decoded = (body, ch) if ch is not None else None
        if original is not None:
            return GateResult(
                Verdict.ACCEPT,
                datagram=original,
                first_message_seq=message_seq,
                client_hello=decoded,
            )
        fragment = handshake_fragment(HandshakeType.client_hello, len(body), message_seq, 0, body)
        datagram = bytearray(PLAINTEXT_HEADER + len(fragment))
        encode_plaintext_header(datagram, 0, ContentType.handshake, 0, record_seq, len(fragment))
        datagram[PLAINTEXT_HEADER:] = fragment
        return GateResult(
            Verdict.ACCEPT,
            datagram=bytes(datagram),
            first_message_seq=message_seq,
            client_hello=decoded,
        )

    def _fast_retry(self, scan: _Scan, data: Any, addr: Any, now: float) -> GateResult | None:
        """The HelloRetryRequest for a lone, well-formed first ClientHello, from a scan of
        its bytes instead of a decoded message; None: `_decide` on the decoded message
        (which then does exactly what `_stateless_retry` would have)."""
        at, length, suites, versions, groups, shares, record_seq, _ = scan
        if versions is None or DTLS13_VERSION not in versions:
            return None
        with memoryview(data) as view:
            if _ECH_TYPE in view[at : at + length].tobytes():
                # Maybe an encrypted_client_hello: the inner ClientHello decides the HRR
                # (RFC 9849 §7.1.1), which only the decoded path knows how to open.
                return None
        cfg = self.config
        suite = negotiation.choose_suite(cfg, suites)
        if suite is None:
            return None
        usable, group = negotiation.retry_group(cfg, shares, groups)
        if not usable:
            return None
        if self._partials:
            self._discard(addr)  # a whole ClientHello replaces a partial one
        # Transcript-Hash(ClientHello1): the TLS-style 4-byte header, then the body (§5.2).
        ch1 = _HASHES[SUITES[suite].hash_name](
            transcript_header(HandshakeType.client_hello, length)
        )
        with memoryview(data) as view:
            ch1.update(view[at : at + length])
        cookie = cfg.cookie_jar.make(now, addr, ch1.digest(), pack_cookie_extra(suite, group))
        fragment = self._hrr_fragment(suite, group, cookie)
        try:
            reply = self._record(ContentType.handshake, fragment, record_seq)
        except MemoryBudgetExceeded:
            self.counters["budget"] += 1
            return GateResult(Verdict.DROP)
        if reply is None:
            return None
        self.counters["hello_retry_sent"] += 1
        return GateResult(Verdict.REPLY, reply=reply)

    def _stateless_retry(
        self, ch: msgs.ClientHello, body: bytes, addr: Any, now: float, record_seq: int
    ) -> list[Lease] | None:
        """A HelloRetryRequest with a cookie, built from this ClientHello alone (from its
        inner ClientHello when it is a ClientHelloOuter one of our ECH keys opens)."""
        cfg = self.config
        ech: ServerEch | None = None
        if ch.extension(ExtensionType.encrypted_client_hello) is not None:
            ech = ServerEch(cfg.ech_keys)
            try:
                ch, body = ech.open(ch, body, False, _ignore)
            except Alert:
                return None  # a connection decides (a malformed first ClientHello: dropped)
        versions = ch.extension(ExtensionType.supported_versions)
        try:
            offered = ext.decode(versions, ext.pull_supported_versions_client) if versions else ()
            groups_data = ch.extension(ExtensionType.supported_groups)
            shares_data = ch.extension(ExtensionType.key_share)
            client_groups = (
                ext.decode(groups_data, ext.pull_supported_groups) if groups_data else ()
            )
            shares = (
                {e.group for e in ext.decode(shares_data, ext.pull_key_share_client)}
                if shares_data
                else set()
            )
        except DecodeError:
            return None
        if DTLS13_VERSION not in offered or ch.legacy_cookie:
            return None
        suite = negotiation.choose_suite(cfg, ch.cipher_suites)
        if suite is None:
            return None
        usable, group = negotiation.retry_group(cfg, shares, client_groups)
        if not usable:
            return None
        # Transcript-Hash(ClientHello1): the TLS-style 4-byte header, then the body (§5.2).
        ch1 = hashlib.new(
            SUITES[suite].hash_name, transcript_header(HandshakeType.client_hello, len(body))
        )
        ch1.update(body)
        state = ech.retry_state() if ech is not None else b""
        cookie = cfg.cookie_jar.make(
            now, addr, ch1.digest(), pack_cookie_extra(suite, group, state)
        )
        if ech is not None and ech.inner:
            # The HRR confirms ECH (RFC 9849 §7.2.1) over message_hash(ClientHelloInner1).
            transcript = Transcript.from_message_hash(SUITES[suite].hash_name, ch1.digest())
            hrr = negotiation.hello_retry_request(suite, group, cookie)
            msg_type, hrr_body = msgs.push_message(
                ech.hello_retry_request(hrr, transcript, ch.random)
            )
            fragment = handshake_fragment(msg_type, len(hrr_body), 0, 0, hrr_body)
        else:
            fragment = self._hrr_fragment(suite, group, cookie)
        try:
            return self._record(ContentType.handshake, fragment, record_seq)
        except MemoryBudgetExceeded:
            self.counters["budget"] += 1
            return []
