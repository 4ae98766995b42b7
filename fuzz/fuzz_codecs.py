"""Harness: every decoder of handshake bytes, held to the one error type it may raise.

Input: one selector byte (which decoder), then the bytes it reads. What each may raise,
as the code documents it:

- the ``pull_*`` message and extension codecs (messages.py, extensions.py), ``pull_ack``,
  ``pull_message``, ``decode`` and the ``_fast.Buffer`` reads: ``DecodeError`` only (its
  subclasses ``UnexpectedHandshakeType`` and ``DuplicateExtensionError`` included);
- the fragment layer (``pull_handshake_fragments_untrusted``,
  ``Reassembler.add_record_untrusted``): only ``DecodeErrorAlert`` and
  ``IllegalParameter``, the two ``Alert`` classes its docstring names;
- ``parse_certificate_chain_untrusted``: ``BadCertificate`` only;
- ``peer_key_untrusted`` (a raw public key, RFC 7250): ``BadCertificate`` and
  ``CertificateUnknown`` only;
- ``compression.open_untrusted`` (a CompressedCertificate, RFC 8879): ``DecodeErrorAlert``,
  ``IllegalParameter`` and ``BadCertificate``, its pooled buffer given back;
- ``CookieJar.check`` and ``TicketProtector.open``: nothing (None for bad input);
- Encrypted Client Hello (RFC 9849): ``pull_ech_config_list`` and ``pull_ech_client_hello``,
  ``DecodeError`` only;
- ``compression.decode_offer_untrusted`` and ``delegated.offered_schemes_untrusted`` (the
  peer's compress_certificate and delegated_credential extensions): ``DecodeErrorAlert``
  only;
- delegated credentials, certificate_authorities, the server's empty server_name and
  trust anchor IDs: ``DecodeError`` only.

A message that decodes must encode again to bytes that decode to an equal message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fuzz_common

from dtls13._fast import Buffer, DecodeError
from dtls13.alerts import BadCertificate, CertificateUnknown, DecodeErrorAlert, IllegalParameter
from dtls13.handshake import compression, delegated, ech, trust_anchors
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.certificates import parse_certificate_chain_untrusted
from dtls13.handshake.cookie import CookieJar
from dtls13.handshake.fragments import Reassembler, pull_handshake_fragments_untrusted
from dtls13.handshake.raw_keys import (
    peer_key_untrusted,
    pull_certificate_type,
    pull_certificate_types,
)
from dtls13.handshake.srtp import pull_use_srtp
from dtls13.handshake.tickets import TicketProtector
from dtls13.memory import PoolSet
from dtls13.record.ack import pull_ack

POOLS = PoolSet()
COOKIES = CookieJar(b"k" * 32, lifetime=60.0, rotation_interval=300.0)
TICKETS = TicketProtector(b"t" * 32, rotation_interval=3600.0)


def _whole(pull: Callable[[Buffer], Any]) -> Callable[[bytes], Any]:
    def run(data: bytes) -> Any:
        return ext.decode(data, pull)

    run.__name__ = pull.__name__
    return run


def _finished_of(length: int) -> Callable[[bytes], Any]:
    return lambda data: ext.decode(data, lambda buf: msgs.pull_finished(buf, length))


def _client_hello_tls(data: bytes) -> Any:
    return ext.decode(data, lambda buf: msgs.pull_client_hello(buf, dtls=False))


def _message(data: bytes) -> Any:
    """pull_message with the first byte as the type; a decoded message re-encodes."""
    if not data:
        return None
    message = msgs.pull_message(data[0], data[1:])
    msg_type, body = msgs.push_message(message)
    assert msg_type == data[0], (msg_type, data[0])
    again = msgs.pull_message(msg_type, body)
    assert again == message, (message, again)
    return message


def _buffer_program(data: bytes) -> None:
    """Buffer reads driven by the input: the first half says which, the rest is read.
    Arguments stay in what callers pass (length sizes 1-4, or 1-2 for uint16 lists):
    anything else is a programming error (ValueError), not bad input."""
    half = len(data) // 2
    ops, payload = data[:half], data[half:]
    buf = Buffer(payload)
    try:
        for i, op in enumerate(ops):
            kind = op % 16
            arg = ops[i + 1] if i + 1 < len(ops) else 0
            if kind == 0:
                buf.pull_uint8()
            elif kind == 1:
                buf.pull_uint16()
            elif kind == 2:
                buf.pull_uint24()
            elif kind == 3:
                buf.pull_uint32()
            elif kind == 4:
                buf.pull_uint48()
            elif kind == 5:
                buf.pull_uint64()
            elif kind == 6:
                buf.pull_bytes(arg)
            elif kind == 7:
                buf.pull_view(arg).release()
            elif kind == 8:
                buf.pull_vector(1 + arg % 4)
            elif kind == 9:
                with buf.pull_block(1 + arg % 3):
                    buf.pull_uint8()
            elif kind == 10:
                buf.pull_uint16_list(1 + arg % 2, arg % 5)
            elif kind == 11:
                buf.pull_list(1 + arg % 3, lambda b: b.pull_uint16())
            elif kind == 12:
                buf.seek(arg - 4)
            elif kind == 13:
                buf.expect_end()
            elif kind == 14:
                buf.data_slice(arg % 8, arg)
            else:
                buf.view_slice(arg % 8, arg).release()
    finally:
        buf.close()


def _fragments(data: bytes) -> None:
    for _, view in pull_handshake_fragments_untrusted(data):
        view.release()


def _reassembler(data: bytes) -> None:
    """Records (2-byte length prefixed) into one Reassembler; its messages released."""
    r = Reassembler(
        POOLS, None, max_message_size=4096, max_messages_ahead=4, max_bytes_buffered=16384
    )
    try:
        for _, record in fuzz_common.split_chunks(data, limit=16):
            r.add_record_untrusted(record)
            while (message := r.next_message()) is not None:
                _, _, body = message
                bytes(body)
    finally:
        r.close()


def _certificates(data: bytes) -> None:
    parse_certificate_chain_untrusted(p for _, p in fuzz_common.split_chunks(data, limit=4))


def _raw_key(data: bytes) -> None:
    peer_key_untrusted([p for _, p in fuzz_common.split_chunks(data, limit=4)], frozenset())


def _compressed_certificate(data: bytes) -> None:
    """A CompressedCertificate body, decompressed into pooled memory (limit 4096)."""
    compression.open_untrusted(
        data, compression.available(), 4096, lambda n: POOLS.acquire(n, None), bytes
    )


def _cookie(data: bytes) -> None:
    assert COOKIES.check(data, 100.0, ("192.0.2.1", 1234)) is None or len(data) > 32


def _ticket(data: bytes) -> None:
    TICKETS.open(data, 100.0)


_DECODE_ERROR: tuple[type[BaseException], ...] = (DecodeError,)
_FRAGMENT_ALERTS: tuple[type[BaseException], ...] = (DecodeErrorAlert, IllegalParameter)

# (decoder, the exceptions it may raise)
TARGETS: list[tuple[Callable[[bytes], Any], tuple[type[BaseException], ...]]] = [
    (_whole(msgs.pull_handshake_header), _DECODE_ERROR),
    (_whole(msgs.pull_client_hello), _DECODE_ERROR),
    (_client_hello_tls, _DECODE_ERROR),
    (_whole(msgs.pull_server_hello), _DECODE_ERROR),
    (_whole(msgs.pull_encrypted_extensions), _DECODE_ERROR),
    (_whole(msgs.pull_certificate_request), _DECODE_ERROR),
    (_whole(msgs.pull_certificate), _DECODE_ERROR),
    (_whole(msgs.pull_certificate_verify), _DECODE_ERROR),
    (_whole(msgs.pull_finished), _DECODE_ERROR),
    (_finished_of(32), _DECODE_ERROR),
    (_finished_of(48), _DECODE_ERROR),
    (_whole(msgs.pull_new_session_ticket), _DECODE_ERROR),
    (_whole(msgs.pull_key_update), _DECODE_ERROR),
    (_whole(msgs.pull_request_connection_id), _DECODE_ERROR),
    (_whole(msgs.pull_new_connection_id), _DECODE_ERROR),
    (_message, _DECODE_ERROR),
    (_whole(ext.pull_extension), _DECODE_ERROR),
    (_whole(ext.pull_extensions), _DECODE_ERROR),
    (_whole(ext.pull_supported_versions_client), _DECODE_ERROR),
    (_whole(ext.pull_supported_versions_server), _DECODE_ERROR),
    (_whole(ext.pull_key_share_entry), _DECODE_ERROR),
    (_whole(ext.pull_key_share_client), _DECODE_ERROR),
    (_whole(ext.pull_key_share_hrr), _DECODE_ERROR),
    (_whole(ext.pull_supported_groups), _DECODE_ERROR),
    (_whole(ext.pull_signature_algorithms), _DECODE_ERROR),
    (_whole(ext.pull_server_name), _DECODE_ERROR),
    (_whole(ext.pull_alpn), _DECODE_ERROR),
    (_whole(ext.pull_cookie), _DECODE_ERROR),
    (_whole(ext.pull_record_size_limit), _DECODE_ERROR),
    (_whole(ext.pull_early_data_ticket), _DECODE_ERROR),
    (_whole(ext.pull_psk_key_exchange_modes), _DECODE_ERROR),
    (_whole(ext.pull_pre_shared_key_client), _DECODE_ERROR),
    (_whole(ext.pull_pre_shared_key_server), _DECODE_ERROR),
    (_whole(ext.pull_connection_id), _DECODE_ERROR),
    (_whole(pull_ack), _DECODE_ERROR),
    (_buffer_program, _DECODE_ERROR),
    (_fragments, (DecodeErrorAlert,)),
    (_reassembler, _FRAGMENT_ALERTS),
    (_certificates, (BadCertificate,)),
    (_cookie, ()),
    (_ticket, ()),
    # Appended (the corpus names targets by their index): use_srtp (RFC 5764).
    (_whole(pull_use_srtp), _DECODE_ERROR),
    # Raw public keys (RFC 7250): the certificate-type extensions and the peer's key.
    (_whole(pull_certificate_types), _DECODE_ERROR),
    (_whole(pull_certificate_type), _DECODE_ERROR),
    (_raw_key, (BadCertificate, CertificateUnknown)),
    # Certificate compression (RFC 8879).
    (_whole(compression.pull_compress_certificate), _DECODE_ERROR),
    (_whole(compression.pull_compressed_certificate), _DECODE_ERROR),
    (_compressed_certificate, (DecodeErrorAlert, IllegalParameter, BadCertificate)),
    # Encrypted Client Hello (RFC 9849), the peer's compress_certificate and
    # delegated_credential extensions, certificate_authorities, trust anchor IDs.
    (ech.pull_ech_config_list, _DECODE_ERROR),
    (ech.pull_ech_client_hello, _DECODE_ERROR),
    (compression.decode_offer_untrusted, (DecodeErrorAlert,)),
    (delegated.offered_schemes_untrusted, (DecodeErrorAlert,)),
    (_whole(delegated.pull_delegated_credential), _DECODE_ERROR),
    (_whole(ext.pull_certificate_authorities), _DECODE_ERROR),
    (_whole(ext.pull_server_name_ack), _DECODE_ERROR),
    (_whole(trust_anchors.pull_ids), _DECODE_ERROR),
    (_whole(trust_anchors.pull_available_ids), _DECODE_ERROR),
]


def one_input(data: bytes) -> None:
    if not data:
        return
    decoder, allowed = TARGETS[data[0] % len(TARGETS)]
    try:
        decoder(data[1:])
    except allowed:
        pass
    except Exception as exc:
        raise AssertionError(
            f"{decoder.__name__} raised {type(exc).__name__}, not one of "
            f"{[e.__name__ for e in allowed]}: {exc}"
        ) from exc
    fuzz_common.check_pools(POOLS, decoder.__name__)


def main() -> None:
    fuzz_common.atheris_main(one_input)


if __name__ == "__main__":
    main()
