"""The BoGo shim's command line (BoringSSL ssl/test/test_config.cc), parsed without importing
dtls13: a flag we do not implement ends the shim at once with exit code 89."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

UNIMPLEMENTED = 89

# DTLS wire versions as the runner passes them (-min-version / -max-version / -expect-version).
DTLS13 = 0xFEFC
DTLS12 = 0xFEFD

# Flags that take no value.
BOOL_FLAGS = frozenset(
    {
        "-server",
        "-dtls",
        "-ipv6",
        "-async",
        "-implicit-handshake",
        "-shim-writes-first",
        "-shim-shuts-down",
        "-check-close-notify",
        "-key-update",
        "-key-update-before-read",
        "-expect-session-miss",
        "-expect-no-session",
        "-no-ticket",
        "-expect-hrr",
        "-expect-no-hrr",
        "-verify-peer",
        "-require-any-client-certificate",
        "-decline-alpn",
        "-reject-alpn",
        "-select-empty-alpn",
        "-expect-no-offer-early-data",
        "-server-preference",
        "-use-export-context",
        "-no-key-shares",
        "-expect-no-server-name",
        "-expect-no-peer-cert",
        "-wait-for-debugger",
        "-handshake-twice",
        "-no-op-extra-handshake",
        "-verify-fail",
        "-expect-verify-result",
        "-use-custom-verify-callback",
        "-reverify-on-resume",
        "-use-old-client-cert-callback",
        "-expect-secure-renegotiation",
        "-expect-no-secure-renegotiation",
        "-no-tls1",
        "-no-tls11",
        "-no-tls12",
        # Session and 0-RTT expectations (bogo_shim.check_handshake says what each asks).
        "-expect-session-id",
        "-expect-no-session-id",
        "-expect-ticket-renewal",
        "-use-early-callback",
        "-enable-early-data",
        "-expect-accept-early-data",
        "-expect-reject-early-data",
        "-expect-ticket-supports-early-data",
        # Ticket keys from the application (ticket_hooks.py).
        "-use-ticket-callback",
        "-use-ticket-aead-callback",
        "-renew-ticket",
        "-skip-ticket",
        "-no-tls13",
        # OCSP stapling and SCTs (bogo_shim: the configs and check_handshake).
        "-enable-ocsp-stapling",
        "-enable-signed-cert-timestamps",
        "-use-ocsp-callback",
        "-set-ocsp-in-callback",
        "-decline-ocsp-callback",
        "-fail-ocsp-callback",
        # On the newest -new-*-credential (parse_credentials).
        "-must-match-issuer",
        # Encrypted Client Hello, a client's (bogo_shim.client_config, check_handshake).
        "-enable-ech-grease",
        "-expect-ech-accept",
        # ClientConfig.permute_extensions and grease, ServerConfig.acknowledge_server_name.
        "-permute-extensions",
        "-enable-grease",
        "-no-server-name-ack",
        "-expect-no-ech-retry-configs",
        "-expect-no-ech-name-override",
        "-reject-unusable-ech-config",
        # False Start (RFC 7918) exists only below (D)TLS 1.3: nothing to switch on here.
        "-false-start",
    }
)

# Flags that take one value (a repeated int-vector flag appends).
INT_FLAGS = frozenset(
    {
        "-port",
        "-shim-id",
        "-resume-count",
        "-min-version",
        "-max-version",
        "-expect-version",
        "-mtu",
        "-max-cert-list",
        "-expect-curve-id",
        "-expect-cipher",
        "-expect-peer-signature-algorithm",
        "-repeat-shim-initial-write",
        "-initial-timeout-duration-ms",
        "-read-size",
        "-export-keying-material",
        "-expect-selected-credential",
        # Which codepoint QUIC transport parameters use: nothing outside QUIC.
        "-quic-use-legacy-codepoint",
    }
)
INT_VECTOR_FLAGS = frozenset(
    {
        "-curves",
        "-key-shares",
        "-signing-prefs",
        "-verify-prefs",
        "-available-client-cert-types",
        "-ech-is-retry-config",
    }
)
# BoringSSL's credential list (test_config.cc): each -new-*-credential starts one; the
# CREDENTIAL_FLAGS after it belong to it (before any, to the default credential, which
# BoringSSL tries after the list). PSK and PAKE credentials are not offered here; a
# delegated one is the leaf's chain with the DC key and -delegated-credential (RFC 9345).
NEW_CREDENTIAL_FLAGS = {
    "-new-x509-credential": "x509",
    "-new-rpk-credential": "rpk",
    "-new-delegated-credential": "delegated",
}
CREDENTIAL_FLAGS = frozenset(
    {
        "-cert-file",
        "-key-file",
        "-signing-prefs",
        "-must-match-issuer",
        "-ocsp-response",
        "-signed-cert-timestamps",
        "-cert-properties",
        "-delegated-credential",
    }
)
STRING_FLAGS = frozenset(
    {
        "-cert-file",
        "-key-file",
        "-trust-cert",
        "-host-name",
        "-expect-server-name",
        "-advertise-alpn",
        "-expect-alpn",
        "-select-alpn",
        "-expect-advertised-alpn",
        "-shim-initial-write",
        "-expect-peer-cert-file",
        "-cipher",
        "-export-label",
        "-export-context",
        "-expect-early-data-reason",
        "-psk",
        "-psk-identity",
        "-srtp-profiles",
        # bogo_shim: the library's message_callback, its trace compared at the end.
        "-expect-msg-callback",
        "-expect-ech-name-override",
        # A client's NPN protocol: BoringSSL offers NPN neither in DTLS nor in (D)TLS 1.3
        # (extensions.cc), so it changes nothing here.
        "-select-next-proto",
    }
)
BASE64_FLAGS = frozenset(
    {
        "-ticket-key",
        "-ocsp-response",
        "-signed-cert-timestamps",
        "-expect-ocsp-response",
        "-expect-signed-cert-timestamps",
        # Trust anchor IDs (bogo_shim: cert_properties, client_config).
        "-cert-properties",
        "-requested-trust-anchors",
        "-delegated-credential",
        "-ech-config-list",
        "-expect-ech-retry-configs",
    }
)

# Flags that take a base64 value and may repeat (each appends).
BASE64_VECTOR_FLAGS = frozenset({"-ech-server-config", "-ech-server-key"})

KNOWN_FLAGS = (
    BOOL_FLAGS | INT_FLAGS | INT_VECTOR_FLAGS | STRING_FLAGS | BASE64_FLAGS | BASE64_VECTOR_FLAGS
)

# Per-connection prefixes: -on-initial-X applies to the first connection only, -on-resume-X
# to the resumptions (-on-retry-, after a 0-RTT rejection, does not arise: no 0-RTT here).
PREFIXES = ("-on-initial", "-on-resume")


class Unimplemented(Exception):
    """A flag (or flag value) the shim does not implement: exit 89."""


class NotDTLS13(Unimplemented):
    """A configuration for DTLS 1.2 or earlier, or for TLS: not a DTLS 1.3 test."""


@dataclass
class Flags:
    """One connection's view of the flags (the common ones plus its -on-* ones)."""

    values: dict[str, object] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: object = None) -> object:
        return self.values.get(name, default)

    def int(self, name: str, default: int | None = None) -> int | None:
        v = self.values.get(name, default)
        return None if v is None else int(v)  # type: ignore[call-overload]

    def str(self, name: str, default: str | None = None) -> str | None:
        v = self.values.get(name, default)
        return None if v is None else str(v)

    def ints(self, name: str) -> list[int]:
        return list(self.values.get(name, ()))  # type: ignore[call-overload]

    def credentials(self) -> list[Flags]:
        """The -new-*-credential credentials, in order (their type under "type")."""
        return list(self.values.get("credentials", ()))  # type: ignore[call-overload]


def _take(values: dict[str, object], name: str, argv: list[str], i: int) -> int:
    """Store flag `name` (argv[i] was its name); return the index of the next flag."""
    if name in BOOL_FLAGS:
        values[name] = True
        return i + 1
    if i + 1 >= len(argv):
        raise Unimplemented(f"flag {name} needs a value")
    raw = argv[i + 1]
    if name in INT_FLAGS:
        values[name] = int(raw)
    elif name in INT_VECTOR_FLAGS:
        values.setdefault(name, [])
        values[name].append(int(raw))  # type: ignore[attr-defined]
    elif name in STRING_FLAGS:
        values[name] = raw
    elif name in BASE64_FLAGS:
        values[name] = base64.b64decode(raw)
    elif name in BASE64_VECTOR_FLAGS:
        values.setdefault(name, [])
        values[name].append(base64.b64decode(raw))  # type: ignore[attr-defined]
    else:
        raise Unimplemented(f"unimplemented flag: {name}")
    return i + 2


def parse(argv: list[str]) -> tuple[Flags, Flags, Flags]:
    """(common, initial, resume): the flags of the first connection are common + initial,
    those of every resumption common + resume."""
    common: dict[str, object] = {}
    initial: dict[str, object] = {}
    resume: dict[str, object] = {}
    credentials: list[Flags] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            raise Unimplemented(f"unexpected argument {arg!r}")
        if arg in NEW_CREDENTIAL_FLAGS:
            credentials.append(Flags({"type": NEW_CREDENTIAL_FLAGS[arg]}))
            i += 1
            continue
        if credentials and arg in CREDENTIAL_FLAGS:
            i = _take(credentials[-1].values, arg, argv, i)
            continue
        target, name = common, arg
        for prefix, where in (("-on-initial", initial), ("-on-resume", resume)):
            if arg.startswith(prefix + "-"):
                target, name = where, arg[len(prefix) :]
        if name not in KNOWN_FLAGS:
            raise Unimplemented(f"unimplemented flag: {arg}")
        i = _take(target, name, argv, i)
    if credentials:
        common["credentials"] = credentials
    first = Flags({**common, **initial})
    again = Flags({**common, **resume})
    return Flags(common), first, again


def prescan_versions(argv: list[str]) -> None:
    """Before any other flag: is this a DTLS 1.3 configuration at all? (So a DTLS 1.2 test
    with flags we lack is counted as DTLS 1.2, not as an unimplemented flag.)"""
    if "-dtls" not in argv:
        raise NotDTLS13("only DTLS is implemented (no -dtls)")
    for i, arg in enumerate(argv[:-1]):
        if arg.endswith("-max-version") and argv[i + 1].isdigit():
            v = int(argv[i + 1])
            if v != 0 and v > DTLS13:
                raise NotDTLS13(f"only DTLS 1.3 is implemented ({arg} {v:#x})")
        if arg.endswith("-expect-version") and argv[i + 1].isdigit() and int(argv[i + 1]) != DTLS13:
            raise NotDTLS13(f"only DTLS 1.3 is implemented ({arg} {argv[i + 1]})")


def check_supported(flags: Flags, resumption: bool = False) -> None:
    """Configurations this library deliberately does not offer (DTLS 1.2, TLS): exit 89.
    `resumption`: these are the flags of a resumption (-on-resume-*), not the first
    connection's."""
    if not flags.has("-dtls"):
        raise NotDTLS13("only DTLS is implemented (no -dtls)")
    max_version = flags.int("-max-version")
    # DTLS versions count down: 0xfefc (1.3) < 0xfefd (1.2) < 0xfeff (1.0).
    if max_version is not None and max_version != 0 and max_version > DTLS13:
        raise NotDTLS13(f"only DTLS 1.3 is implemented (-max-version {max_version:#x})")
    min_version = flags.int("-min-version")
    if min_version is not None and min_version != 0 and min_version < DTLS13:
        raise Unimplemented(f"unknown -min-version {min_version:#x}")
    expect = flags.int("-expect-version")
    if expect is not None and expect != DTLS13:
        raise NotDTLS13(f"only DTLS 1.3 is implemented (-expect-version {expect:#x})")
    if flags.has("-no-tls13"):
        raise NotDTLS13("-no-tls13: (D)TLS 1.3 switched off")
    if flags.has("-psk"):
        # BoringSSL's PSK callbacks serve the TLS 1.2 PSK cipher suites only (TLS 1.3
        # external PSKs go through its credentials, -new-psk-credential).
        raise NotDTLS13("-psk: the TLS 1.2 PSK cipher suites")
    for name in ("-expect-secure-renegotiation", "-expect-no-secure-renegotiation"):
        if flags.has(name):
            raise NotDTLS13(f"{name}: renegotiation is TLS 1.2 only")
    if flags.has("-handshake-twice"):
        raise Unimplemented("-handshake-twice: no second handshake call in a sans-IO core")
    read_size = flags.int("-read-size")
    if read_size is not None:
        raise Unimplemented("-read-size: records are delivered whole, never truncated")
    if flags.has("-server") and flags.has("-enable-early-data"):
        # On a client it is no switch here: this client offers 0-RTT whenever a ticket
        # allows it, and the shim writes no early data unless told to.
        raise Unimplemented(
            "-enable-early-data on a server: BoringSSL never accepts 0-RTT over DTLS and the "
            "runner's expectations follow that; this library would accept it"
        )
    mtu = flags.int("-mtu")
    if mtu is not None and mtu < 256:
        raise Unimplemented(f"-mtu {mtu}: this library's smallest MTU is 256 bytes")
    check_verify_flags(flags, resumption)


def check_verify_flags(flags: Flags, resumption: bool) -> None:
    """BoringSSL's verify callbacks (test_config.cc: CertVerifyCallback, CustomVerifyCallback)
    accept every chain unless -verify-fail; the shim installs one as verify_callback
    (bogo_shim.verify_callback): fatal with -verify-peer (SSL_VERIFY_PEER) or on a server,
    recorded and the handshake going on otherwise (a client's soft fail). -reverify-on-resume
    maps onto reverify_on_resume; BoringSSL re-verifies only through the custom callback
    (ssl_reverify_peer_cert fails every resumption without one), which the runner always
    sets with it."""
    if (
        flags.has("-reverify-on-resume")
        and not flags.has("-server")
        and not flags.has("-use-custom-verify-callback")
    ):
        raise Unimplemented(
            "-reverify-on-resume without -use-custom-verify-callback: BoringSSL fails "
            "every resumption's verification there"
        )
