"""Configuration: every implemented group is accepted by name, number or member; groups
without an implementation are refused at once."""

from __future__ import annotations

import pytest

from dtls13.config import ClientConfig, ServerConfig
from dtls13.handshake import groups
from dtls13.handshake.constants import NamedGroup
from tests.support.dtls_pair import pki


def _server(group_list: list[object]) -> ServerConfig:
    leaf = pki().leaf()
    return ServerConfig(
        certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, groups=group_list
    )


@pytest.mark.parametrize("group", [NamedGroup.secp521r1, NamedGroup.ffdhe2048])
@pytest.mark.parametrize("form", ["name", "upper", "number", "member"])
def test_secp521r1_and_ffdhe2048_are_configurable(group: NamedGroup, form: str) -> None:
    value = {"name": group.name, "upper": group.name.upper(), "number": int(group)}.get(form, group)
    assert _server([value, "x25519"]).group_order == (group, NamedGroup.x25519)
    client = ClientConfig(verify=False, groups=["x25519", value], key_share_groups=[value])
    assert client.group_order == (NamedGroup.x25519, group)
    assert client.share_groups == (group,)


def test_defaults_offer_neither_secp521r1_nor_ffdhe2048() -> None:
    # ffdhe2048 costs a 256-byte share and more computation than any curve; P-521 adds
    # little over P-384 for a peer that would also take P-384. Both are opt-in.
    client = ClientConfig(verify=False)
    assert NamedGroup.ffdhe2048 not in client.group_order
    assert NamedGroup.secp521r1 not in client.group_order
    assert client.share_groups == (NamedGroup.x25519,)


@pytest.mark.parametrize("group", ["secp521r1", "ffdhe2048"])
def test_groups_without_an_implementation_are_refused(
    monkeypatch: pytest.MonkeyPatch, group: str
) -> None:
    # As with a cryptography that no longer has finite-field DH: a server configured with
    # a group it cannot compute would send a HelloRetryRequest for it, then fail with
    # internal_error when the client's share arrived.
    kept = tuple(g for g in groups.SUPPORTED_GROUPS if g.name != group)
    monkeypatch.setattr(groups, "SUPPORTED_GROUPS", kept)
    with pytest.raises(ValueError, match=f"{group}.*not implemented"):
        _server([group, "x25519"])
    with pytest.raises(ValueError, match=f"{group}.*not implemented"):
        ClientConfig(verify=False, groups=["x25519", group])


def test_a_client_configured_without_x25519_sends_a_share_for_its_first_group() -> None:
    client = ClientConfig(verify=False, groups=["secp384r1", "secp256r1"])
    assert client.share_groups == (NamedGroup.secp384r1,)
    # x25519, when configured, stays the default share wherever it is in the list.
    client = ClientConfig(verify=False, groups=["secp256r1", "x25519"])
    assert client.share_groups == (NamedGroup.x25519,)


def test_explicit_key_shares_outside_the_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="not among the configured groups"):
        ClientConfig(verify=False, groups=["secp256r1"], key_share_groups=["x25519"])
