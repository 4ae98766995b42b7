"""The TLS 1.3 key schedule (RFC 8446 §7.1) with DTLS 1.3's "dtls13" labels (RFC 9147 §5.9),
and the handshake transcript (RFC 8446 §4.4.1, RFC 9147 §5.2).

The label prefix is a parameter so the RFC 8448 traces ("tls13 ") can check this code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dtls13.alerts import LocalProtocolError
from dtls13.crypto.hkdf import (
    DTLS13_PREFIX,
    derive_secret,
    derive_secret_head,
    digest_size,
    expand_label_info,
    hkdf_expand_label,
    hkdf_extract,
    hmac_digest,
)
from dtls13.crypto.suites import SuiteParams
from dtls13.crypto.zeroize import zeroize

from .._fast import hash_copy_digest, transcript_add
from .constants import HandshakeType

if TYPE_CHECKING:
    from hashlib import _Hash


def hash_length(hash_name: str) -> int:
    return digest_size(hash_name)


_EMPTY_HASHES: dict[str, bytes] = {}

# The labels a handshake derives from its own secrets (RFC 8446 §7.1), over a transcript
# hash of the suite's length: the HMAC input up to that hash is a constant per label.
_FIXED_LABELS = (
    b"derived",
    b"c e traffic",
    b"e exp master",
    b"c hs traffic",
    b"s hs traffic",
    b"c ap traffic",
    b"s ap traffic",
    b"exp master",
    b"res master",
)


def empty_hash(hash_name: str) -> bytes:
    """Transcript-Hash("") for the "derived" steps."""
    h = _EMPTY_HASHES.get(hash_name)
    if h is None:
        h = _EMPTY_HASHES[hash_name] = hashlib.new(hash_name).digest()
    return h


class _Constants:
    """What every key schedule of one hash and label prefix shares: made once."""

    __slots__ = ("derived_info", "early", "early_derived", "finished_info", "hash_len", "heads")

    def __init__(self, hash_name: str, prefix: bytes) -> None:
        self.hash_len = size = digest_size(hash_name)
        # Derive-Secret's HkdfLabel up to its context, per label.
        self.heads = {label: derive_secret_head(label, size, prefix) for label in _FIXED_LABELS}
        # The whole HMAC input of Derive-Secret(., "derived", "") and of "finished".
        self.derived_info = self.heads[b"derived"] + empty_hash(hash_name) + b"\x01"
        self.finished_info = expand_label_info(b"finished", size, prefix)
        # Without a PSK the early secret and its "derived" successor are constants too.
        zeros = bytes(size)
        self.early = hkdf_extract(hash_name, zeros, zeros)
        self.early_derived = derive_secret(
            hash_name, self.early, b"derived", empty_hash(hash_name), prefix
        )


_CONSTANTS: dict[tuple[str, bytes], _Constants] = {}


def _constants(hash_name: str, prefix: bytes) -> _Constants:
    made = _CONSTANTS[(hash_name, prefix)] = _Constants(hash_name, prefix)
    return made


class KeySchedule:
    """Early, handshake and master secrets and everything derived from them.

    Usage: ``ks = KeySchedule(params)`` (early secret from no PSK, or ``psk=...``);
    ``ks.handshake(shared_secret)`` once the (EC)DHE/KEM secret is known; ``ks.master()``
    after the server Finished is in the transcript. Each ``*_secret`` method takes the
    transcript hash it is defined over.
    """

    __slots__ = (
        "_consts",
        "_early_derived",
        "early_secret",
        "handshake_secret",
        "hash_len",
        "hash_name",
        "master_secret",
        "prefix",
    )

    def __init__(
        self,
        suite: SuiteParams | str,
        psk: bytes | None = None,
        *,
        prefix: bytes = DTLS13_PREFIX,
    ) -> None:
        hash_name = self.hash_name = suite if isinstance(suite, str) else suite.hash_name
        consts = _CONSTANTS.get((hash_name, prefix)) or _constants(hash_name, prefix)
        self._consts = consts
        self.hash_len = consts.hash_len
        self.prefix = prefix
        # RFC 8446 §7.1: "If a given secret is not available, then the 0-value consisting
        # of a string of Hash.length bytes set to zeros is used."
        self._early_derived: bytes | None = None
        # Set before the PSK branch returns: zeroize() reads them whenever a handshake ends.
        self.handshake_secret: bytes | None = None
        self.master_secret: bytes | None = None
        if psk:
            self.early_secret = hkdf_extract(hash_name, bytes(self.hash_len), psk)
            return
        self.early_secret, self._early_derived = consts.early, consts.early_derived

    # -- helpers --------------------------------------------------------------------------

    def derive(self, secret: bytes, label: bytes, transcript_hash: bytes) -> bytes:
        """Derive-Secret(secret, label, Messages) given Transcript-Hash(Messages)."""
        return derive_secret(self.hash_name, secret, label, transcript_hash, self.prefix)

    def expand_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        return hkdf_expand_label(self.hash_name, secret, label, context, length, self.prefix)

    def _derive_own(
        self, secret: bytes | None, label: bytes, transcript_hash: bytes, name: str
    ) -> bytes:
        """`derive` for a label of _FIXED_LABELS from this schedule's `name` secret (None:
        not derived yet): one HMAC with the label's HkdfLabel head made once per suite."""
        if secret is None:
            raise LocalProtocolError(f"{name} secret not derived yet")
        if len(transcript_hash) != self.hash_len:  # not this suite's transcript hash
            return self.derive(secret, label, transcript_hash)
        head = self._consts.heads[label]
        return hmac_digest(secret, head + transcript_hash + b"\x01", self.hash_name)

    def _derived(self, secret: bytes) -> bytes:
        """Derive-Secret(secret, "derived", "")."""
        return hmac_digest(secret, self._consts.derived_info, self.hash_name)

    # -- early secret -----------------------------------------------------------------------

    def binder_key(self, external: bool = False, *, imported: bool = False) -> bytes:
        """``ext binder`` for external PSKs, ``res binder`` for resumption (§7.1), ``imp
        binder`` for imported PSKs (RFC 9258 §5.2)."""
        label = b"imp binder" if imported else b"ext binder" if external else b"res binder"
        return self.derive(self.early_secret, label, empty_hash(self.hash_name))

    def client_early_traffic_secret(self, client_hello_hash: bytes) -> bytes:
        return self._derive_own(self.early_secret, b"c e traffic", client_hello_hash, "early")

    def early_exporter_master_secret(self, client_hello_hash: bytes) -> bytes:
        return self._derive_own(self.early_secret, b"e exp master", client_hello_hash, "early")

    def binder(self, binder_key: bytes, partial_client_hello_hash: bytes) -> bytes:
        """PSK binder (§4.2.11.2): a Finished MAC over the truncated ClientHello."""
        return self.verify_data(binder_key, partial_client_hello_hash)

    # -- handshake secret ----------------------------------------------------------------------

    def handshake(self, shared_secret: bytes | None) -> bytes:
        """Extract the handshake secret from the (EC)DHE/KEM secret (None for psk_ke)."""
        ikm = shared_secret if shared_secret is not None else bytes(self.hash_len)
        salt = self._early_derived
        # HKDF-Extract(salt, IKM) is HMAC(salt, IKM): the salt is never empty here.
        if salt is None:
            salt = self._derived(self.early_secret)
            self.handshake_secret = hmac_digest(salt, ikm, self.hash_name)
            zeroize(salt)  # derived from the PSK (without one it is a shared constant)
        else:
            self.handshake_secret = hmac_digest(salt, ikm, self.hash_name)
        return self.handshake_secret

    def client_handshake_traffic_secret(self, hello_hash: bytes) -> bytes:
        """``c hs traffic`` over ClientHello...ServerHello."""
        return self._derive_own(self.handshake_secret, b"c hs traffic", hello_hash, "handshake")

    def server_handshake_traffic_secret(self, hello_hash: bytes) -> bytes:
        """``s hs traffic`` over ClientHello...ServerHello."""
        return self._derive_own(self.handshake_secret, b"s hs traffic", hello_hash, "handshake")

    # -- master secret ---------------------------------------------------------------------------

    def master(self) -> bytes:
        handshake = self.handshake_secret
        if handshake is None:
            raise LocalProtocolError("handshake secret not derived yet")
        salt = hmac_digest(handshake, self._consts.derived_info, self.hash_name)
        self.master_secret = hmac_digest(salt, bytes(self.hash_len), self.hash_name)  # Extract
        zeroize(salt)
        return self.master_secret

    def zeroize(self) -> None:
        """Forget the early, handshake and master secrets, zeroing those no one else holds
        (the early secret without a PSK is a shared constant and stays)."""
        early, self.early_secret = self.early_secret, b""
        if early is not self._consts.early:  # the shared constant without a PSK stays
            zeroize(early)
        handshake, self.handshake_secret = self.handshake_secret, None
        zeroize(handshake)
        master, self.master_secret = self.master_secret, None
        zeroize(master)

    def client_application_traffic_secret(self, server_finished_hash: bytes) -> bytes:
        """``c ap traffic`` over ClientHello...server Finished."""
        return self._derive_own(self.master_secret, b"c ap traffic", server_finished_hash, "master")

    def server_application_traffic_secret(self, server_finished_hash: bytes) -> bytes:
        """``s ap traffic`` over ClientHello...server Finished."""
        return self._derive_own(self.master_secret, b"s ap traffic", server_finished_hash, "master")

    def exporter_master_secret(self, server_finished_hash: bytes) -> bytes:
        return self._derive_own(self.master_secret, b"exp master", server_finished_hash, "master")

    def resumption_master_secret(self, client_finished_hash: bytes) -> bytes:
        """``res master`` over ClientHello...client Finished."""
        return self._derive_own(self.master_secret, b"res master", client_finished_hash, "master")

    # -- Finished, KeyUpdate, tickets --------------------------------------------------------------

    def finished_key(self, base_key: bytes) -> bytes:
        """§4.4.4: HKDF-Expand-Label(BaseKey, "finished", "", Hash.length)."""
        return hmac_digest(base_key, self._consts.finished_info, self.hash_name)

    def verify_data(self, base_key: bytes, transcript_hash: bytes) -> bytes:
        """§4.4.4: HMAC(finished_key, Transcript-Hash(...))."""
        # finished_key inlined (a Python call less per Finished).
        key = hmac_digest(base_key, self._consts.finished_info, self.hash_name)
        return hmac_digest(key, transcript_hash, self.hash_name)

    def check_verify_data(self, base_key: bytes, transcript_hash: bytes, received: bytes) -> bool:
        """Constant-time comparison of a received Finished (or binder) value."""
        return hmac.compare_digest(self.verify_data(base_key, transcript_hash), received)

    def next_application_traffic_secret(self, secret: bytes) -> bytes:
        """§7.2: application_traffic_secret_N+1 ("traffic upd")."""
        return self.expand_label(secret, b"traffic upd", b"", self.hash_len)

    def resumption_psk(self, resumption_master_secret: bytes, ticket_nonce: bytes) -> bytes:
        """§4.6.1: the PSK a NewSessionTicket with `ticket_nonce` stands for."""
        return hkdf_expand_label(
            self.hash_name,
            resumption_master_secret,
            b"resumption",
            ticket_nonce,
            self.hash_len,
            self.prefix,
        )

    def exporter(
        self, exporter_master_secret: bytes, label: bytes, context: bytes, length: int
    ) -> bytes:
        """§7.5: TLS-Exporter(label, context_value, key_length)."""
        secret = self.derive(exporter_master_secret, label, empty_hash(self.hash_name))
        return self.expand_label(
            secret, b"exporter", hashlib.new(self.hash_name, context).digest(), length
        )


def next_application_traffic_secret(hash_name: str, secret: bytes) -> bytes:
    """§7.2: application_traffic_secret_N+1 ("traffic upd"): the suite's hash is all it
    takes, so a connection keeps no key schedule for KeyUpdate."""
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", digest_size(hash_name))


def resumption_psk(hash_name: str, resumption_master_secret: bytes, ticket_nonce: bytes) -> bytes:
    """§4.6.1: the PSK a NewSessionTicket with `ticket_nonce` stands for."""
    return hkdf_expand_label(
        hash_name, resumption_master_secret, b"resumption", ticket_nonce, digest_size(hash_name)
    )


@dataclass(frozen=True, slots=True)
class TrafficKeys:
    """Record protection keys of one traffic secret (§7.3; ``sn`` per RFC 9147 §4.2.3)."""

    key: bytes
    iv: bytes
    sn_key: bytes


def traffic_keys(
    params: SuiteParams, secret: bytes, *, prefix: bytes = DTLS13_PREFIX
) -> TrafficKeys:
    """``key``, ``iv`` and the record-number encryption key ``sn`` from a traffic secret."""
    h = params.hash_name
    return TrafficKeys(
        key=hkdf_expand_label(h, secret, b"key", b"", params.key_length, prefix),
        iv=hkdf_expand_label(h, secret, b"iv", b"", params.iv_length, prefix),
        sn_key=hkdf_expand_label(h, secret, b"sn", b"", params.key_length, prefix),
    )


# The hashes any TLS 1.3 suite uses: a transcript started before the suite is known runs
# them all until ``select``.
TRANSCRIPT_HASHES: tuple[str, ...] = ("sha256", "sha384")
# Empty hash objects to copy: a copy costs a fraction of hashlib.new's name lookup.
_EMPTY_STATES: dict[str, _Hash] = {name: hashlib.new(name) for name in TRANSCRIPT_HASHES}


def _new_hash(name: str) -> _Hash:
    empty = _EMPTY_STATES.get(name)
    return empty.copy() if empty is not None else hashlib.new(name)


class Transcript:
    """Running Transcript-Hash over TLS-style handshake messages (RFC 9147 §5.2).

    Messages enter as (type, body) and are hashed behind the 4-byte TLS header, never the
    12-byte DTLS one. Until the suite is known (``select``) every candidate hash runs.
    """

    __slots__ = ("_hashes", "hash_name")

    def __init__(
        self, hash_name: str | None = None, candidates: Iterable[str] = TRANSCRIPT_HASHES
    ) -> None:
        names = (hash_name,) if hash_name is not None else candidates
        hashes: dict[str, _Hash] = {}
        for name in names:  # _new_hash inlined, no comprehension: one call per hash
            hashes[name] = (
                _EMPTY_STATES[name].copy() if name in _EMPTY_STATES else hashlib.new(name)
            )
        self._hashes = hashes
        self.hash_name = hash_name

    @classmethod
    def from_message_hash(cls, hash_name: str, client_hello1_hash: bytes) -> Transcript:
        """A transcript that starts with message_hash(ClientHello1) (§4.4.1): the stateless
        server's view when a second ClientHello brings back the cookie."""
        transcript = cls(hash_name)
        transcript.add(HandshakeType.message_hash, client_hello1_hash)
        return transcript

    def select(self, hash_name: str) -> None:
        """Keep only `hash_name` (the negotiated suite's hash)."""
        if hash_name not in self._hashes:
            raise LocalProtocolError(f"transcript does not run {hash_name}")
        self._hashes = {hash_name: self._hashes[hash_name]}
        self.hash_name = hash_name

    def add(self, msg_type: int, body: bytes | memoryview) -> None:
        """Hash one whole message given its type and body."""
        transcript_add(self._hashes, msg_type, body)  # transcript_header(...) + body, each

    def add_raw(self, data: bytes | memoryview) -> None:
        """Hash bytes already in TLS form (header + body), e.g. a truncated ClientHello."""
        for h in self._hashes.values():
            h.update(data)

    def digest(self, hash_name: str | None = None) -> bytes:
        """Transcript-Hash of everything so far."""
        name = hash_name if hash_name is not None else self.hash_name
        hashes = self._hashes
        if name is not None and name in hashes:  # no .get(): a call less per digest
            return hash_copy_digest(hashes[name])
        return hash_copy_digest(self._running(hash_name))  # which raises, saying why

    def digest_with(self, data: bytes | memoryview, hash_name: str | None = None) -> bytes:
        """Transcript-Hash of everything so far followed by `data` (which is not kept):
        for PSK binders over a partial ClientHello."""
        h = self._running(hash_name).copy()
        h.update(data)
        return h.digest()

    def restart_with_message_hash(self) -> None:
        """Replace ClientHello1 by message_hash (RFC 8446 §4.4.1), on HelloRetryRequest.

        Call after ``select`` and after ClientHello1 was added, before adding the HRR.
        """
        name = self._selected()
        ch1_hash = self._hashes[name].digest()
        self._hashes = {name: _new_hash(name)}
        self.add(HandshakeType.message_hash, ch1_hash)

    def copy(self) -> Transcript:
        other = Transcript.__new__(Transcript)
        other._hashes = {name: h.copy() for name, h in self._hashes.items()}
        other.hash_name = self.hash_name
        return other

    def _selected(self) -> str:
        if self.hash_name is None:
            raise LocalProtocolError("transcript hash not selected yet")
        return self.hash_name

    def _running(self, hash_name: str | None) -> _Hash:
        name = hash_name if hash_name is not None else self._selected()
        try:
            return self._hashes[name]
        except KeyError:
            raise LocalProtocolError(f"transcript does not run {name}") from None
