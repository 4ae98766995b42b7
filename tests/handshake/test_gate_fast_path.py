"""The gate's fast path for lone first ClientHellos decides exactly what the slow path does."""

from __future__ import annotations

import random
from typing import Any
from unittest import mock

import pytest

from dtls13._fast import Buffer, scan_client_hello
from dtls13.connection import Connection
from dtls13.handshake import extensions as ext
from dtls13.handshake import gate as gate_module
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import ExtensionType
from dtls13.handshake.flights import handshake_fragment
from dtls13.handshake.gate import GateResult, HelloGate, Verdict
from dtls13.memory import PoolSet
from tests.support.dtls_pair import SERVER_ADDR, configs, wall_clock

ADDR = ("10.0.0.7", 4444)


def _hello(**client: Any) -> bytes:
    ccfg, _ = configs(client=client)
    conn = Connection(ccfg, pools=PoolSet(), wall_clock=wall_clock)
    conn.connect(SERVER_ADDR, 0.0)
    (datagram,) = conn.datagrams_to_send(0.0)
    data = datagram[0].tobytes()
    datagram[0].release()
    conn.close()
    for lease, _ in conn.datagrams_to_send(0.0):
        lease.release()
    return data


def _record(body: bytes, message_seq: int = 0) -> bytes:
    frag = handshake_fragment(1, len(body), message_seq, 0, body)
    return b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag


def _body(hello: bytes) -> bytes:
    return hello[25:]


def _outcome(gate: HelloGate, data: bytes) -> tuple[Any, ...]:
    result: GateResult = gate.receive_untrusted(data, ADDR, 100.0, require_cookie=True)
    replies = []
    for lease in result.reply or []:
        replies.append(lease.tobytes())
        lease.release()
    return (result.verdict, replies, result.datagram, result.first_message_seq)


def _both(data: bytes) -> tuple[tuple[Any, ...], tuple[Any, ...], dict[str, int]]:
    """The outcome with the fast path and with the slow path only, for one datagram."""
    _, scfg = configs(server={"require_cookie": True, "cookie_secret": bytes(32)})
    pools = PoolSet()
    fast, slow = HelloGate(scfg, pools), HelloGate(scfg, pools)
    try:
        got = _outcome(fast, data)
        with mock.patch.object(gate_module, "scan_client_hello", lambda *args: None):
            want = _outcome(slow, data)
        assert fast.counters == slow.counters
        return got, want, fast.counters
    finally:
        fast.close()
        slow.close()
        assert pools.in_use == 0


def test_a_real_first_client_hello_takes_the_fast_path() -> None:
    data = _hello()
    assert scan_client_hello(data, 8192) is not None
    got, want, counters = _both(data)
    assert got == want and got[0] is Verdict.REPLY
    assert counters["hello_retry_sent"] == 1


@pytest.mark.parametrize("shares", [["x25519"], ["X25519MLKEM768"], []])
def test_hello_retry_for_a_group_matches(shares: list[str]) -> None:
    data = _hello(groups=["secp256r1", "x25519"], key_share_groups=["secp256r1"])
    got, want, _ = _both(data)
    assert got == want and got[0] is Verdict.REPLY


def _extensions_hello(extensions: list[ext.Extension], **fields: Any) -> bytes:
    fields = {"random": bytes(32), "cipher_suites": (0x1301,), **fields}
    ch = msgs.ClientHello(extensions=tuple(extensions), **fields)
    buf = Buffer()
    msgs.push_client_hello(buf, ch)
    return _record(buf.data)


VERSIONS = ext.Extension(ExtensionType.supported_versions, b"\x02\xfe\xfc")
GROUPS = ext.Extension(ExtensionType.supported_groups, b"\x00\x02\x00\x1d")
SHARE = ext.Extension(ExtensionType.key_share, b"\x00\x24\x00\x1d\x00\x20" + bytes(32))

ODD_HELLOS = {
    "duplicate extension": [VERSIONS, GROUPS, GROUPS],
    "no supported_versions": [GROUPS, SHARE],
    "odd versions": [ext.Extension(43, b"\x03\xfe\xfc\x00"), GROUPS],
    "versions short": [ext.Extension(43, b"\x04\xfe\xfc"), GROUPS],
    "empty versions": [ext.Extension(43, b""), GROUPS],
    "groups trailing": [VERSIONS, ext.Extension(10, b"\x00\x02\x00\x1d\x00")],
    "groups empty list": [VERSIONS, ext.Extension(10, b"\x00\x00")],
    "share empty key": [VERSIONS, GROUPS, ext.Extension(51, b"\x00\x04\x00\x1d\x00\x00")],
    "share twice": [
        VERSIONS,
        GROUPS,
        ext.Extension(51, b"\x00\x0a\x00\x1d\x00\x01\x01\x00\x1d\x00\x01\x01"),
    ],
    "share cut": [VERSIONS, GROUPS, ext.Extension(51, b"\x00\x05\x00\x1d\x00\x05\x01")],
    "no group in common": [VERSIONS, ext.Extension(10, b"\x00\x02\x99\x99")],
    "share only": [VERSIONS, SHARE],
    "no groups, no shares": [VERSIONS],
    "with a cookie": [VERSIONS, GROUPS, ext.Extension(44, b"\x00\x03abc")],
    "good": [VERSIONS, GROUPS, SHARE],
    "good, unknown extension": [ext.Extension(0x7777, b"xyz"), VERSIONS, GROUPS],
}


@pytest.mark.parametrize("name", list(ODD_HELLOS))
def _numbered(data: bytes, seq: int) -> bytes:
    """The same DTLSPlaintext record with another record sequence number."""
    return data[:5] + seq.to_bytes(6, "big") + data[11:]


@pytest.mark.parametrize("seq", [0, 1, 7, 64, 2100, 2**48 - 1])
def test_hello_retry_carries_the_client_hello_record_number(seq: int) -> None:
    """A stateless HelloRetryRequest is numbered like the ClientHello record it answers
    (RFC 6347 §4.2.1's convention), on the fast path and the slow path alike."""
    for data in (
        _hello(),
        _hello(groups=["secp256r1", "x25519"], key_share_groups=["secp256r1"]),
        _extensions_hello([VERSIONS, GROUPS]),
    ):
        got, want, _ = _both(_numbered(data, seq))
        assert got == want and got[0] is Verdict.REPLY
        (hrr,) = got[1]
        assert hrr[0] == 22 and int.from_bytes(hrr[5:11], "big") == seq


def test_hello_retry_numbers_do_not_grow_with_replies_to_others() -> None:
    """One gate answering many sources keeps no counter of its replies."""
    _, scfg = configs(server={"require_cookie": True, "cookie_secret": bytes(32)})
    pools = PoolSet()
    gate = HelloGate(scfg, pools)
    data = _hello()
    try:
        for i in range(100):
            for fast in (True, False):
                with mock.patch.object(
                    gate_module, "scan_client_hello", scan_client_hello if fast else lambda *a: None
                ):
                    result = gate.receive_untrusted(
                        _numbered(data, i % 3), (f"10.0.{i}.1", 4000), 100.0, require_cookie=True
                    )
                assert result.verdict is Verdict.REPLY and result.reply is not None
                (hrr,) = result.reply
                assert int.from_bytes(hrr.tobytes()[5:11], "big") == i % 3
                hrr.release()
    finally:
        gate.close()
    assert pools.in_use == 0


@pytest.mark.parametrize("name", list(ODD_HELLOS))
def test_odd_hellos_get_what_the_slow_path_gives(name: str) -> None:
    got, want, _ = _both(_extensions_hello(ODD_HELLOS[name]))
    assert got == want


def test_legacy_cookie_unknown_suites_and_session_id_match() -> None:
    exts = [VERSIONS, GROUPS, SHARE]
    for fields in (
        {"legacy_cookie": b"x"},
        {"cipher_suites": (0x9999,)},
        {"legacy_session_id": bytes(32)},
    ):
        ch = msgs.ClientHello(
            **{"random": bytes(32), "cipher_suites": (0x1301,), "extensions": tuple(exts), **fields}
        )
        buf = Buffer()
        msgs.push_client_hello(buf, ch)
        got, want, _ = _both(_record(buf.data))
        assert got == want


def test_truncated_extended_and_mutated_hellos_match() -> None:
    data = _hello()
    rng = random.Random(7)
    cases = [data[:n] for n in range(0, len(data), 7)]
    cases += [data + b"\x00", data + data, _record(_body(data) + b"\x00")]
    cases.append(_record(_body(data), message_seq=1))
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cases.append(bytes(mutated))
    for case in cases:
        got, want, _ = _both(case)
        assert got == want, case.hex()


def test_scan_rejects_what_is_not_a_lone_whole_first_hello() -> None:
    data = _hello()
    body = _body(data)
    assert scan_client_hello(data, len(body) - 1) is None  # longer than max_hello
    assert scan_client_hello(data[:-1], 8192) is None
    assert scan_client_hello(b"", 8192) is None
    assert scan_client_hello(data + data, 8192) is None  # two records
    frag = handshake_fragment(1, len(body), 0, 0, body[:100])
    part = b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag
    assert scan_client_hello(part, 8192) is None  # a fragment
    epoch1 = bytearray(data)
    epoch1[4] = 1
    assert scan_client_hello(bytes(epoch1), 8192) is None


@pytest.mark.parametrize("require_cookie", [False, True])
def test_the_accepted_hello_is_what_the_slow_path_hands_over(require_cookie: bool) -> None:
    """No cookie required (or nothing to retry with): the same datagram, message_seq and
    decoded ClientHello go to the connection."""
    # With a cookie required: no suite in common, nothing to retry with.
    data = _hello() if not require_cookie else _extensions_hello([VERSIONS], cipher_suites=(7,))
    _, scfg = configs(server={"cookie_secret": bytes(32)})
    pools = PoolSet()
    fast, slow = HelloGate(scfg, pools), HelloGate(scfg, pools)
    try:
        got = fast.receive_untrusted(data, ADDR, 1.0, require_cookie=require_cookie)
        with mock.patch.object(gate_module, "scan_client_hello", lambda *args: None):
            want = slow.receive_untrusted(data, ADDR, 1.0, require_cookie=require_cookie)
        assert got.verdict is want.verdict is Verdict.ACCEPT
        assert got.datagram == want.datagram == data
        assert got.first_message_seq == want.first_message_seq == 0
        assert got.client_hello == want.client_hello
        assert fast.counters == slow.counters
    finally:
        fast.close()
        slow.close()
