"""A server's Encrypted Client Hello keys (RFC 9849): ``EchKey``, ``generate_ech_key`` and
``ech_config_list``, the ECHConfigList a server publishes (for example in DNS, RFC 9848)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from dtls13._fast import DecodeError

from .ech import EchCipherSuite, EchConfig, encode_ech_config, pull_ech_config_list
from .ech import push_ech_config_list as _push_list
from .hpke import AeadId, KdfId, KemId

DEFAULT_ECH_SUITES = (
    EchCipherSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    EchCipherSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),
)


@dataclass(frozen=True, slots=True)
class EchKey:
    """One ECHConfig and its X25519 private key. ``retry``: offered to clients whose
    encrypted ClientHello could not be used, as retry_configs (RFC 9849 §7.1)."""

    config: EchConfig
    private_key: X25519PrivateKey
    retry: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.config, EchConfig):
            raise TypeError("EchKey.config must be an EchConfig")
        if not isinstance(self.private_key, X25519PrivateKey):
            raise TypeError("EchKey.private_key must be an X25519PrivateKey")
        if self.config.kem_id != KemId.DHKEM_X25519_HKDF_SHA256:
            raise ValueError("EchKey: only DHKEM(X25519, HKDF-SHA256) configs are supported")
        if self.private_key.public_key().public_bytes_raw() != self.config.public_key:
            raise ValueError("EchKey: the private key does not match the config's public key")

    @classmethod
    def from_bytes(cls, config: bytes, private_key: bytes, *, retry: bool = True) -> EchKey:
        """From one ECHConfig as on the wire and a raw 32-byte X25519 private key."""
        try:
            configs = pull_ech_config_list(len(config).to_bytes(2, "big") + config)
        except (DecodeError, OverflowError):
            raise ValueError("not a well-formed ECHConfig") from None
        if len(configs) != 1:
            raise ValueError("not one ECHConfig of version 0xfe0d")
        return cls(configs[0], X25519PrivateKey.from_private_bytes(private_key), retry)


def generate_ech_key(
    config_id: int,
    public_name: str,
    *,
    suites: Sequence[EchCipherSuite] = DEFAULT_ECH_SUITES,
    maximum_name_length: int = 0,
) -> EchKey:
    """A fresh X25519 key and its ECHConfig naming `public_name` (the name clients put in
    the outer ClientHello, whose certificate this server must also hold)."""
    key = X25519PrivateKey.generate()
    for suite in suites:
        if not suite.supported:
            raise ValueError(f"unsupported ECH cipher suite {suite}")
    config = encode_ech_config(
        config_id,
        KemId.DHKEM_X25519_HKDF_SHA256,
        key.public_key().public_bytes_raw(),
        suites,
        public_name.encode("ascii"),
        maximum_name_length=maximum_name_length,
    )
    return EchKey(config, key)


def ech_config_list(keys: Iterable[EchKey]) -> bytes:
    """The ECHConfigList of `keys`' configs, in order: what the server publishes."""
    return _push_list(key.config for key in keys)
