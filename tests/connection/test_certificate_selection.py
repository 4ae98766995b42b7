"""A server with several certificate chains picks one per handshake by SNI (RFC 6066) and
the client's signature_algorithms (RFC 8446 §4.2.3, §4.4.2.2), or as its callback says."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from dtls13.alerts import AlertDescription as A
from dtls13.config import ClientConfig, ServerConfig
from dtls13.events import HandshakeCompleted
from dtls13.handshake.constants import SignatureScheme
from dtls13.handshake.selection import ServerCertificate
from dtls13.handshake.signatures import HAVE_MLDSA
from tests.support.dtls_pair import Pair, make_pair, pki
from tests.support.pki import Issued

ROOT = pki("ec256")


def _leaf(kind: str, *names: str, cn: str) -> Issued:
    return pki(kind).leaf(kind, dns_names=names or ("localhost",), cn=cn)


EC = _leaf("ec256", "localhost", cn="ec leaf")
RSA = _leaf("rsa2048", "localhost", cn="rsa leaf")
A_EXAMPLE = _leaf("ec256", "a.example.com", cn="a leaf")
B_EXAMPLE = _leaf("ec256", "b.example.com", cn="b leaf")
WILD = _leaf("ec256", "*.example.com", cn="wildcard leaf")
RSA_A = _leaf("rsa2048", "a.example.com", cn="rsa a leaf")
ED = _leaf("ed25519", "localhost", cn="ed25519 leaf")
CAFILE = ROOT.root_pem + pki("rsa2048").root_pem


def _pair(
    chains: Sequence[Issued],
    server_name: str = "localhost",
    schemes: Sequence[str] | None = None,
    verify: bool = True,
    server: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> Pair:
    first, *rest = chains
    scfg = ServerConfig(
        certificate_chain=first.chain_pem,
        private_key=first.key,
        certificates=[(c.chain_pem, c.key) for c in rest],
        **{"idle_release_after": None, "debug": True, **(server or {})},
    )
    extra: dict[str, Any] = dict(client or {})
    if schemes is not None:
        extra["signature_schemes"] = [*schemes, "rsa_pkcs1_sha256"]  # the CA signatures
    extra.setdefault("cafile", CAFILE)
    ccfg = ClientConfig(
        server_name=server_name, verify=verify, idle_release_after=None, debug=True, **extra
    )
    return make_pair(cfgs=(ccfg, scfg))


def _served(pair: Pair) -> Any:
    """The leaf certificate the client received in a completed handshake (then closed)."""
    assert pair.handshake(max_time=10)
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    pair.close()
    return done.peer_certificates[0]


def _fails_with(pair: Pair, alert: A) -> None:
    """The server sent `alert` and the client got it."""
    assert not pair.handshake(max_time=10)
    pair.net.run(lambda: pair.terminated("client") is not None, max_time=pair.net.now + 10)
    mine, theirs = pair.terminated("server"), pair.terminated("client")
    assert mine is not None and mine.alert is alert and not mine.by_peer, mine
    assert theirs is not None and theirs.alert is alert and theirs.by_peer, theirs
    pair.close()
    assert pair.pools.in_use == 0


# -- by the client's signature_algorithms ----------------------------------------------


@pytest.mark.parametrize("order", ["rsa first", "ec first"])
@pytest.mark.parametrize(
    ("scheme", "expected"),
    [("ecdsa_secp256r1_sha256", EC), ("rsa_pss_rsae_sha256", RSA)],
)
def test_the_client_gets_the_chain_whose_key_signs_with_a_scheme_it_offers(
    order: str, scheme: str, expected: Issued
) -> None:
    chains = [RSA, EC] if order == "rsa first" else [EC, RSA]
    pair = _pair(chains, schemes=[scheme])
    assert _served(pair) == expected.cert
    done = next(e for e in pair.client_events if isinstance(e, HandshakeCompleted))
    assert done.signature_scheme == SignatureScheme[scheme]


def test_with_every_scheme_offered_the_first_configured_chain_is_sent() -> None:
    assert _served(_pair([RSA, EC])) == RSA.cert
    assert _served(_pair([EC, RSA])) == EC.cert


@pytest.mark.skipif(not HAVE_MLDSA, reason="cryptography without ML-DSA")
def test_an_ml_dsa_chain_beside_an_ecdsa_one_goes_to_a_client_offering_only_ml_dsa() -> None:
    mldsa = pki("mldsa65").leaf("mldsa65", cn="ml-dsa leaf")
    cafile = CAFILE + pki("mldsa65").root_pem
    only_mldsa = _pair([EC, mldsa], schemes=["mldsa65"], client={"cafile": cafile})
    done_leaf = _served(only_mldsa)
    assert done_leaf == mldsa.cert
    done = next(e for e in only_mldsa.client_events if isinstance(e, HandshakeCompleted))
    assert done.signature_scheme == SignatureScheme.mldsa65
    only_ec = _pair([mldsa, EC], schemes=["ecdsa_secp256r1_sha256"], client={"cafile": cafile})
    assert _served(only_ec) == EC.cert


def test_no_chain_whose_key_signs_with_an_offered_scheme_is_handshake_failure() -> None:
    # RFC 8446 §4.4.2.2/§4.4.3: never sign with a scheme the client did not offer.
    pair = _pair([EC, ED], schemes=["rsa_pss_rsae_sha256"])
    _fails_with(pair, A.handshake_failure)


def test_a_name_match_whose_key_cannot_sign_gives_way_to_a_chain_that_can() -> None:
    pair = _pair(
        [EC, RSA_A], server_name="a.example.com", schemes=["ecdsa_secp256r1_sha256"], verify=False
    )
    assert _served(pair) == EC.cert


# -- by server_name -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [("a.example.com", A_EXAMPLE), ("B.Example.COM", B_EXAMPLE)]
)
def test_the_client_gets_the_chain_issued_for_its_server_name(name: str, expected: Issued) -> None:
    assert _served(_pair([EC, A_EXAMPLE, B_EXAMPLE], server_name=name)) == expected.cert


def test_a_wildcard_chain_serves_names_one_label_below_it() -> None:
    assert _served(_pair([EC, WILD], server_name="x.example.com")) == WILD.cert


@pytest.mark.parametrize("name", ["example.com", "y.x.example.com", "localhost"])
def test_a_wildcard_does_not_serve_the_bare_domain_or_deeper_names(name: str) -> None:
    assert _served(_pair([EC, WILD], server_name=name, verify=False)) == EC.cert


def test_an_exact_name_beats_a_wildcard_listed_before_it() -> None:
    assert _served(_pair([EC, WILD, A_EXAMPLE], server_name="a.example.com")) == A_EXAMPLE.cert


def test_an_unknown_server_name_gets_the_first_chain() -> None:
    assert _served(_pair([A_EXAMPLE, B_EXAMPLE], server_name="c.example.org", verify=False)) == (
        A_EXAMPLE.cert
    )


def test_names_given_with_a_chain_replace_those_in_its_certificate() -> None:
    other = ServerCertificate(EC.chain_pem, EC.key, names=["c.example.org"])
    scfg = ServerConfig(
        certificate_chain=A_EXAMPLE.chain_pem,
        private_key=A_EXAMPLE.key,
        certificates=[other],
        debug=True,
    )
    ccfg = ClientConfig(server_name="c.example.org", verify=False, debug=True)
    assert _served(make_pair(cfgs=(ccfg, scfg))) == EC.cert


# -- certificate_callback ---------------------------------------------------------------


def test_the_certificate_callback_sees_the_server_name_and_offered_schemes() -> None:
    calls: list[tuple[str | None, tuple[int, ...]]] = []
    made = ServerCertificate(B_EXAMPLE.chain_pem, B_EXAMPLE.key)

    def choose(name: str | None, schemes: tuple[int, ...]) -> ServerCertificate | None:
        calls.append((name, schemes))
        return made if name == "b.example.com" else None

    chosen = _pair(
        [EC],
        server_name="b.example.com",
        server={"certificate_callback": choose},
        schemes=["ecdsa_secp256r1_sha256", "ed25519"],
    )
    assert _served(chosen) == B_EXAMPLE.cert
    assert calls == [
        ("b.example.com", (SignatureScheme.ecdsa_secp256r1_sha256, SignatureScheme.ed25519))
    ]
    # None: the built-in choice.
    default = _pair(
        [EC, A_EXAMPLE], server_name="a.example.com", server={"certificate_callback": choose}
    )
    assert _served(default) == A_EXAMPLE.cert


def test_a_callback_chain_that_cannot_sign_an_offered_scheme_is_handshake_failure() -> None:
    rsa = ServerCertificate(RSA.chain_pem, RSA.key)
    pair = _pair(
        [EC],
        schemes=["ecdsa_secp256r1_sha256"],
        server={"certificate_callback": lambda name, schemes: rsa},
    )
    _fails_with(pair, A.handshake_failure)


def test_a_certificate_callback_returning_no_certificate_is_internal_error_and_counted() -> None:
    pair = _pair([EC], server={"certificate_callback": lambda name, schemes: "ec.pem"})
    _fails_with(pair, A.internal_error)
    assert pair.server.rare_stat("server_callback_errors") == 1
    assert pair.server.statistics().server_callback_errors == 1


# -- alpn_callback ----------------------------------------------------------------------


def _alpn(pair: Pair) -> tuple[str | None, str | None]:
    assert pair.handshake(max_time=10)
    pair.drain()
    done = [
        next(e for e in events if isinstance(e, HandshakeCompleted)).alpn_protocol
        for events in (pair.client_events, pair.server_events)
    ]
    pair.close()
    return done[0], done[1]


def test_the_alpn_callback_chooses_among_the_protocols_the_client_offers() -> None:
    seen: list[tuple[str, ...]] = []

    def pick(offered: tuple[str, ...]) -> str | None:
        seen.append(offered)
        return offered[-1]

    pair = _pair(
        [EC],
        server={"alpn_callback": pick, "alpn_protocols": ["coap"]},
        client={"alpn_protocols": ["coap", "h3"]},
    )
    # Without the callback the server's own preference (coap) would win.
    assert _alpn(pair) == ("h3", "h3")
    assert seen == [("coap", "h3")]


def test_without_an_alpn_callback_the_servers_preference_order_wins() -> None:
    pair = _pair(
        [EC], server={"alpn_protocols": ["h3", "coap"]}, client={"alpn_protocols": ["coap", "h3"]}
    )
    assert _alpn(pair) == ("h3", "h3")


def test_an_alpn_callback_returning_none_is_no_application_protocol() -> None:
    pair = _pair(
        [EC], server={"alpn_callback": lambda offered: None}, client={"alpn_protocols": ["coap"]}
    )
    _fails_with(pair, A.no_application_protocol)
    assert pair.server.rare_stat("server_callback_errors") == 0


@pytest.mark.parametrize("answer", ["h2", b"coap", 1])
def test_an_alpn_callback_answer_the_client_did_not_offer_is_internal_error_and_counted(
    answer: object,
) -> None:
    pair = _pair(
        [EC], server={"alpn_callback": lambda offered: answer}, client={"alpn_protocols": ["coap"]}
    )
    _fails_with(pair, A.internal_error)
    assert pair.server.rare_stat("server_callback_errors") == 1


def test_the_alpn_callback_is_not_asked_when_the_client_offers_no_alpn() -> None:
    def fail(offered: tuple[str, ...]) -> str | None:
        raise AssertionError("asked")

    assert _alpn(_pair([EC], server={"alpn_callback": fail})) == (None, None)


@pytest.mark.parametrize("which", ["certificate_callback", "alpn_callback"])
def test_a_callback_that_raises_is_internal_error_and_counted(which: str) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug in the application")

    pair = _pair([EC], server={which: broken, "debug": False}, client={"alpn_protocols": ["a"]})
    _fails_with(pair, A.internal_error)
    assert pair.server.rare_stat("server_callback_errors") == 1
