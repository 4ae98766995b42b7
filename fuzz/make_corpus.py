"""Write the seed corpora of the harnesses into fuzz/corpus/<harness>/ (run from anywhere:
``python fuzz/make_corpus.py``). The seeds come from in-memory handshakes between our own
client and server in every scenario of ``fuzz_common.SCENARIOS``; they are deterministic,
so running this again rewrites the same files (the ML-KEM server share aside)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_codecs
import fuzz_common
import fuzz_connection
import fuzz_endpoint
import fuzz_record

from dtls13.connection import Connection
from dtls13.handshake import ech
from dtls13.handshake import extensions as ext
from dtls13.handshake import messages as msgs
from dtls13.handshake.ech_keys import DEFAULT_ECH_SUITES
from dtls13.handshake.hpke import KemId
from dtls13.memory import PoolSet
from dtls13.record import ContentType, RecordLayer

MAX_SEED = 8192  # bytes: keeps the corpus small (< 1 MB in all)


def write(harness: str, seeds: list[bytes], prefix: str = "") -> None:
    """Replace the seeds of `harness` named with `prefix` (others' seeds stay)."""
    folder = fuzz_common.CORPUS / harness
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.name.startswith(prefix) and (prefix or "-" not in old.name):
            old.unlink()
    unique = {prefix + hashlib.sha1(s).hexdigest()[:16]: s for s in seeds if 0 < len(s) <= MAX_SEED}
    for name, seed in sorted(unique.items()):
        (folder / name).write_bytes(seed)
    size = sum(map(len, unique.values()))
    print(f"{harness}: {len(unique)} {prefix or 'own '}seeds, {size} bytes")


# -- codecs: every message and extension body our handshakes decode --------------------------


def codec_seeds() -> list[bytes]:
    index = {decoder.__name__: i for i, (decoder, _) in enumerate(fuzz_codecs.TARGETS)}
    message_index = index["_message"]
    seen: list[bytes] = []
    original_pull_message, original_decode = msgs.pull_message, ext.decode

    def pull_message(msg_type: int, body: Any) -> Any:
        seen.append(bytes([message_index, msg_type]) + bytes(body))
        return original_pull_message(msg_type, body)

    def decode(data: Any, pull: Any) -> Any:
        name = getattr(pull, "__name__", "")
        if name in index:
            seen.append(bytes([index[name]]) + bytes(data))
        return original_decode(data, pull)

    msgs.pull_message, ext.decode = pull_message, decode
    try:
        for i in range(len(fuzz_common.SCENARIOS)):
            fuzz_common.record(i)
    finally:
        msgs.pull_message, ext.decode = original_pull_message, original_decode
    # Whole message bodies for each message decoder too, and the headers/fragments path.
    for seed in list(seen):
        if seed[0] == message_index and len(seed) > 2:
            name = original_pull_message.__globals__["_PULLERS"][seed[1]].__name__
            if name in index:
                seen.append(bytes([index[name]]) + seed[2:])
    for name in ("_fragments", "_reassembler", "_buffer_program", "_certificates"):
        seen.append(bytes([index[name]]) + bytes(range(32)))
    seen += [bytes([index["_cookie"]]) + bytes(48), bytes([index["_ticket"]]) + bytes(64)]
    # No recorded scenario negotiates DTLS-SRTP: profiles 1 and 7 with the MKI "ab".
    seen.append(bytes([index["pull_use_srtp"]]) + bytes.fromhex("0004000100070261 62"))
    # Nor ECH, delegated credentials, certificate_authorities or trust anchor IDs.
    config = ech.encode_ech_config(
        7, KemId.DHKEM_X25519_HKDF_SHA256, bytes(range(32)), DEFAULT_ECH_SUITES, b"public.test"
    )
    outer = ech.EchOuter(DEFAULT_ECH_SUITES[0], 7, bytes(32), bytes(range(48)))
    seen += [
        bytes([index["pull_ech_config_list"]]) + ech.push_ech_config_list([config]),
        bytes([index["pull_ech_client_hello"]]) + ech.push_ech_outer(outer),
        bytes([index["pull_ech_client_hello"]]) + ech.ECH_INNER_MARKER,
        bytes([index["decode_offer_untrusted"]]) + bytes.fromhex("0400010002"),
        bytes([index["offered_schemes_untrusted"]]) + bytes.fromhex("000408070403"),
        bytes([index["pull_delegated_credential"]])
        + bytes.fromhex("00000e1008070000040102030408070002aabb"),
        bytes([index["pull_certificate_authorities"]]) + bytes.fromhex("000600043002 0500"),
        bytes([index["pull_ids"]]) + bytes.fromhex("00070201020301 0203"),
        bytes([index["pull_available_ids"]]) + bytes.fromhex("0003020102"),
    ]
    return seen


# -- record layer: datagrams written with the harness's secrets -------------------------------


def record_seeds(recordings: list[fuzz_common.Recording]) -> list[bytes]:
    pools = PoolSet()
    seeds = []
    payloads = [
        (ContentType.handshake, bytes(range(40))),
        (ContentType.application_data, b"hello " * 20),
        (ContentType.ack, bytes(18)),
        (ContentType.alert, b"\x01\x00"),
    ]
    for selector in range(0, 256, 7):
        suite = fuzz_record.SUITES[(selector & 0x07) % len(fuzz_record.SUITES)]
        form = selector >> 6
        with_cid = form in (1, 3) or (form == 2 and selector & 1)
        for seq_bits, omit in ((16, False), (8, True)):
            writer = RecordLayer(
                pools,
                seq_bits=seq_bits,
                omit_last_length=omit,
                write_cid=fuzz_record.CID if with_cid else None,
                padding=16 if selector & 0x10 else 0,
            )
            epochs = (1, 2, 3, 4) if selector & 0x20 else (1, 2, 3)
            for epoch in epochs:
                writer.install_write_epoch(epoch, suite, fuzz_record.secret(suite, epoch))
            w = writer.datagram_writer(1400)
            for n, epoch in enumerate((0, *epochs)):
                ctype, payload = payloads[n % len(payloads)]
                if epoch == 0 and ctype == ContentType.application_data:
                    ctype = ContentType.handshake
                w.add(epoch, ctype, payload, last=epoch == epochs[-1])
            for lease in w.finish():
                seeds.append(bytes([selector]) + bytes(lease))
                lease.release()
            writer.close()
    for rec in recordings:  # real first flights: plaintext records, CIDs, fragments
        for d in (*rec.to_server[:2], *rec.to_client[:2]):
            seeds.append(bytes([0x40 if rec.scenario.name == "cid" else 0]) + d.data)
    return seeds


# -- connections and the endpoint -------------------------------------------------------------


def connection_seeds(recordings: list[fuzz_common.Recording], side: str) -> list[bytes]:
    seeds = []
    for i, rec in enumerate(recordings):
        if side == "server":
            rest = rec.to_server[rec.server_prefix :]
        else:
            rest = rec.to_client[rec.client_prefix :]
        chunks = [(0, d.data) for d in rest]
        seeds.append(bytes([i]) + fuzz_common.join_chunks(chunks))
        # The same with a retransmission timer run in between and a duplicate.
        if chunks:
            seeds.append(bytes([i]) + fuzz_common.join_chunks([chunks[0], (0x8A, b""), *chunks]))
        # With no prefix (selector bit 7): everything the side received, hellos included.
        received = rec.to_server if side == "server" else rec.to_client
        seeds.append(bytes([0x80 | i]) + fuzz_common.join_chunks([(0, d.data) for d in received]))
    return seeds + sealed_seeds(seeds, side)


def sealed_seeds(seeds: list[bytes], side: str) -> list[bytes]:
    """`seeds` again with each record the harness's connection reads as a sealed chunk of
    its epoch and content type (the harness seals it itself: such seeds hold in any
    process, whatever the keys; epoch 0: a plaintext record), and each such record
    alone."""
    run = fuzz_connection.server_input if side == "server" else fuzz_connection.client_input
    learnt: list[tuple[list[tuple[int, Any, bytes]], int]] = []

    class Learner(fuzz_connection.Sealer):
        def close(self) -> None:
            cid = self.conn.local_cids[0] if self.conn.cid_negotiated else b""
            learnt.append((list(self.keys), len(cid)))
            super().close()

    pools = PoolSet()
    out = []
    original, fuzz_connection.Sealer = fuzz_connection.Sealer, Learner  # type: ignore[misc]
    try:
        for seed in seeds:
            learnt.clear()
            run(seed)
            keys, cid_length = learnt[0]
            reader = RecordLayer(pools, read_cid_length=cid_length)
            for epoch, suite, secret in keys:
                reader.install_read_epoch(epoch, suite, secret, fuzz_common.START)
            chunks = []
            for tag, payload in fuzz_common.split_chunks(seed[1:]):
                if tag & 0x80:
                    chunks.append((tag, payload))
                    continue
                for r in reader.receive_datagram_untrusted(payload, fuzz_common.START):
                    if r.content_type in fuzz_connection.SEALED_TYPES:
                        t = fuzz_connection.SEALED_TYPES.index(r.content_type)
                        chunks.append((0x40 | (r.epoch & 0x0F) << 2 | t, r.tobytes()))
                    r.release()
            reader.close()
            sealed = [c for c in chunks if c[0] < 0x80]
            if any(c[0] & 0x3C for c in sealed):  # none protected: other keys (ML-KEM)
                out.append(seed[:1] + fuzz_common.join_chunks(chunks))
                out += [seed[:1] + fuzz_common.join_chunks([c]) for c in sealed]
    finally:
        fuzz_connection.Sealer = original  # type: ignore[misc]
    return out


def endpoint_seeds() -> list[bytes]:
    seeds = []
    for index in (0, 1, 2, 4, 5, 7, 8):
        for policy in (0, 1):  # under_load, always
            selector = index | policy << 5
            cfg = fuzz_endpoint.configs(index)
            cfg.reset()
            ep = fuzz_endpoint.endpoint(selector)
            pools = fuzz_endpoint.POOLS
            sources = (0, 3)
            clients = {}
            for s in sources:
                c = Connection(cfg.client, pools=pools, wall_clock=lambda: fuzz_common.CLOCK)
                clients[fuzz_endpoint.SOURCES[s]] = c
            for c in clients.values():
                c.connect(fuzz_common.SERVER_ADDR, fuzz_common.START)
            log: list[fuzz_common.Delivery] = []
            ends: dict[Any, Any] = {**clients, fuzz_common.SERVER_ADDR: ep}
            now = fuzz_common.run(
                ends,
                lambda clients=clients: all(c.handshake_complete for c in clients.values()),
                fuzz_common.START,
                log,
                flush=False,  # the clients' Finished, sent as they complete, is delivered
            )
            for c in clients.values():
                c.send(b"data from a client")
                c.close()
            fuzz_common.run(ends, lambda: False, now, log, max_time=1.0)
            ep.close()
            fuzz_common.drain(ep, now)
            ep.release()
            chunks = [
                (fuzz_endpoint.SOURCES.index(d.src), d.data)
                for d in log
                if d.dst == fuzz_common.SERVER_ADDR
            ]
            seeds.append(bytes([selector]) + fuzz_common.join_chunks(chunks))
    return seeds


def main() -> None:
    recordings = [fuzz_common.record(i) for i in range(len(fuzz_common.SCENARIOS))]
    write("codecs", codec_seeds())
    write("record", record_seeds(recordings))
    write("server", connection_seeds(recordings, "server"))
    write("client", connection_seeds(recordings, "client"))
    write("endpoint", endpoint_seeds())
    total = sum(p.stat().st_size for p in fuzz_common.CORPUS.rglob("*") if p.is_file())
    print(f"total: {total} bytes")


if __name__ == "__main__":
    with fuzz_common.pinned_key_shares():
        main()
