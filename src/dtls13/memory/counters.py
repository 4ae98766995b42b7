"""Counter dicts that cost little per connection.

Every connection keeps a few dicts of named counters (statistics, drop reasons). A plain dict
of 25 counters carries its own key table (~830 bytes); an instance ``__dict__`` built in a
fixed order shares one key table with every other instance of its class (CPython's
key-sharing dictionaries, PEP 412), so each costs only its values (~300 bytes). The result is
an ordinary ``dict``; on an interpreter without key sharing it is just a dict.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable
from typing import Any

_CLASSES: dict[tuple[str, ...], type] = {}


def _make_init(key: tuple[str, ...]) -> Any:
    """An __init__ setting each name to 0 in order: one attribute store per name (no call
    per name) when the names are identifiers."""
    if all(name.isidentifier() and not keyword.iskeyword(name) for name in key):
        body = "".join(f"    self.{name} = 0\n" for name in key) or "    pass\n"
        namespace: dict[str, Any] = {}
        exec(f"def __init__(self):\n{body}", namespace)  # identifiers only (checked above)
        return namespace["__init__"]

    def __init__(self: Any) -> None:
        for name in key:
            setattr(self, name, 0)

    return __init__


def zero_counters(names: Iterable[str]) -> dict[str, int]:
    """A dict mapping each name to 0 that shares its keys with the others of these names."""
    key = tuple(names)
    cls = _CLASSES.get(key)
    if cls is None:
        cls = _CLASSES[key] = type("_Counters", (), {"__init__": _make_init(key)})
    counters: dict[str, int] = cls().__dict__
    return counters
