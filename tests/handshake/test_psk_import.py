"""Imported external PSKs (RFC 9258 §5): the ImportedIdentity codec, the ipskx derivation
and the "imp binder" key, against vectors BoringSSL's Go runner (ssl/test/runner, prf.go
importPSK) computes for DTLS 1.3 with the credentials of its psk_tests.go."""

from __future__ import annotations

import pytest

from dtls13.handshake.key_schedule import KeySchedule
from dtls13.handshake.psk_import import (
    ImportedPsk,
    client_offers,
    derive_ipskx,
    imported_identity,
    server_match,
)

PSK1 = ImportedPsk(b"psk1", b"ABCD" * 8, b"context1", "sha256")
PSK2 = ImportedPsk(b"psk2", b"EFGH" * 12, b"context2", "sha384")

# (psk, target hash, ImportedIdentity, ipskx, binder key) from BoringSSL's runner.
VECTORS = [
    (
        PSK1,
        "sha256",
        "000470736b310008636f6e7465787431fefc0001",
        "1e4a15c8fecc0bdac69cd02f12ca50ef7f7f4872c16e05f403383cac4761e15a",
        "e858aee4b25355307e9b203db43939843a190169cf80409fe8db8f6189b35671",
    ),
    (
        PSK1,
        "sha384",
        "000470736b310008636f6e7465787431fefc0002",
        "9289cc986cc806911b8e67f509e3edcddc0fea46ea2c626e172447e28bcd0c53"
        "2fe1f83e6115348a71df76c75c693f59",
        "d3fce67563e7d5354cd6fc125946b8b14083cbc5e1d2e7fcf2d9fbe35266ab68"
        "fae9f278b46c376bcdf1764a10e643b7",
    ),
    (
        PSK2,
        "sha256",
        "000470736b320008636f6e7465787432fefc0001",
        "0884aa69e7a918bf732a4dc7603e0c52f913598cf94f667c6a3990e878fe9167",
        "92fc58001717412750c4380f56da37053c3d73d116947f7d65fe363f750c8e7f",
    ),
    (
        PSK2,
        "sha384",
        "000470736b320008636f6e7465787432fefc0002",
        "41811c1859d4cf6e0d9d27c00c1bd3f5a4ece2891bc72a9c824c10afa131c135"
        "84f83896b49f257c5df57289c9f8fa88",
        "d498e8d7630461eae0560a7ae22c45fb10cd09e86a37ea81db4fa1ff35d82b66"
        "9f5ab9859fbcbb78572022c931ad0799",
    ),
]


@pytest.mark.parametrize(("psk", "target", "identity", "ipskx", "binder_key"), VECTORS)
def test_import_matches_boringssl(
    psk: ImportedPsk, target: str, identity: str, ipskx: str, binder_key: str
) -> None:
    assert imported_identity(psk, target).hex() == identity
    derived = derive_ipskx(psk, target)
    assert derived.hex() == ipskx
    # RFC 9258 §5.2: the binder key of an imported PSK is labelled "imp binder".
    schedule = KeySchedule(target, psk=derived)
    assert schedule.binder_key(imported=True).hex() == binder_key
    assert schedule.binder_key(external=True) != schedule.binder_key(imported=True)


def test_client_imports_each_psk_for_each_suite_hash_in_order() -> None:
    offers = client_offers([PSK1, PSK2], ["sha256", "sha384", "sha256"])
    assert [(o.source, o.hash_name) for o in offers] == [
        (PSK1, "sha256"),
        (PSK1, "sha384"),
        (PSK2, "sha256"),
        (PSK2, "sha384"),
    ]
    assert offers[1].identity == imported_identity(PSK1, "sha384")
    assert len(offers[1].ipskx) == 48 and len(offers[2].ipskx) == 32


def test_server_matches_in_its_own_order_and_only_exact_identities() -> None:
    offered = [imported_identity(PSK2, "sha256"), imported_identity(PSK1, "sha256")]
    assert server_match([PSK1, PSK2], offered, "sha256") == (1, PSK1, derive_ipskx(PSK1, "sha256"))
    assert server_match([PSK2, PSK1], offered, "sha256") == (0, PSK2, derive_ipskx(PSK2, "sha256"))
    # Imported for another KDF, protocol or context, or with bytes appended: another PSK.
    assert server_match([PSK1], offered, "sha384") is None
    assert server_match([PSK1], [imported_identity(PSK1, "sha256", 0x0304)], "sha256") is None
    other_context = ImportedPsk(b"psk1", PSK1.key, b"context2")
    assert server_match([other_context], offered, "sha256") is None
    assert server_match([PSK1], [offered[1] + b"extra"], "sha256") is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"identity": b"", "key": b"k" * 16}, ValueError),
        ({"identity": b"i" * 65536, "key": b"k" * 16}, ValueError),
        ({"identity": b"i", "key": b"k" * 15}, ValueError),
        ({"identity": b"i", "key": b"k" * 16, "context": b"c" * 65536}, ValueError),
        ({"identity": b"i", "key": b"k" * 16, "hash": "sha512"}, ValueError),
        ({"identity": "i", "key": b"k" * 16}, TypeError),
    ],
)
def test_bad_imported_psk_is_refused_at_once(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        ImportedPsk(**kwargs)  # type: ignore[arg-type]


def test_key_is_not_in_the_repr() -> None:
    assert "ABCD" not in repr(PSK1)
