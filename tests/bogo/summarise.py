"""Summarise a BoGo run (the runner's -json-output) for the DTLS 1.3 tests.

usage: summarise.py results.json config.json [shim.log]

Disabled: tests matching a DisabledTests pattern (run.sh runs them anyway, with
-include-disabled, so they are counted here but not judged). Unimplemented tests whose shim
refused a DTLS 1.2-only (or TLS) configuration are not DTLS 1.3 tests: shim.log says how
many of the shim's exit-89s were for that reason.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import re
import sys


def cause(error: str) -> str:
    """A short cause for a failed test: the shim's first stderr line, else the runner's."""
    m = re.search(r"stderr:\n\t\t(.*)", error)
    if m and m.group(1).strip():
        line = m.group(1).strip()
    else:
        m = re.search(r"local: \"(.*?)\"", error)
        line = "runner: " + (m.group(1) if m else error.splitlines()[0] if error else "?")
    return re.sub(r"[0-9a-f]{16,}", "…", line)[:140]


def main(results_path: str, config_path: str, log_path: str | None) -> None:
    with open(results_path) as f:
        tests: dict[str, dict[str, str]] = json.load(f)["tests"]
    with open(config_path) as f:
        disabled_patterns: dict[str, str] = json.load(f)["DisabledTests"]
    disabled = {
        name: reason
        for name in tests
        for pattern, reason in disabled_patterns.items()
        if fnmatch.fnmatchcase(name, pattern)
    }
    judged = {n: r for n, r in tests.items() if n not in disabled}
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
    print(f"tests run (names with DTLS): {len(tests)}")
    print(f"disabled (config.json): {len(disabled)}")
    print(f"unimplemented because DTLS 1.2 or TLS only (not DTLS 1.3 tests): {not_13}")
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
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
