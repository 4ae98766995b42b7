"""Summarise a BoGo run (the runner's -json-output) for the DTLS 1.3 tests.

usage: summarise.py results.json config.json [shim.log [all.json]]

Disabled: tests matching a DisabledTests pattern, counted in all.json (run.sh lists every
selected test there, disabled ones included, through a shim that declines them all).
Unimplemented tests whose shim refused a DTLS 1.2-only (or TLS) configuration are not
DTLS 1.3 tests: shim.log says how many of the shim's exit-89s were for that reason.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import re
import sys

NO_DTLS13_SIGNS = (
    "does not offer DTLS 1.3",
    "speaks only DTLS 1.2 or older",
    "client did not offer any supported protocol versions",
)


def cause(error: str) -> str:
    """A short cause for a failed test: the shim's first stderr line, else the runner's."""
    m = re.search(r"stderr:\n\t\t(.*)", error)
    if m and m.group(1).strip():
        line = m.group(1).strip()
    else:
        m = re.search(r"local: \"(.*?)\"", error)
        line = "runner: " + (m.group(1) if m else error.splitlines()[0] if error else "?")
    return re.sub(r"[0-9a-f]{16,}", "…", line)[:140]


def main(results_path: str, config_path: str, log_path: str | None, all_path: str | None) -> None:
    with open(results_path) as f:
        tests: dict[str, dict[str, str]] = json.load(f)["tests"]
    names = set(tests)
    if all_path:
        with open(all_path) as f:
            names |= set(json.load(f)["tests"])
    with open(config_path) as f:
        disabled_patterns: dict[str, str] = json.load(f)["DisabledTests"]
    disabled = {
        name: reason
        for name in names
        for pattern, reason in disabled_patterns.items()
        if fnmatch.fnmatchcase(name, pattern)
    }
    # DTLS 1.2 tests whose names do not say so: the runner offered no DTLS 1.3 (the shim had
    # no version flag to refuse) and the test failed on that.
    by_runner = {
        n
        for n, r in tests.items()
        if n not in disabled
        and r["actual"] == "FAIL"
        and any(sign in r.get("error", "") for sign in NO_DTLS13_SIGNS)
    }
    judged = {n: r for n, r in tests.items() if n not in disabled and n not in by_runner}
    by = collections.Counter(r["actual"] for r in judged.values())
    reasons: collections.Counter[str] = collections.Counter()
    if log_path:
        try:
            with open(log_path) as f:
                for line in f:
                    entry = json.loads(line)
                    if entry["code"] == 89:
                        reasons[entry["kind"]] += 1
        except FileNotFoundError:
            pass
    not_13 = reasons["version"]
    unimplemented = by["SKIP"] - not_13
    total = by["PASS"] + by["FAIL"] + unimplemented
    print(f"tests selected: {len(names)}, run: {len(tests)}")
    print(f"disabled (config.json): {len(disabled)}")
    for reason, count in collections.Counter(disabled.values()).most_common():
        print(f"  {count:5d}  {reason}")
    print(f"unimplemented because DTLS 1.2 or TLS only (not DTLS 1.3 tests): {not_13}")
    print(f"DTLS 1.2 by the runner's configuration (not DTLS 1.3 tests): {len(by_runner)}")
    print(f"DTLS 1.3 tests: {total}")
    if total:
        print(f"  passed:        {by['PASS']} ({100 * by['PASS'] / total:.1f}%)")
        print(f"  failed:        {by['FAIL']}")
        print(f"  unimplemented: {unimplemented}")
    print(f"shim exit-89 reasons: {dict(reasons)}")
    crashes = [n for n, r in judged.items() if "SHIM CRASHED" in r.get("error", "")]
    print(f"shim crashes: {len(crashes)} {crashes[:10]}")
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for name, r in sorted(judged.items()):
        if r["actual"] == "FAIL":
            groups[cause(r.get("error", ""))].append(name)
    print("failures by cause:")
    for c, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(names):4d}  {c}")
        for n in names[:6]:
            print(f"          {n}")


if __name__ == "__main__":
    args: list[str | None] = [*sys.argv[1:], None, None]
    assert args[0] is not None and args[1] is not None, __doc__
    main(args[0], args[1], args[2], args[3])
