"""Record protect and unprotect per second per suite, against a bare AEAD call in the same run.

Protect: one record added to a datagram writer, the datagram finished and its lease
released (header, inner plaintext, encrypt_into in place, record-number mask).
Unprotect: receive_datagram_untrusted of that datagram (header parse, mask,
reconstruction, decrypt_into a pooled lease, replay window) and release of the record.
Baseline: a bare `AESGCM.encrypt_into` of the same payload size into a preallocated
buffer (the crypto floor). Target: protect at most 3x the bare call for
1200-byte records.

    python benchmarks/bench_record.py [--runs 5] [--number 20000] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import timeit

from _common import Row, add_json_argument, make_row, write_json
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dtls13.crypto.suites import AEAD, SUITES, CipherSuite
from dtls13.memory import PoolSet
from dtls13.record import RecordLayer

SIZES = (1200, 64)


def measure(func: object, number: int) -> float:
    """Microseconds per call."""
    timer = timeit.Timer("f()", globals={"f": func})
    return timer.timeit(number) / number * 1e6


class Unprotect:
    """Receives a ring of pre-built datagrams, far more than the replay window holds,
    starting a fresh receiver at each pass so every record is new."""

    def __init__(
        self,
        pools: PoolSet,
        owner: object,
        tx: RecordLayer,
        suite: CipherSuite,
        secret: bytes,
        payload: bytes,
    ) -> None:
        self.pools, self.owner, self.suite, self.secret = pools, owner, suite, secret
        self.ring: list[bytes] = []
        for _ in range(4096):
            w = tx.datagram_writer(1400)
            w.add(3, 23, payload)
            for lease in w.finish():
                self.ring.append(lease.tobytes())
                lease.release()
        self.i = 0
        self.rx = self.fresh()

    def fresh(self) -> RecordLayer:
        rx = RecordLayer(self.pools, self.owner, replay_window=1024)  # type: ignore[arg-type]
        rx.install_read_epoch(3, self.suite, self.secret, 0.0)
        return rx

    def __call__(self) -> None:
        if self.i == len(self.ring):
            self.rx.close()
            self.rx = self.fresh()
            self.i = 0
        data = self.ring[self.i]
        self.i += 1
        for rec in self.rx.receive_datagram_untrusted(data, 0.0):
            rec.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="3 runs of 2,000")
    add_json_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.number = 3, 2_000

    pools = PoolSet()
    owner = pools.owner("connection", "bench")
    cases: dict[str, object] = {}

    for size in SIZES:
        aead = AESGCM(os.urandom(16))
        nonce = bytes(12)
        aad = bytes(5)
        data = os.urandom(size)
        out = bytearray(size + 16)

        def bare(
            aead: AESGCM = aead,
            nonce: bytes = nonce,
            data: bytes = data,
            aad: bytes = aad,
            out: bytearray = out,
        ) -> None:
            aead.encrypt_into(nonce, data, aad, out)

        cases[f"bare AESGCM.encrypt_into {size} B"] = bare

    for suite in CipherSuite:
        secret = os.urandom(48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32)
        for size in SIZES:
            tx = RecordLayer(pools, owner)
            tx.install_write_epoch(3, suite, secret)
            payload = os.urandom(size)
            params = SUITES[suite]
            own = params.aead(os.urandom(params.key_length))
            own_out = bytearray(size + params.tag_length)

            def bare_own(aead: AEAD = own, data: bytes = payload, out: bytearray = own_out) -> None:
                aead.encrypt_into(bytes(12), data, bytes(5), out)

            cases[f"bare own AEAD {suite.name} {size} B"] = bare_own

            def protect(tx: RecordLayer = tx, payload: bytes = payload) -> None:
                w = tx.datagram_writer(1400)
                w.add(3, 23, payload)
                for lease in w.finish():
                    lease.release()

            cases[f"protect {suite.name} {size} B"] = protect
            cases[f"unprotect {suite.name} {size} B"] = Unprotect(
                pools, owner, tx, suite, secret, payload
            )

    figures: dict[str, list[float]] = {name: [] for name in cases}
    for func in cases.values():
        measure(func, args.number // 10)  # warm-up
    for _ in range(args.runs):
        for name, func in cases.items():
            figures[name].append(measure(func, args.number))

    med = {name: statistics.median(f) for name, f in figures.items()}
    print(
        "| case | median µs | min µs | max µs | per second "
        "| x bare AESGCM.encrypt_into | x the suite's own bare AEAD |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, f in figures.items():
        size = 1200 if "1200" in name else 64
        ratio = med[name] / med[f"bare AESGCM.encrypt_into {size} B"]
        own_ratio = ""
        if name.startswith(("protect ", "unprotect ")):
            suite_name = name.split()[1]
            own_ratio = f"{med[name] / med[f'bare own AEAD {suite_name} {size} B']:.2f}x"
        print(
            f"| {name} | {med[name]:.2f} | {min(f):.2f} | {max(f):.2f} | "
            f"{1e6 / med[name]:,.0f} | {ratio:.2f}x | {own_ratio} |"
        )
    r = med["protect TLS_AES_128_GCM_SHA256 1200 B"] / med["bare AESGCM.encrypt_into 1200 B"]
    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| protect AES-128-GCM 1200 B / bare encrypt_into 1200 B | {r:.2f}x | <= 3.00x |")
    print(f"| pool leases in use after the run | {pools.in_use} | 0 |")
    write_json(args.json, rows(figures))


TARGET = 3.0  # protect AES-128-GCM 1200 B at most 3x the bare AESGCM.encrypt_into


def rows(figures: dict[str, list[float]]) -> list[Row]:
    """Bare AESGCM, then protect/unprotect of 1200 B for every suite and 64 B for
    AES-128-GCM, each as a ratio to the bare AESGCM.encrypt_into of its size."""
    out = [
        make_row("record", f"bare AESGCM.encrypt_into {n} B", "µs", figures[bare])
        for n in SIZES
        for bare in [f"bare AESGCM.encrypt_into {n} B"]
    ]
    for suite in CipherSuite:
        for size in SIZES:
            if size != 1200 and suite != CipherSuite.TLS_AES_128_GCM_SHA256:
                continue
            for op in ("protect", "unprotect"):
                base = f"bare AESGCM.encrypt_into {size} B"
                values = figures[f"{op} {suite.name} {size} B"]
                row = make_row(
                    "record",
                    f"{op} {suite.name.removeprefix('TLS_')} {size} B",
                    "µs",
                    values,
                    baseline_values=figures[base],
                    baseline=base,
                )
                targeted = suite == CipherSuite.TLS_AES_128_GCM_SHA256 and size == 1200
                if op == "protect" and targeted and row.ratio is not None:
                    row = dataclasses.replace(
                        row, target=f"<= {TARGET:.2f}x", met=row.ratio <= TARGET
                    )
                out.append(row)
    return out


if __name__ == "__main__":
    main()
