"""The server's per-handshake lookups answer as the plain definitions do: a ClientHello's
extension index as a scan of its extensions, the negotiated values as Enum members."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from dtls13.crypto.suites import CipherSuite
from dtls13.handshake import messages as msgs
from dtls13.handshake.constants import NamedGroup, SignatureScheme
from dtls13.handshake.extensions import Extension, find_extension
from dtls13.handshake.server import ServerHandshake
from tests.support.dtls_pair import make_pair


def _hello(*extensions: Extension) -> msgs.ClientHello:
    return msgs.ClientHello(random=bytes(32), cipher_suites=(0x1301,), extensions=extensions)


def test_extension_lookup_answers_as_a_scan_of_the_extensions() -> None:
    # Built locally, a ClientHello may repeat a type: the first one wins, as in a scan.
    exts = (Extension(10, b"a"), Extension(43, b"b"), Extension(10, b"c"), Extension(0, b""))
    hello = _hello(*exts)
    for ext_type in (10, 43, 0, 41, 65535):
        assert hello.extension(ext_type) == find_extension(exts, ext_type)
    assert hello.extension(10) == b"a" and hello.extension(0) == b""
    assert hello.extension(41) is None


def test_a_decoded_client_hello_finds_every_extension_it_carries() -> None:
    exts = tuple(Extension(t, bytes([t % 256]) * (t % 5)) for t in (0, 10, 13, 43, 51, 41))
    _, body = msgs.push_message(_hello(*exts))
    decoded = msgs.pull_message(msgs.HandshakeType.client_hello, body)
    assert isinstance(decoded, msgs.ClientHello)
    for ext in exts:
        assert decoded.extension(ext.type) == ext.data
    assert decoded.extension(44) is None


def test_the_index_leaves_equality_hash_repr_and_replace_alone() -> None:
    exts = (Extension(10, b"a"), Extension(43, b"b"))
    used, fresh = _hello(*exts), _hello(*exts)
    assert used.extension(43) == b"b"  # builds the index of `used` only
    assert used == fresh and hash(used) == hash(fresh) and repr(used) == repr(fresh)
    assert "_index" not in repr(used)
    # The wire fields and nothing else (code that rebuilds a message from its fields).
    assert list(type(used).__dataclass_fields__) == [
        "random",
        "cipher_suites",
        "extensions",
        "legacy_session_id",
        "legacy_cookie",
        "legacy_compression_methods",
        "legacy_version",
    ]
    # replace() makes a message with its own extensions and a new index.
    changed = dataclasses.replace(used, extensions=(Extension(43, b"z"),))
    assert changed.extension(43) == b"z" and changed.extension(10) is None
    assert used.extension(43) == b"b"
    unpickled = pickle.loads(pickle.dumps(used))
    assert unpickled == used and unpickled.extension(43) == b"b"
    with pytest.raises(dataclasses.FrozenInstanceError):
        used.extensions = ()  # type: ignore[misc]


def test_the_server_records_the_negotiated_values_as_enum_members() -> None:
    pair = make_pair(cache=True)
    assert pair.handshake()
    hs = pair.server._hs
    assert isinstance(hs, ServerHandshake)
    assert type(hs.suite) is CipherSuite and hs.suite == pair.client._hs.suite
    assert type(hs.group) is NamedGroup and hs.group == pair.client._hs.group
    assert type(hs.scheme) is SignatureScheme
    assert hs.scheme == SignatureScheme.ecdsa_secp256r1_sha256
    pair.close()
