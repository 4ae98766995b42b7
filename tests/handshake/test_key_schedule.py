"""Key schedule and transcript against the RFC 8448 traces (prefix "tls13 ")."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from dtls13.alerts import LocalProtocolError
from dtls13.crypto.hkdf import TLS13_PREFIX
from dtls13.crypto.suites import SUITES, CipherSuite
from dtls13.handshake.constants import HandshakeType
from dtls13.handshake.extensions import binders_length
from dtls13.handshake.key_schedule import KeySchedule, Transcript, traffic_keys
from dtls13.handshake.messages import transcript_header

# The RFC 8448 traces, kept in the repository (tests/vectors/README.md says where the file
# comes from). A missing or altered file fails the tests that use it; nothing is skipped.
RFC8448 = Path(__file__).resolve().parents[1] / "vectors" / "rfc8448.txt"
RFC8448_SHA256 = "ed959a551ec317956850d0b3c2116833970bdff9b7624e3f8b18f09d59cf0b1f"
AES128 = SUITES[CipherSuite.TLS_AES_128_GCM_SHA256]


@dataclass
class Step:
    role: str
    title: str
    fields: dict[str, bytes] = field(default_factory=dict)


_PAGE = re.compile(r"^(Thomson\s.*\[Page \d+\]|Internet-Draft\s.*)$")
_STEP = re.compile(r"^ {3}\{(\w+)\}\s+(.*)$")
_FIELD = re.compile(r"^ {6}(\S.*?) \((\d+) octets\):\s*(.*)$")


@cache
def rfc8448_text() -> str:
    if not RFC8448.is_file():
        pytest.fail(f"test vectors missing: {RFC8448} (see tests/vectors/README.md)")
    return RFC8448.read_text(encoding="ascii")


@cache
def rfc8448_section(number: int) -> tuple[Step, ...]:
    """Steps of one RFC 8448 section: role, title and hex fields ("name (N octets): ...")."""
    text = rfc8448_text()
    start = re.search(rf"^{number}\.  ", text, re.M)
    end = re.search(rf"^{number + 1}\.  ", text, re.M)
    assert start and end
    lines = [ln for ln in text[start.start() : end.start()].splitlines() if not _PAGE.match(ln)]
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if m := _STEP.match(line):
            steps.append(Step(m.group(1), m.group(2)))
            continue
        m = _FIELD.match(line)
        if not m or not steps:
            continue
        name, count, rest = m.group(1), int(m.group(2)), m.group(3)
        tokens = rest.split() if count else []
        while len(tokens) < count:
            tokens += lines[i].split()
            i += 1
        assert len(tokens) == count, (name, tokens)
        steps[-1].fields[name] = bytes.fromhex("".join(tokens))
    return tuple(steps)


def trace(section: int, role: str, title: str, name: str, nth: int = 0) -> bytes:
    """Field `name` of the `nth` step of `role` whose title starts with `title`."""
    found = [
        s
        for s in rfc8448_section(section)
        if s.role == role and s.title.startswith(title) and name in s.fields
    ]
    return found[nth].fields[name]


def message(section: int, role: str, name: str, nth: int = 0) -> tuple[int, bytes]:
    """(type, body) of a handshake message from a 'construct a X handshake message' step."""
    data = trace(section, role, f"construct a {name}", name, nth)
    assert int.from_bytes(data[1:4], "big") == len(data) - 4
    return data[0], data[4:]


def test_vector_file_is_the_recorded_text() -> None:
    data = rfc8448_text().encode("ascii")
    assert hashlib.sha256(data).hexdigest() == RFC8448_SHA256


def test_trace_parser_reads_whole_fields() -> None:
    assert len(trace(3, "client", "construct a ClientHello", "ClientHello")) == 196
    assert trace(3, "server", 'extract secret "early"', "secret").hex().startswith("33ad0a1c")


# -- §3 simple 1-RTT -------------------------------------------------------------------------


def _simple_transcript() -> tuple[Transcript, dict[str, bytes]]:
    """The §3 transcript and its hashes at each point the schedule needs."""
    t = Transcript()
    hashes: dict[str, bytes] = {}
    t.add(*message(3, "client", "ClientHello"))
    t.add(*message(3, "server", "ServerHello"))
    t.select("sha256")
    hashes["hello"] = t.digest()
    for name in ("EncryptedExtensions", "Certificate", "CertificateVerify"):
        t.add(*message(3, "server", name))
    hashes["before_server_finished"] = t.digest()
    t.add(*message(3, "server", "Finished"))
    hashes["server_finished"] = t.digest()
    hashes["before_client_finished"] = t.digest()
    t.add(*message(3, "client", "Finished"))
    hashes["client_finished"] = t.digest()
    return t, hashes


def test_simple_1rtt_every_secret() -> None:
    _, h = _simple_transcript()
    assert h["hello"] == trace(3, "server", 'derive secret "tls13 c hs traffic"', "hash")
    assert h["server_finished"] == trace(3, "server", 'derive secret "tls13 c ap traffic"', "hash")
    assert h["client_finished"] == trace(3, "client", 'derive secret "tls13 res master"', "hash")

    ks = KeySchedule(AES128, prefix=TLS13_PREFIX)
    assert ks.early_secret == trace(3, "server", 'extract secret "early"', "secret")

    shared = trace(3, "server", 'extract secret "handshake"', "IKM")
    assert ks.handshake(shared) == trace(3, "server", 'extract secret "handshake"', "secret")
    c_hs = ks.client_handshake_traffic_secret(h["hello"])
    s_hs = ks.server_handshake_traffic_secret(h["hello"])
    assert c_hs == trace(3, "server", 'derive secret "tls13 c hs traffic"', "expanded")
    assert s_hs == trace(3, "server", 'derive secret "tls13 s hs traffic"', "expanded")

    keys = traffic_keys(AES128, s_hs, prefix=TLS13_PREFIX)
    step = "derive write traffic keys for handshake data"
    assert keys.key == trace(3, "server", step, "key expanded")
    assert keys.iv == trace(3, "server", step, "iv expanded")
    keys = traffic_keys(AES128, c_hs, prefix=TLS13_PREFIX)
    assert keys.key == trace(3, "server", "derive read traffic keys for handshake", "key expanded")

    # Server Finished over CH..CertificateVerify, with the server handshake secret.
    assert ks.finished_key(s_hs) == trace(3, "server", 'calculate finished "tls13', "expanded")
    server_verify = ks.verify_data(s_hs, h["before_server_finished"])
    assert server_verify == trace(3, "server", 'calculate finished "tls13', "finished")
    assert message(3, "server", "Finished")[1] == server_verify
    assert ks.check_verify_data(s_hs, h["before_server_finished"], server_verify)
    assert not ks.check_verify_data(s_hs, h["before_server_finished"], bytes(32))

    assert ks.master() == trace(3, "server", 'extract secret "master"', "secret")
    c_ap = ks.client_application_traffic_secret(h["server_finished"])
    s_ap = ks.server_application_traffic_secret(h["server_finished"])
    assert c_ap == trace(3, "server", 'derive secret "tls13 c ap traffic"', "expanded")
    assert s_ap == trace(3, "server", 'derive secret "tls13 s ap traffic"', "expanded")
    assert ks.exporter_master_secret(h["server_finished"]) == trace(
        3, "server", 'derive secret "tls13 exp master"', "expanded"
    )
    keys = traffic_keys(AES128, s_ap, prefix=TLS13_PREFIX)
    assert keys.key == trace(
        3, "server", "derive write traffic keys for application", "key expanded"
    )
    assert keys.iv == trace(3, "server", "derive write traffic keys for application", "iv expanded")
    keys = traffic_keys(AES128, c_ap, prefix=TLS13_PREFIX)
    assert keys.key == trace(
        3, "client", "derive write traffic keys for application", "key expanded"
    )

    client_verify = ks.verify_data(c_hs, h["before_client_finished"])
    assert client_verify == trace(3, "client", 'calculate finished "tls13', "finished")

    res = ks.resumption_master_secret(h["client_finished"])
    assert res == trace(3, "client", 'derive secret "tls13 res master"', "expanded")
    nonce = trace(3, "server", 'generate resumption secret "tls13 resumption"', "hash")
    psk = ks.resumption_psk(res, nonce)
    assert psk == trace(3, "server", 'generate resumption secret "tls13 resumption"', "expanded")


def test_next_application_traffic_secret_matches_hkdf_label() -> None:
    ks = KeySchedule("sha256", prefix=TLS13_PREFIX)
    secret = bytes(range(32))
    nxt = ks.next_application_traffic_secret(secret)
    assert nxt == ks.expand_label(secret, b"traffic upd", b"", 32)
    assert nxt != secret
    assert len(KeySchedule("sha384").next_application_traffic_secret(bytes(48))) == 48


def test_dtls_prefix_differs_and_sn_key() -> None:
    tls = KeySchedule(AES128, prefix=TLS13_PREFIX)
    dtls = KeySchedule(AES128)
    assert tls.early_secret == dtls.early_secret  # extract has no label
    assert tls.binder_key() != dtls.binder_key()
    assert dtls.binder_key() == dtls.expand_label(
        dtls.early_secret, b"res binder", hashlib.sha256().digest(), 32
    )
    keys = traffic_keys(AES128, bytes(32))
    assert len(keys.key) == 16 and len(keys.iv) == 12 and len(keys.sn_key) == 16
    assert keys.sn_key == dtls.expand_label(bytes(32), b"sn", b"", 16)


def test_stages_must_come_in_order() -> None:
    ks = KeySchedule("sha384")
    with pytest.raises(LocalProtocolError):
        ks.client_handshake_traffic_secret(bytes(48))
    with pytest.raises(LocalProtocolError):
        ks.master()
    ks.handshake(None)  # psk_ke: a zero IKM
    with pytest.raises(LocalProtocolError):
        ks.client_application_traffic_secret(bytes(48))
    assert len(ks.master()) == 48


# -- §4 resumed 0-RTT: binder and early secrets -----------------------------------------------


def test_resumed_0rtt_binder_and_early_secrets() -> None:
    psk = trace(3, "server", 'generate resumption secret "tls13 resumption"', "expanded")
    ks = KeySchedule(AES128, psk, prefix=TLS13_PREFIX)
    assert ks.early_secret == trace(4, "client", 'extract secret "early"', "secret")

    # The trace's "ClientHello" is the prefix the binder covers; the whole message is the
    # record payload: the binders vector (one 32-byte binder) follows the prefix.
    whole = trace(4, "client", "send handshake record", "payload")
    ch_type, ch_body = whole[0], whole[4:]
    partial = whole[: -binders_length([32])]
    assert partial == trace(4, "client", "calculate PSK binder", "ClientHello prefix")
    t = Transcript("sha256")
    binder_hash = t.digest_with(partial)
    assert binder_hash == trace(4, "client", "calculate PSK binder", "binder hash")
    binder_key = ks.binder_key(external=False)
    assert binder_key == trace(4, "client", "calculate PSK binder", "PRK")
    binder = ks.binder(binder_key, binder_hash)
    assert binder == trace(4, "client", "calculate PSK binder", "finished")
    assert whole.endswith(binder)
    assert t.digest() == hashlib.sha256().digest()  # digest_with kept nothing

    t.add(ch_type, ch_body)
    ch_hash = t.digest()
    assert ch_hash == trace(4, "client", 'derive secret "tls13 c e traffic"', "hash")
    assert ks.client_early_traffic_secret(ch_hash) == trace(
        4, "client", 'derive secret "tls13 c e traffic"', "expanded"
    )
    assert ks.early_exporter_master_secret(ch_hash) == trace(
        4, "client", 'derive secret "tls13 e exp master"', "expanded"
    )
    shared = trace(4, "server", 'extract secret "handshake"', "IKM")
    assert ks.handshake(shared) == trace(4, "server", 'extract secret "handshake"', "secret")
    t.add(*message(4, "server", "ServerHello"))
    assert ks.client_handshake_traffic_secret(t.digest()) == trace(
        4, "server", 'derive secret "tls13 c hs traffic"', "expanded"
    )


# -- §5 HelloRetryRequest: message_hash -----------------------------------------------------


def test_hello_retry_request_message_hash_rule() -> None:
    ch1 = message(5, "client", "ClientHello", 0)
    hrr = message(5, "server", "ServerHello", 0)
    ch2 = message(5, "client", "ClientHello", 1)
    sh = message(5, "server", "ServerHello", 1)

    t = Transcript()
    t.add(*ch1)
    t.select("sha256")
    t.restart_with_message_hash()
    t.add(*hrr)
    t.add(*ch2)
    t.add(*sh)
    expected = trace(5, "server", 'derive secret "tls13 c hs traffic"', "hash")
    assert t.digest() == expected

    # The same by hand: message_hash = 0xfe 00 00 Hash.length || Hash(CH1).
    ch1_hash = hashlib.sha256(transcript_header(*[ch1[0], len(ch1[1])]) + ch1[1]).digest()
    manual = hashlib.sha256(b"\xfe\x00\x00\x20" + ch1_hash)
    for msg_type, body in (hrr, ch2, sh):
        manual.update(transcript_header(msg_type, len(body)) + body)
    assert manual.digest() == expected

    # A stateless server rebuilds the same transcript from CH1's hash alone.
    s = Transcript.from_message_hash("sha256", ch1_hash)
    for msg in (hrr, ch2, sh):
        s.add(*msg)
    assert s.digest() == expected

    ks = KeySchedule(AES128, prefix=TLS13_PREFIX)
    ks.handshake(trace(5, "server", 'extract secret "handshake"', "IKM"))
    assert ks.server_handshake_traffic_secret(expected) == trace(
        5, "server", 'derive secret "tls13 s hs traffic"', "expanded"
    )


def test_transcript_select_and_copy() -> None:
    t = Transcript()
    t.add(HandshakeType.client_hello, b"abc")
    with pytest.raises(LocalProtocolError):
        t.digest()
    assert t.digest("sha384") == hashlib.sha384(b"\x01\x00\x00\x03abc").digest()
    c = t.copy()
    t.select("sha384")
    with pytest.raises(LocalProtocolError):
        t.digest("sha256")
    with pytest.raises(LocalProtocolError):
        t.select("sha256")
    t.add(HandshakeType.server_hello, b"")
    assert c.digest("sha256") == hashlib.sha256(b"\x01\x00\x00\x03abc").digest()
    assert t.digest() == hashlib.sha384(b"\x01\x00\x00\x03abc\x02\x00\x00\x00").digest()
    raw = Transcript("sha256")
    raw.add_raw(b"\x01\x00\x00\x03abc")
    assert raw.digest() == c.digest("sha256")
    with pytest.raises(LocalProtocolError):
        Transcript().restart_with_message_hash()


def test_transcript_hashes_each_message_behind_its_four_byte_header() -> None:
    # Lengths across every byte of the uint24, bytes and memoryview bodies, both hashes.
    t = Transcript()
    expected = b""
    for msg_type, n in ((1, 0), (2, 255), (11, 256), (15, 70000)):
        body = os.urandom(n)
        t.add(msg_type, memoryview(body) if n % 2 else body)
        expected += bytes((msg_type,)) + n.to_bytes(3, "big") + body
    assert t.digest("sha256") == hashlib.sha256(expected).digest()
    assert t.digest("sha384") == hashlib.sha384(expected).digest()
    assert t.digest("sha256") == hashlib.sha256(expected).digest()  # digest() keeps state
    with pytest.raises(ValueError):
        t.add(256, b"")
    with pytest.raises(ValueError):
        t.add(1, memoryview(bytearray(1 << 24)))


def test_exporter_shape() -> None:
    ks = KeySchedule("sha256")
    out = ks.exporter(bytes(32), b"EXPORTER-test", b"ctx", 20)
    assert len(out) == 20
    assert out != ks.exporter(bytes(32), b"EXPORTER-test", b"ctx2", 20)


def test_psk_schedule_can_be_zeroized_before_any_handshake_secret() -> None:
    """A handshake that fails after the PSK's early secret but before (EC)DHE (a bad
    ServerHello, a rejected resumption) forgets its secrets; that must not raise."""
    ks = KeySchedule("sha256", psk=b"k" * 32)
    ks.zeroize()
    assert ks.handshake_secret is None and ks.master_secret is None and ks.early_secret == b""


def test_psk_schedule_can_be_zeroized_before_its_master_secret() -> None:
    """A PSK handshake that fails between ServerHello and Finished forgets its secrets:
    the schedule of a PSK had no master_secret attribute, and zeroizing it raised out of
    the connection (a client that got a CertificateRequest in a PSK handshake crashed)."""
    ks = KeySchedule("sha256", psk=b"k" * 32)
    with pytest.raises(LocalProtocolError):
        ks.master()  # before the handshake secret: a clear error, not AttributeError
    ks.handshake(bytes(32))
    ks.zeroize()
    assert ks.handshake_secret is None and ks.master_secret is None
