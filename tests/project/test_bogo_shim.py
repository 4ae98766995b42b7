"""The BoGo shim (tests/bogo) driven through its framing by a tiny in-repo runner, so it
keeps working without a BoringSSL checkout: handshakes both ways, the echo, a
retransmission driven by the runner's clock, and exit 89 for what is not implemented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bogo"))

from fake_runner import PEER, FakeRunner

from dtls13.config import ClientConfig, ServerConfig
from dtls13.connection import Connection
from dtls13.events import ConnectionTerminated, DataReceived, HandshakeCompleted
from dtls13.memory import PoolSet
from tests.support.dtls_pair import pki

NOW = 5.0


def events(conn: Connection) -> list[object]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def write_leaf(tmp_path: Path) -> tuple[str, str]:
    leaf = pki("ec256").leaf("ec256")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(leaf.chain_pem)
    key.write_bytes(leaf.key_pem)
    return str(cert), str(key)


def echo_and_close(runner: FakeRunner, conn: Connection, seen: list[object]) -> None:
    """Send a record; the shim answers with each byte XORed with 0xff; then close."""
    message = bytes(range(32))
    conn.send(message)
    got: list[bytes] = []

    def echoed() -> bool:
        for ev in [*seen, *events(conn)]:
            if isinstance(ev, DataReceived):
                got.append(ev.data)
        seen.clear()
        return bool(got)

    runner.pump(conn, NOW, echoed)
    assert got == [bytes(b ^ 0xFF for b in message)]
    conn.close()
    runner.flush(conn, NOW)


def test_shim_server_handshakes_and_echoes(tmp_path: Path) -> None:
    cert, key = write_leaf(tmp_path)
    # -expect-no-hrr and -expect-no-server-name: the shim reads the handshake's results.
    runner = FakeRunner(
        [
            *["-server", "-dtls", "-cert-file", cert, "-key-file", key],
            *["-expect-no-hrr", "-expect-no-server-name"],
        ]
    )
    pools = PoolSet()
    client = Connection(ClientConfig(verify=False), pools=pools)
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted) for e in seen)

        runner.pump(client, NOW, done)
        echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        code, err = runner.finish()
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("flags", "code", "error"),
    [
        # Tickets only, no stateful cache (-expect-no-session-id holds); the 0-RTT checks
        # bssl_shim skips over DTLS and the early callback that only moves where BoringSSL
        # installs its credential.
        (
            [
                *["-expect-no-session-id", "-expect-ticket-renewal", "-use-early-callback"],
                *["-expect-early-data-reason", "disabled", "-expect-reject-early-data"],
            ],
            0,
            "",
        ),
        (["-expect-session-id"], 1, "session was not cached on the server.\n"),
    ],
)
def test_shim_server_checks_the_session_expectations(
    tmp_path: Path, flags: list[str], code: int, error: str
) -> None:
    cert, key = write_leaf(tmp_path)
    runner = FakeRunner(["-server", "-dtls", "-cert-file", cert, "-key-file", key, *flags])
    pools = PoolSet()
    client = Connection(ClientConfig(verify=False), pools=pools)
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted | ConnectionTerminated) for e in seen)

        runner.pump(client, NOW, done)
        if code == 0:
            echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        got = runner.finish()
    assert got == (code, error)


@pytest.mark.parametrize(
    ("flags", "stapled"),
    [
        ([], b"\x01\x02\x03\x04"),
        (["-use-ocsp-callback"], b"\x01\x02\x03\x04"),
        (["-use-ocsp-callback", "-set-ocsp-in-callback"], b"\x01\x02\x03\x04"),
        (["-use-ocsp-callback", "-decline-ocsp-callback"], None),
    ],
)
def test_shim_server_staples_its_ocsp_response_and_timestamps(
    tmp_path: Path, flags: list[str], stapled: bytes | None
) -> None:
    import base64

    cert, key = write_leaf(tmp_path)
    b64 = base64.b64encode
    runner = FakeRunner(
        [
            *["-server", "-dtls", "-cert-file", cert, "-key-file", key],
            *["-ocsp-response", b64(b"\x01\x02\x03\x04").decode()],
            *["-signed-cert-timestamps", b64(b"\x00\x06\x00\x04\x05\x06\x07\x08").decode()],
            *flags,
        ]
    )
    pools = PoolSet()
    ask = {"request_ocsp": True, "request_signed_certificate_timestamps": True}
    client = Connection(ClientConfig(verify=False, **ask), pools=pools)
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted) for e in seen)

        runner.pump(client, NOW, done)
        assert client.peer_ocsp_response == stapled
        assert client.peer_signed_certificate_timestamps == (b"\x05\x06\x07\x08",)
        echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        code, err = runner.finish()
    assert (code, err) == (0, "")


def test_shim_client_retransmits_when_the_runner_advances_its_clock(tmp_path: Path) -> None:
    cert, key = write_leaf(tmp_path)
    runner = FakeRunner(["-dtls", "-expect-session-miss"])
    pools = PoolSet()
    server = Connection(
        ServerConfig(certificate_chain=cert, private_key=key),
        pools=pools,
        peer_address=PEER,
    )
    try:
        runner.accept()
        first = runner.read_packet()  # the ClientHello: "lost"
        assert first is not None
        # Half the shim's initial timeout (400 ms, as BoringSSL's): nothing is due yet.
        assert runner.timeout(0.2) == []
        assert runner.timeout(0.1) == []
        # The rest of it: the ClientHello comes again, after the timeout's ACK.
        assert runner.timeout(0.1) == []
        again = runner.read_packet()  # had it come before the ACK, timeout() had failed
        assert again is not None and again[13:] == first[13:]  # same hello, new record number
        server.receive_datagram(again, PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(server))
            return any(isinstance(e, HandshakeCompleted) for e in seen)

        runner.pump(server, NOW, done)
        echo_and_close(runner, server, seen)
    finally:
        if not server.closed:
            server.abandon()
        code, err = runner.finish()
    assert (code, err) == (0, "")


def test_shim_server_requires_a_client_certificate_chaining_to_the_trust_cert(
    tmp_path: Path,
) -> None:
    """-require-any-client-certificate with -trust-cert: client_auth against that root."""
    cert, key = write_leaf(tmp_path)
    root = pki("ec256").write_root(tmp_path)
    runner = FakeRunner(
        [
            *["-server", "-dtls", "-cert-file", cert, "-key-file", key],
            *["-require-any-client-certificate", "-expect-verify-result", "-trust-cert", str(root)],
        ]
    )
    leaf = pki("ec256").leaf("ec256")
    pools = PoolSet()
    client = Connection(
        ClientConfig(verify=False, certificate_chain=leaf.chain_pem, private_key=leaf.key_pem),
        pools=pools,
    )
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted) for e in seen)

        runner.pump(client, NOW, done)
        echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        code, err = runner.finish()
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("flags", "alert"),
    [
        # BoringSSL's legacy verify callback fails with X509_V_ERR_APPLICATION_VERIFICATION:
        # handshake_failure; its custom callback leaves the default, certificate_unknown.
        (["-verify-fail"], "handshake_failure"),
        (["-verify-fail", "-use-custom-verify-callback"], "certificate_unknown"),
    ],
)
def test_shim_server_verify_callback_rejects_the_client_chain(
    tmp_path: Path, flags: list[str], alert: str
) -> None:
    """-verify-fail: the shim's verify_callback rejects the client's (trusted) chain."""
    cert, key = write_leaf(tmp_path)
    root = pki("ec256").write_root(tmp_path)
    runner = FakeRunner(
        [
            *["-server", "-dtls", "-cert-file", cert, "-key-file", key],
            *["-require-any-client-certificate", "-trust-cert", str(root), *flags],
        ]
    )
    leaf = pki("ec256").leaf("ec256")
    pools = PoolSet()
    client = Connection(
        ClientConfig(verify=False, certificate_chain=leaf.chain_pem, private_key=leaf.key_pem),
        pools=pools,
    )
    try:
        runner.accept()
        client.connect(PEER, NOW)
        ended: list[ConnectionTerminated] = []

        def rejected() -> bool:
            ended.extend(e for e in events(client) if isinstance(e, ConnectionTerminated))
            return bool(ended)

        runner.pump(client, NOW, rejected)
    finally:
        if not client.closed:
            client.abandon()
        code, err = runner.finish()
    assert ended[0].alert is not None and ended[0].alert.name == alert and ended[0].by_peer
    assert code == 1
    assert f"sent alert: {alert}: certificate verification failed" in err


def test_shim_client_soft_fail_records_the_rejection_and_completes(tmp_path: Path) -> None:
    """-verify-fail without -verify-peer: the callback's rejection is only recorded, and
    -expect-verify-result finds it (SSL_get_verify_result)."""
    cert, key = write_leaf(tmp_path)
    runner = FakeRunner(["-dtls", "-verify-fail", "-expect-verify-result"])
    pools = PoolSet()
    server = Connection(
        ServerConfig(certificate_chain=cert, private_key=key), pools=pools, peer_address=PEER
    )
    try:
        runner.accept()
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(server))
            return any(isinstance(e, HandshakeCompleted) for e in seen)

        runner.pump(server, NOW, done)
        echo_and_close(runner, server, seen)
    finally:
        if not server.closed:
            server.abandon()
        code, err = runner.finish()
    assert (code, err) == (0, "")


@pytest.mark.parametrize(("expected", "code"), [("1", 0), ("0", 1), ("-1", 1)])
def test_shim_server_maps_the_credential_list_and_reports_the_selected_one(
    tmp_path: Path, expected: str, code: int
) -> None:
    """-new-x509-credential / -new-rpk-credential start credentials; the flags after one
    belong to it; -expect-selected-credential checks HandshakeCompleted.credential."""
    cert, key = write_leaf(tmp_path)
    rsa = pki("rsa2048").leaf("rsa2048")
    rsa_cert, rsa_key = tmp_path / "rsa.pem", tmp_path / "rsa.key"
    rsa_cert.write_bytes(rsa.chain_pem)
    rsa_key.write_bytes(rsa.key_pem)
    runner = FakeRunner(
        [
            *["-server", "-dtls", "-cert-file", cert, "-key-file", key],  # the default: last
            *["-new-x509-credential", "-cert-file", str(rsa_cert), "-key-file", str(rsa_key)],
            *["-signing-prefs", str(0x0805)],  # RSA-PSS-SHA384 only: not offered below
            *["-new-x509-credential", "-cert-file", cert, "-key-file", key],
            *["-expect-selected-credential", expected],
        ]
    )
    pools = PoolSet()
    offered = ["ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256"]
    client = Connection(ClientConfig(verify=False, signature_schemes=offered), pools=pools)
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted | ConnectionTerminated) for e in seen)

        runner.pump(client, NOW, done)
        if code == 0:
            echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        got = runner.finish()
    assert got[0] == code
    if code:
        assert f"credential 1 was selected, wanted {expected}" in got[1]


@pytest.mark.parametrize(
    "flags",
    [
        ["-dtls", "-max-version", str(0xFEFD)],  # DTLS 1.2 only
        ["-dtls", "-no-such-flag"],
        ["-server", "-max-version", str(0xFEFC)],  # TLS, not DTLS
        ["-dtls", "-server", "-enable-early-data"],  # BoringSSL has no 0-RTT over DTLS
        ["-dtls", "-psk", "secret"],  # BoringSSL's TLS 1.2 PSK cipher suites
        ["-dtls", "-psk-importer-sha256"],  # a PSK credential's flag without the credential
        ["-dtls", "-no-tls13"],
        # BoringSSL re-verifies a resumption only through its custom callback.
        ["-dtls", "-verify-peer", "-reverify-on-resume", "-resume-count", "1"],
        ["-dtls", "-server", "-new-delegated-credential"],  # no delegated credentials
        # A credential flag before any credential.
        ["-dtls", "-server", "-must-match-issuer", "-new-x509-credential", "-cert-file", "c"],
        ["-dtls", "-server", "-new-x509-credential", "-cert-properties", "AAcAAAADAgIC"],
    ],
)
def test_shim_refuses_what_it_does_not_implement_with_exit_89(flags: list[str]) -> None:
    runner = FakeRunner(flags)
    code, err = runner.finish()
    assert code == 89
    assert "unimplemented" in err


def _psk_flags(identity: bytes, key: bytes, context: bytes, sha: str) -> list[str]:
    """One PSK credential as runner.go appendCredentialFlags writes it."""
    import base64

    def b64(v: bytes) -> str:
        return base64.b64encode(v).decode()

    return [
        *["-new-psk-credential", "-psk-importer-key", b64(key)],
        *["-psk-importer-identity", b64(identity), "-psk-importer-context", b64(context)],
        f"-psk-importer-{sha}",
    ]


@pytest.mark.parametrize(("selected", "code"), [("1", 0), ("0", 1)])
def test_shim_server_uses_psk_credentials(selected: str, code: int) -> None:
    """-new-psk-credential and its -psk-importer-* flags make imported PSKs (RFC 9258) of a
    server with no certificate; -expect-selected-credential names the one used."""
    from dtls13 import ImportedPsk

    runner = FakeRunner(
        [
            *["-server", "-dtls"],
            *_psk_flags(b"psk3", b"IJKL" * 8, b"context3", "sha256"),
            *_psk_flags(b"psk2", b"EFGH" * 12, b"context2", "sha384"),
            *["-expect-selected-credential", selected],
        ]
    )
    psk = ImportedPsk(b"psk2", b"EFGH" * 12, b"context2", "sha384")
    pools = PoolSet()
    client = Connection(ClientConfig(imported_psks=[psk]), pools=pools)
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted | ConnectionTerminated) for e in seen)

        runner.pump(client, NOW, done)
        completed = [e for e in seen if isinstance(e, HandshakeCompleted)]
        assert completed and completed[0].psk_identity == b"psk2"
        if code == 0:
            echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        got = runner.finish()
    assert got[0] == code
    assert code == 0 or "selected credential 1, wanted 0" in got[1]


@pytest.mark.parametrize(
    ("flags", "verdict"),
    [
        (["-expect-no-ech-retry-configs", "-expect-ech-name-override", "localhost"], "sent alert"),
        (["-expect-ech-retry-configs", "AAQAAAAA"], "retry configs mismatch"),
        (["-expect-no-ech-name-override"], "sent alert: certificate_unknown"),
    ],
)
def test_shim_client_reports_an_ech_rejection(
    tmp_path: Path, flags: list[str], verdict: str
) -> None:
    """-ech-config-list against a server without ECH: the shim's client authenticates the
    public name ("localhost", which the server's certificate names), then fails with
    ech_required, and checks the retry configs and the name override it was told to."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from dtls13.handshake import ech, hpke

    public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    suite = ech.EchCipherSuite(hpke.KdfId.HKDF_SHA256, hpke.AeadId.AES_128_GCM)
    config = ech.encode_ech_config(1, 0x20, public, [suite], b"localhost")
    config_list = base64.b64encode(ech.push_ech_config_list([config])).decode()
    cert, key = write_leaf(tmp_path)
    args = ["-dtls", "-host-name", "secret.example", "-ech-config-list", config_list]
    args += ["-verify-peer", "-use-custom-verify-callback", *flags]
    runner = FakeRunner(args)
    pools = PoolSet()
    server = Connection(
        ServerConfig(certificate_chain=cert, private_key=key), pools=pools, peer_address=PEER
    )
    try:
        runner.accept()
        seen: list[object] = []

        def done() -> bool:
            seen.extend(events(server))
            return any(isinstance(e, ConnectionTerminated) for e in seen)

        runner.pump(server, NOW, done)
    finally:
        if not server.closed:
            server.abandon()
        code, err = runner.finish()
    assert code == 1 and verdict in err
    if verdict == "sent alert":
        assert "sent alert: ech_required" in err


@pytest.mark.parametrize(
    ("expect", "code", "error"),
    [
        ([], 0, ""),
        (["-expect-ech-accept"], 1, "ECH was not accepted, but wanted opposite.\n"),
    ],
)
def test_shim_server_takes_ech_keys_and_checks_acceptance(
    tmp_path: Path, expect: list[str], code: int, error: str
) -> None:
    import base64

    from dtls13 import generate_ech_key

    cert, key = write_leaf(tmp_path)
    ech = generate_ech_key(42, "public.example")
    runner = FakeRunner(
        [
            *["-server", "-dtls", "-cert-file", cert, "-key-file", key],
            *["-ech-server-config", base64.b64encode(ech.config.encoded).decode()],
            *["-ech-server-key", base64.b64encode(ech.private_key.private_bytes_raw()).decode()],
            *["-ech-is-retry-config", "1", *expect],
        ]
    )
    pools = PoolSet()
    client = Connection(ClientConfig(verify=False), pools=pools)  # offers no ECH
    try:
        runner.accept()
        client.connect(PEER, NOW)
        seen: list[object] = []

        def ended() -> bool:
            seen.extend(events(client))
            return any(isinstance(e, HandshakeCompleted | ConnectionTerminated) for e in seen)

        runner.pump(client, NOW, ended)
        if code == 0:
            echo_and_close(runner, client, seen)
    finally:
        if not client.closed:
            client.abandon()
        got = runner.finish()
    assert got == (code, error)
