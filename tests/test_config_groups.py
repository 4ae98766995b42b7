"""Configuration: groups without an implementation are refused at once."""

from __future__ import annotations

import pytest
from dtls_pair import pki

from dtls13.config import ClientConfig, ServerConfig


@pytest.mark.parametrize("group", ["secp521r1", "ffdhe2048"])
def test_groups_without_an_implementation_are_refused(group: str) -> None:
    # Found in interop: a server configured with secp521r1 sent a HelloRetryRequest for
    # it, then failed with internal_error when the client's share arrived.
    leaf = pki().leaf()
    with pytest.raises(ValueError, match=f"{group}.*not implemented"):
        ServerConfig(
            certificate_chain=leaf.chain_pem, private_key=leaf.key_pem, groups=[group, "x25519"]
        )
    with pytest.raises(ValueError, match=f"{group}.*not implemented"):
        ClientConfig(verify=False, groups=["x25519", group])
