"""The programmer's arguments, checked at once: configuration fields by kind, the
datagrams and times given to the sans-IO calls, the messages given to a channel.

A field of the wrong type raises TypeError naming the field when the config is made, not
a failure (or a silent misreading: a string taken as a sequence of one-letter names, a
truthy string for a flag) somewhere later in a handshake.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    if isinstance(v, int):
        return not isinstance(v, bool)
    return isinstance(v, float) and not math.isnan(v)


def _bytes(v: Any) -> bool:
    return isinstance(v, bytes)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _items(check: Check | None = None) -> Check:
    """A sequence (not one string or bytes value) whose items pass `check`."""

    def ok(v: Any) -> bool:
        if not isinstance(v, Sequence) or isinstance(v, str | bytes | bytearray):
            return False
        return check is None or all(check(x) for x in v)

    return ok


def _bytes_pair(v: Any) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, bytes) for x in v)


def _bytes_mapping(v: Any) -> bool:
    return isinstance(v, Mapping) and all(_bytes(k) and _bytes(x) for k, x in v.items())


def _bool_or_int(v: Any) -> bool:
    return isinstance(v, int)


def _keylog(v: Any) -> bool:
    return v is None or callable(v) or isinstance(v, str | os.PathLike)


BOOL = (_bool, "True or False")
INT = (_int, "an int")
NUMBER = (_number, "a number (int or float, not NaN)")
OPTIONAL_INT = (_optional(_int), "an int or None")
OPTIONAL_NUMBER = (_optional(_number), "a number (not NaN) or None")
OPTIONAL_BYTES = (_optional(_bytes), "bytes or None")
OPTIONAL_STR = (_optional(_str), "a str or None")
CALLABLE = (callable, "callable")
OPTIONAL_CALLABLE = (_optional(callable), "callable or None")
NAMES = (_items(), "a sequence of names, numbers or enum members (not one string)")
OPTIONAL_NAMES = (_optional(_items()), "None or a sequence of names, numbers or enum members")
STRINGS = (_items(_str), "a sequence of str (not one string)")
BYTES_ITEMS = (_items(_bytes), "a sequence of bytes values (not one)")

# Fields whose annotation `simple_fields` cannot read a check from.
COMMON: dict[str, tuple[Check, str]] = {
    "cipher_suites": NAMES,
    "groups": NAMES,
    "signature_schemes": NAMES,
    "connection_id": (_bool_or_int, "True, False or a length (int)"),
    "keylog": (_keylog, "a path, a callable or None"),
    "message_callback": OPTIONAL_CALLABLE,
    "random_bytes": CALLABLE,
}

CLIENT: dict[str, tuple[Check, str]] = {
    "key_share_groups": OPTIONAL_NAMES,
    "psk": (_optional(_bytes_pair), "an (identity, key) tuple of bytes or None"),
}

SERVER: dict[str, tuple[Check, str]] = {
    "client_auth": (_str, "'none', 'optional' or 'required'"),
    "external_psks": (_bytes_mapping, "a mapping of bytes identities to bytes keys"),
}


_BY_ANNOTATION = {
    "bool": BOOL,
    "int": INT,
    "float": NUMBER,
    "int | None": OPTIONAL_INT,
    "float | None": OPTIONAL_NUMBER,
    "bytes": (_bytes, "bytes"),
    "bytes | None": OPTIONAL_BYTES,
    "str | None": OPTIONAL_STR,
    "Sequence[str]": STRINGS,
    "Sequence[bytes]": BYTES_ITEMS,
    "Sequence[bytes] | None": (_optional(BYTES_ITEMS[0]), "None or " + BYTES_ITEMS[1]),
}


_SIMPLE: dict[type, dict[str, tuple[Check, str]]] = {}


def simple_fields(cls: type) -> dict[str, tuple[Check, str]]:
    """The checks of a dataclass's fields of a simple annotation (bool, int, float, bytes,
    str, a sequence of str or bytes, or one of these or None), read from the annotation."""
    fields = _SIMPLE.get(cls)
    if fields is None:
        fields = _SIMPLE[cls] = {
            f.name: _BY_ANNOTATION[f.type]
            for f in dataclasses.fields(cls)
            if f.init and isinstance(f.type, str) and f.type in _BY_ANNOTATION
        }
    return fields


def check_fields(config: object, fields: Mapping[str, tuple[Check, str]]) -> None:
    """TypeError for the first field of `config` that is not of its kind."""
    for name, (check, kind) in fields.items():
        value = getattr(config, name)
        if not check(value):
            raise TypeError(f"{name} must be {kind}, not {value!r}")


def server_name(name: str) -> str:
    """ClientConfig.server_name as sent (SNI) and checked against the certificate: an IP
    literal as given (never sent, RFC 6066 §3), a host name in ASCII with its non-ASCII
    labels as IDNA A-labels, as the ssl module converts server_hostname. ValueError for
    an empty name or one IDNA cannot encode (a label over 63 bytes)."""
    if not name:
        raise ValueError("server_name must not be empty (None: no name)")
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"server_name {name!r} is not a host name IDNA can encode") from None


def check_port(port: Any, *, any_port: bool = False) -> None:
    """A UDP port: an int from 1 to 65535 (from 0, "any", where we bind)."""
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"the port must be an int, not {port!r}")
    if not (0 if any_port else 1) <= port <= 65535:
        low = 0 if any_port else 1
        raise ValueError(f"the port must be between {low} and 65535, not {port}")


def check_datagram(data: Any) -> None:
    """A datagram must be bytes-like (bytes, bytearray, memoryview, a lease...)."""
    if type(data) is not bytes and type(data) is not memoryview:
        _bytes_like(data, "a datagram")


def check_message(data: Any) -> None:
    """An application message must be bytes-like."""
    if type(data) is not bytes:
        _bytes_like(data, "a message")


def _bytes_like(data: Any, what: str) -> None:
    if isinstance(data, bytes | bytearray | memoryview):
        return
    try:
        memoryview(data).release()
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, not {type(data).__name__}") from None


def check_now(now: Any) -> None:
    """The time given to a sans-IO call: seconds as an int or float, not NaN."""
    if type(now) is float:
        if now != now:
            raise ValueError("now must not be NaN")
        return
    if not _number(now):
        raise TypeError(f"now must be a time in seconds (int or float), not {now!r}")
