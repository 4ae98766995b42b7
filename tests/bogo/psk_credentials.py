"""PSK credentials on the shim's command line (test_config.cc): `-new-psk-credential` starts
one (SSL_CREDENTIAL_new_pre_shared_key, an RFC 9258 imported PSK), and the
`-psk-importer-*` flags after it fill it in. The runner writes them in
runner.go appendCredentialFlags. Parsed without importing dtls13."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from flags import Unimplemented

NEW = "-new-psk-credential"
_BASE64 = {
    "-psk-importer-key": "key",
    "-psk-importer-identity": "identity",
    "-psk-importer-context": "context",
}
_HASHES = {"-psk-importer-sha256": "sha256", "-psk-importer-sha384": "sha384"}


@dataclass
class PskCredential:
    """One -new-psk-credential and its fields."""

    key: bytes = b""
    identity: bytes = b""
    context: bytes = b""
    hash: str | None = None
    # Its index in the whole credential list (-new-x509/-rpk-credential ones counted).
    position: int = 0


def split(argv: list[str]) -> tuple[list[str], list[PskCredential]]:
    """(argv without the PSK credentials' flags, the PSK credentials in order)."""
    rest: list[str] = []
    creds: list[PskCredential] = []
    others = 0  # -new-x509-credential / -new-rpk-credential seen so far
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-new-x509-credential", "-new-rpk-credential"):
            others += 1
        if arg == NEW:
            creds.append(PskCredential(position=len(creds) + others))
        elif arg in _BASE64 or arg in _HASHES:
            if not creds:
                raise Unimplemented(f"{arg} without -new-psk-credential")
            if arg in _HASHES:
                creds[-1].hash = _HASHES[arg]
            else:
                if i + 1 >= len(argv):
                    raise Unimplemented(f"flag {arg} needs a value")
                setattr(creds[-1], _BASE64[arg], base64.b64decode(argv[i + 1]))
                i += 1
        else:
            rest.append(arg)
        i += 1
    return rest, creds


def imported_psks(creds: list[PskCredential]) -> list[object]:
    """The credentials as dtls13 ImportedPsk objects (their order kept)."""
    from dtls13 import ImportedPsk

    out: list[object] = []
    for c in creds:
        if c.hash is None:
            # SSL_CREDENTIAL_new_pre_shared_key requires the EPSK's hash.
            raise Unimplemented("-new-psk-credential without -psk-importer-sha256/384")
        try:
            out.append(ImportedPsk(c.identity, c.key, c.context, c.hash))
        except ValueError as e:
            raise Unimplemented(f"PSK credential refused: {e}") from None
    return out
