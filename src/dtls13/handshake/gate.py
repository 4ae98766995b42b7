"""The server's gate for ClientHellos from addresses that have no connection yet.

RFC 9147 §5.1: a server answers a first ClientHello with a HelloRetryRequest carrying a
stateless cookie and keeps no state until a second ClientHello brings the cookie back. The
one exception is a first ClientHello that arrives in fragments (post-quantum key shares make
it larger than one datagram): its fragments are assembled in a small pooled buffer per
source address, charged to a per-source and a global budget, and dropped after a short
timeout. Nothing else is kept; every refusal is counted.

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
import struct
from dataclasses import dataclass
from typing import Any

from .._fast import (
    DecodeError,
    FragmentCoverage,
    Lease,
    MemoryBudgetExceeded,
    Owner,
    encode_plaintext_header,
    parse_header_untrusted,
    scan_client_hello,
)
from ..alerts import Alert, AlertDescription, AlertLevel
from ..config import ServerConfig
from ..crypto.suites import SUITES
from ..memory import PoolSet
from ..record import ContentType
from . import extensions as ext
from . import messages as msgs
from .constants import DTLS13_VERSION, ExtensionType, HandshakeType
from .flights import handshake_fragment
from .fragments import pull_handshake_fragments_untrusted
from .messages import transcript_header


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


@dataclass
class _Partial:
    lease: Lease
    coverage: FragmentCoverage
    msg_seq: int
    started: float
    record_seq: int  # the highest among the records of the fragments so far


PLAINTEXT_HEADER = 13
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384}
_PACK_HH = struct.Struct("!HH").pack
_U16s = tuple[int, ...]
_Scan = tuple[int, int, _U16s, _U16s | None, _U16s | None, _U16s | None, int]
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
    "fragment_mismatch",
    "budget",
)


def hello_retry_request(suite: int, group: int | None, cookie: bytes | None) -> msgs.ServerHello:
    """The HelloRetryRequest for these choices; the same inputs give the same bytes."""
    extensions = [
        ext.make_extension(
            ExtensionType.supported_versions, ext.push_supported_versions_server, DTLS13_VERSION
        )
    ]
    if group is not None:
        extensions.append(
            ext.make_extension(ExtensionType.key_share, ext.push_key_share_hrr, group)
        )
    if cookie is not None:
        extensions.append(ext.make_extension(ExtensionType.cookie, ext.push_cookie, cookie))
    return msgs.ServerHello(
        random=msgs.HELLO_RETRY_REQUEST_RANDOM, cipher_suite=suite, extensions=tuple(extensions)
    )


class HelloGate:
    """Stateless handling of ClientHellos before any connection exists."""

    def __init__(
        self,
        config: ServerConfig,
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
        self._partials: dict[Any, tuple[Owner, _Partial]] = {}
        # (suite, group, cookie length) -> the HRR fragment's bytes before the cookie: the
        # cookie is the last thing in a HelloRetryRequest, so a flood costs one concatenation
        # per reply instead of building the message.
        self._hrr_prefixes: dict[tuple[int, int | None, int], bytes] = {}
        self.counters: dict[str, int] = dict.fromkeys(GATE_COUNTERS, 0)

    @property
    def partials(self) -> int:
        return len(self._partials)

    @property
    def bytes_held(self) -> int:
        return self.owner.in_use

    def next_expiry(self) -> float | None:
        """When the oldest partial ClientHello times out (None when none is held)."""
        if not self._partials:
            return None
        return min(p.started for _, p in self._partials.values()) + self.timeout

    def expire(self, now: float) -> None:
        """Drop partial ClientHellos older than the timeout."""
        for addr in [a for a, (_, p) in self._partials.items() if now - p.started >= self.timeout]:
            self._discard(addr)
            self.counters["partials_expired"] += 1

    def close(self) -> None:
        for addr in list(self._partials):
            self._discard(addr)
        self.pools.release_owner(self.owner)

    def receive_untrusted(
        self, data: Any, addr: Any, now: float, *, require_cookie: bool | None = None
    ) -> GateResult:
        """Decide what a datagram from an address without a connection deserves.

        `require_cookie` overrides the config's `require_cookie` for this datagram (the
        endpoint demands cookies under load and from addresses that have a connection).
        """
        self.counters["datagrams"] += 1
        if self._partials:
            self.expire(now)
        cookie = self.config.require_cookie if require_cookie is None else require_cookie
        scan = scan_client_hello(data, self.max_hello)
        if scan is not None:
            # A lone, whole, well-formed first ClientHello without a cookie extension.
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

    # -- parsing and assembly -------------------------------------------------------

    def _client_hello_fragments(self, data: Any) -> list[tuple[msgs.HandshakeHeader, bytes, int]]:
        """(header, body, record sequence number) of each ClientHello fragment."""
        view = memoryview(data)
        out: list[tuple[msgs.HandshakeHeader, bytes, int]] = []
        offset = 0
        while offset < len(view):
            first, epoch, seq, hl, length = parse_header_untrusted(view, offset, 0)
            if first >= 0x20 and out:
                break  # protected records after a ClientHello: 0-RTT data, for the connection
            if first != ContentType.handshake or epoch != 0:
                return []  # only plaintext handshake records may come from strangers
            record = view[offset + hl : offset + hl + length]
            for header, body in pull_handshake_fragments_untrusted(record):
                if header.msg_type != HandshakeType.client_hello or header.length > self.max_hello:
                    return []
                out.append((header, bytes(body), seq))
            offset += hl + length
        return out

    def _assemble(
        self, addr: Any, header: msgs.HandshakeHeader, body: bytes, now: float, record_seq: int
    ) -> tuple[bytes, int] | None:
        """(the whole ClientHello, the highest record number of its fragments) once
        complete."""
        if header.fragment_offset == 0 and header.fragment_length == header.length:
            self._discard(addr)
            return body, record_seq
        entry = self._partials.get(addr)
        if entry is not None and (
            entry[1].msg_seq != header.message_seq or len(entry[1].lease) != header.length
        ):
            self._discard(addr)  # a new attempt replaces the old one
            entry = None
        if entry is None:
            if len(self._partials) >= self.max_sources:
                self.counters["partials_refused"] += 1
                return None
            source = self.pools.owner("source", addr, self.per_source_bytes, self.owner)
            try:
                lease = self.pools.acquire(header.length, source)
            except MemoryBudgetExceeded:
                self.pools.release_owner(source)
                self.counters["partials_refused"] += 1
                return None
            entry = (
                source,
                _Partial(
                    lease,
                    FragmentCoverage(header.length, 64),
                    header.message_seq,
                    now,
                    record_seq,
                ),
            )
            self._partials[addr] = entry
            self.counters["partials_started"] += 1
        partial = entry[1]
        partial.record_seq = max(partial.record_seq, record_seq)
        result = partial.coverage.write_fragment(partial.lease, header.fragment_offset, body)
        if result < 0:
            self.counters["fragment_mismatch"] += 1
            self._discard(addr)
            return None
        if not partial.coverage.complete:
            return None
        whole = partial.lease.tobytes()
        self._discard(addr)
        return whole, partial.record_seq

    def _discard(self, addr: Any) -> None:
        entry = self._partials.pop(addr, None)
        if entry is not None:
            source, partial = entry
            partial.lease.release()
            self.pools.release_owner(source)

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
            msg_type, body = msgs.push_message(hello_retry_request(suite, group, stand_in))
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
        at, length, suites, versions, groups, shares, record_seq = scan
        if versions is None or DTLS13_VERSION not in versions:
            return None
        cfg = self.config
        for suite in cfg.suites:
            if suite in suites:
                break
        else:
            return None
        group: int | None = None
        if shares is None or not any(g in shares for g in cfg.group_order):
            if groups is None:
                return None
            group = next((g for g in cfg.group_order if g in groups), None)
            if group is None:
                return None
        if self._partials:
            self._discard(addr)  # a whole ClientHello replaces a partial one
        # Transcript-Hash(ClientHello1): the TLS-style 4-byte header, then the body (§5.2).
        ch1 = _HASHES[SUITES[suite].hash_name](
            transcript_header(HandshakeType.client_hello, length)
        )
        with memoryview(data) as view:
            ch1.update(view[at : at + length])
        cookie = cfg.cookie_jar.make(now, addr, ch1.digest(), _PACK_HH(suite, group or 0))
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
        """A HelloRetryRequest with a cookie, built from this ClientHello alone."""
        cfg = self.config
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
        suite = next((s for s in cfg.suites if s in ch.cipher_suites), None)
        if suite is None:
            return None
        group: int | None = None
        if not any(g in shares for g in cfg.group_order):
            group = next((g for g in cfg.group_order if g in client_groups), None)
            if group is None:
                return None
        # Transcript-Hash(ClientHello1): the TLS-style 4-byte header, then the body (§5.2).
        ch1 = hashlib.new(
            SUITES[suite].hash_name, transcript_header(HandshakeType.client_hello, len(body))
        )
        ch1.update(body)
        extra = struct.pack("!HH", suite, group or 0)
        cookie = cfg.cookie_jar.make(now, addr, ch1.digest(), extra)
        fragment = self._hrr_fragment(suite, group, cookie)
        try:
            return self._record(ContentType.handshake, fragment, record_seq)
        except MemoryBudgetExceeded:
            self.counters["budget"] += 1
            return []
