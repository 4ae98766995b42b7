#!/usr/bin/env bash
# Run BoringSSL's BoGo runner against the dtls13 shim for the DTLS tests and summarise.
#
#   DTLS13_BORINGSSL=/path/to/boringssl tests/bogo/run.sh ['pattern;pattern']
#
# Builds ssl/test/runner once (Go; GOTOOLCHAIN=local) into $DTLS13_BORINGSSL/bogo-runner.test,
# runs the tests whose names match (default: every test with DTLS in its name; BOGO_SKIP:
# patterns to leave out) and prints
# passed / failed / unimplemented / disabled. Results: $BOGO_OUT (default /tmp/bogo-dtls13).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${DTLS13_BORINGSSL:?set DTLS13_BORINGSSL to a BoringSSL checkout}"
out=${BOGO_OUT:-/tmp/bogo-dtls13}
pattern=${1:-*DTLS*}
workers=${BOGO_WORKERS:-2}
skip=${BOGO_SKIP:-}
python=${DTLS13_PYTHON:-$repo/.venv/bin/python}
mkdir -p "$out"
runner="$DTLS13_BORINGSSL/bogo-runner.test"
if [ ! -x "$runner" ] || [ -n "$(find "$DTLS13_BORINGSSL/ssl/test/runner" -newer "$runner" -name '*.go' | head -1)" ]; then
    (cd "$DTLS13_BORINGSSL/ssl/test/runner" && GOTOOLCHAIN=local go test -c -o "$runner" .)
fi
# The shim runs under this Python and imports this checkout's dtls13 (build the compiled
# modules in place first: setup.py build_ext --inplace).
export PATH="$(dirname "$python"):$PATH"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export BOGO_SHIM_LOG="$out/shim.log"
rm -f "$BOGO_SHIM_LOG" "$out/results.json"
cd "$DTLS13_BORINGSSL/ssl/test/runner"
# Every test the pattern selects, disabled ones included, through a shim that declines all
# at once (cheap): the summary counts the disabled ones from this list.
"$runner" -shim-path "$here/list-shim" -shim-config "$here/config.json" \
    -allow-unimplemented -include-disabled -pipe -num-workers "$workers" \
    -json-output "$out/all.json" -test "$pattern" -skip "$skip" > "$out/list.log" 2>&1 || true
"$runner" -shim-path "$here/shim" -shim-config "$here/config.json" \
    -allow-unimplemented -pipe -num-workers "$workers" \
    -json-output "$out/results.json" -test "$pattern" -skip "$skip" > "$out/runner.log" 2>&1 || true
"$python" "$here/summarise.py" "$out/results.json" "$here/config.json" "$BOGO_SHIM_LOG" \
    "$out/all.json"
exit 0
