"""A ClientHello other than the one a server answered, once it has keys and until its
handshake completes (RFC 9147 §5.11, establishing a new association with existing
parameters): a ClientHello1 gets a stateless HelloRetryRequest with a cookie and leaves the
association as it is; only a ClientHello2 whose cookie checks for this address starts the
handshake over. A fragmented one is reassembled apart from the handshake's own messages.

Methods of `Connection` (connection.py binds them; it holds the state they use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fast import DecodeError
from .config import ServerConfig
from .connection_handshake import MAX_RESTARTS
from .crypto.suites import SUITES
from .handshake import extensions as ext
from .handshake import messages as msgs
from .handshake import negotiation
from .handshake.constants import ExtensionType, HandshakeType
from .handshake.cookie import pack_cookie_extra
from .handshake.flights import handshake_fragment
from .handshake.key_schedule import Transcript
from .handshake.server import ServerHandshake
from .record import ContentType, RecordNumber

if TYPE_CHECKING:
    from .connection import Connection


def changed_hello(self: Connection, header: Any, fragment: memoryview) -> bool:
    """A server's view, once it has keys and until the handshake completes: is this a
    ClientHello other than the one(s) processed (see _other_client_hello)?"""
    if (
        self.is_client
        or header.msg_type != HandshakeType.client_hello
        or self._hs.in_hello
        or self._hs.connected
        or self._restarts >= MAX_RESTARTS
    ):
        return False
    assert isinstance(self._hs, ServerHandshake)
    seen = self._hs.hello_bodies.get(header.message_seq)
    if seen is None:  # a new message_seq (a ClientHello2 after none of ours), not a repeat
        return bool(header.message_seq >= self._next_receive_seq())
    if header.length == len(seen):
        start = header.fragment_offset
        if seen[start : start + header.fragment_length] == fragment:
            return False
    return True


def other_client_hello(
    self: Connection, header: Any, fragment: memoryview, now: float, record_number: RecordNumber
) -> None:
    """A ClientHello other than ours, at a server with keys that has not completed: a
    client that started over after a hello was damaged on the way, a client that
    rebooted, or a forgery by anyone who knows the client's address.

    RFC 9147 §5.11: the server "MUST NOT destroy the existing association until the
    client has demonstrated reachability either by completing a cookie exchange or by
    completing a complete handshake". So a ClientHello1 gets a stateless
    HelloRetryRequest with a cookie, state untouched, and only a ClientHello2 whose
    cookie checks for this address starts the handshake over, from that ClientHello2
    (as a server made for it by a stateless endpoint would). Anything else is dropped.
    A fragmented ClientHello (post-quantum key shares) is reassembled first, apart from
    the handshake's own messages and within the same budget.
    """
    if header.fragment_offset == 0 and header.fragment_length == header.length:
        self._answer_other_client_hello(header.message_seq, fragment, now, record_number)
        return
    other = self._other_hello
    if other is not None and other.next_expected_seq != header.message_seq:
        self._drop_other_hello()  # a new attempt: only the newest is reassembled
        other = None
    if other is None:
        if header.message_seq > 1:
            self.stats["dropped_handshake_fragments"] += 1
            return
        other = self._other_hello = self._new_reassembler(header.message_seq)
        other.max_messages_ahead = 0
    buffered = self._buffer_fragment(header, fragment, authenticated=False, into=other)
    if not buffered:
        self.stats["dropped_handshake_fragments"] += 1
    message = other.next_message()
    if message is not None:
        try:
            self._answer_other_client_hello(message.message_seq, message.body, now, record_number)
        finally:
            self._drop_other_hello()


def drop_other_hello(self: Connection) -> None:
    other, self._other_hello = self._other_hello, None
    if other is not None:
        other.close()


def answer_other_client_hello(
    self: Connection,
    message_seq: int,
    body_view: memoryview,
    now: float,
    record_number: RecordNumber,
) -> None:
    """Act on a whole ClientHello other than ours (see other_client_hello)."""
    cfg = self.config
    assert isinstance(cfg, ServerConfig)
    body = bytes(body_view)
    try:
        ch = msgs.pull_message(HandshakeType.client_hello, body)
        assert isinstance(ch, msgs.ClientHello)
        cookie_data = ch.extension(ExtensionType.cookie)
        if cookie_data is not None:
            cookie = ext.decode(cookie_data, ext.pull_cookie)
            if message_seq == 1 and cfg.cookie_jar.check(cookie, now, self.peer_address):
                self._restart_handshake(now, "a ClientHello with a valid cookie", 1)
                whole = msgs.HandshakeHeader(HandshakeType.client_hello, len(body), 1, 0, len(body))
                self._buffer_hello_fragment(whole, memoryview(body), record_number)
            else:
                self.stats["dropped_handshake_fragments"] += 1
            return
        suite = negotiation.choose_suite(cfg, ch.cipher_suites)
        shares_data = ch.extension(ExtensionType.key_share)
        groups_data = ch.extension(ExtensionType.supported_groups)
        if suite is None or message_seq != 0 or groups_data is None:
            self.stats["dropped_handshake_fragments"] += 1
            return
        shared: set[int] = set()
        if shares_data is not None:
            shared = {e.group for e in ext.decode(shares_data, ext.pull_key_share_client)}
        offered = ext.decode(groups_data, ext.pull_supported_groups)
    except DecodeError:
        self.stats["dropped_malformed_plaintext"] += 1
        return
    usable, group = negotiation.retry_group(cfg, shared, offered)
    if not usable:
        self.stats["dropped_handshake_fragments"] += 1
        return
    # What a server made for ClientHello2 rebuilds the HelloRetryRequest and transcript
    # from (ServerHandshake._resume_from_cookie).
    transcript = Transcript()
    transcript.select(SUITES[suite].hash_name)
    transcript.add(HandshakeType.client_hello, body)
    extra = pack_cookie_extra(suite, group)
    cookie = cfg.cookie_jar.make(now, self.peer_address, transcript.digest(), extra)
    msg_type, hrr = msgs.push_message(negotiation.hello_retry_request(suite, group, cookie))
    with self._records.datagram_writer(self.mtu) as w:
        w.add(0, ContentType.handshake, handshake_fragment(msg_type, len(hrr), 0, 0, hrr))
        self._queue(w.finish())
    self.stats["hello_retry_requests_sent"] += 1
