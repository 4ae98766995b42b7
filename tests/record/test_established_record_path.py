"""The established data path's record calls (`RecordLayer.receive_app_untrusted`,
`seal_app_datagram`) against the general ones (`receive_datagram_untrusted`,
`datagram_writer`): the same datagrams give the same records, drops, replay state and
counters, whichever path reads or writes them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls13.alerts import LocalProtocolError
from dtls13.crypto.suites import CipherSuite
from dtls13.memory import PoolSet
from dtls13.record import ContentType, RecordLayer
from tests.record.test_record_layer import secret_for, send, take

APP = int(ContentType.application_data)


def readers(pools: PoolSet, suite: CipherSuite, **kw: Any) -> tuple[RecordLayer, RecordLayer]:
    """Two receivers with the same read epochs 2 and 3 (and options)."""
    out = []
    for _ in range(2):
        layer = RecordLayer(pools, **kw)
        layer.install_read_epoch(2, suite, secret_for(suite, 2), 0.0)
        layer.install_read_epoch(3, suite, secret_for(suite, 3), 0.0)
        out.append(layer)
    return out[0], out[1]


def read_general(layer: RecordLayer, data: bytes, now: float) -> list[Any]:
    return take(layer.receive_datagram_untrusted(data, now))


def read_established(layer: RecordLayer, data: bytes, now: float) -> list[Any]:
    got = layer.receive_app_untrusted(data, now)
    if got is None:
        return take(layer.receive_datagram_untrusted(data, now))
    if type(got) is tuple:
        payload, epoch, seq = got
        return [(epoch, seq, APP, payload)]
    return take(got)


def state(layer: RecordLayer) -> dict[str, Any]:
    figures = layer.statistics()
    figures["newest_used"] = layer._newest_used
    figures["windows"] = {s.epoch: (s.window.highest, s.failures) for s in layer._read_states()}
    return figures


# One step of the peer's traffic: (what, epoch, payload size).
STEP = st.tuples(
    st.sampled_from(
        ["app", "app", "app", "ack", "alert", "handshake", "two", "replay", "corrupt", "cut"]
    ),
    st.sampled_from([2, 3, 3, 3]),
    st.integers(0, 300),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suite=st.sampled_from(list(CipherSuite)),
    form=st.sampled_from([(8, b""), (16, b""), (16, b"\x01\x02\x03\x04")]),
    steps=st.lists(STEP, max_size=25),
    limit=st.sampled_from([None, 3]),
)
def test_both_read_paths_agree_on_every_datagram(
    suite: CipherSuite, form: tuple[int, bytes], steps: list[Any], limit: int | None
) -> None:
    pools = PoolSet()
    seq_bits, cid = form
    writer = RecordLayer(pools, seq_bits=seq_bits, write_cid=cid)
    writer.install_write_epoch(2, suite, secret_for(suite, 2))
    writer.install_write_epoch(3, suite, secret_for(suite, 3))
    general, established = readers(pools, suite, read_cid_length=len(cid), integrity_limit=limit)
    sent: list[bytes] = []
    now = 0.0
    for what, epoch, size in steps:
        now += 0.5
        payload = bytes(i % 251 for i in range(size))
        if what == "app":
            datagrams = send(writer, [(epoch, APP, payload)])
        elif what in ("ack", "alert", "handshake"):
            ctype = {"ack": 26, "alert": 21, "handshake": 22}[what]
            datagrams = send(writer, [(epoch, ctype, payload[:40])])
        elif what == "two":
            datagrams = send(writer, [(epoch, APP, payload[:100]), (3, APP, b"second")])
        elif what == "replay" and sent:
            datagrams = [sent[size % len(sent)]]
        elif what == "corrupt" and sent:
            d = bytearray(sent[size % len(sent)])
            d[size % len(d)] ^= 0x40
            datagrams = [bytes(d)]
        elif what == "cut" and sent:
            d = sent[size % len(sent)]
            datagrams = [d[: size % len(d)]]
        else:
            continue
        for d in datagrams:
            if d:  # an empty cut is read too, but never picked again to cut or corrupt
                sent.append(d)
            assert read_established(established, d, now) == read_general(general, d, now)
            assert state(established) == state(general)
    assert pools.in_use == 0


@pytest.mark.parametrize("suite", list(CipherSuite), ids=lambda s: s.name)
@pytest.mark.parametrize("form", [(8, b"", 0), (16, b"\x07" * 3, 0), (16, b"", 64)], ids=str)
def test_sealing_one_app_record_writes_what_the_datagram_writer_writes(
    suite: CipherSuite, form: tuple[int, bytes, int]
) -> None:
    pools = PoolSet()
    seq_bits, cid, padding = form
    layers = []
    for _ in range(2):
        layer = RecordLayer(pools, seq_bits=seq_bits, write_cid=cid, padding=padding)
        layer.install_write_epoch(3, suite, secret_for(suite, 3))
        layers.append(layer)
    general, established = layers
    for size in (0, 1, 64, 900, 1300):
        payload = bytes(range(256)) * 6
        payload = payload[:size]
        w = general.datagram_writer(1200)
        space = w.space(3)
        sealed = established.seal_app_datagram(payload, 1200)
        if size > space:
            w.abort()
            assert sealed == space
            continue
        w.add(3, APP, payload)
        (lease,) = w.finish()
        assert not isinstance(sealed, int)
        assert sealed.tobytes() == lease.tobytes()
        lease.release()
        sealed.release()
        assert established.statistics() == general.statistics()
        assert established.records_protected(3) == general.records_protected(3)
    established.close()
    with pytest.raises(LocalProtocolError):
        established.seal_app_datagram(b"closed", 1200)
    assert pools.in_use == 0


def test_the_established_path_takes_only_a_lone_record_of_a_live_epoch_from_three() -> None:
    pools = PoolSet()
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    writer = RecordLayer(pools)
    writer.install_write_epoch(2, suite, secret_for(suite, 2))
    writer.install_write_epoch(3, suite, secret_for(suite, 3))
    _, reader = readers(pools, suite)
    (app,) = send(writer, [(3, APP, b"hello")])
    got = reader.receive_app_untrusted(app, 1.0)
    assert got == (b"hello", 3, 0)
    assert reader.receive_app_untrusted(app, 1.0) == []  # a replay: dropped and counted
    assert reader.drops["replay"] == 1
    (ack,) = send(writer, [(3, 26, b"\x00\x00")])
    records = reader.receive_app_untrusted(ack, 1.0)
    assert isinstance(records, list)
    assert take(records) == [(3, 1, 26, b"\x00\x00")]
    declined = [
        send(writer, [(2, APP, b"epoch two")])[0],
        send(writer, [(3, APP, b"one"), (3, APP, b"two")])[0],
        app[:-1],
        b"",
        b"\x16\xfe\xfd" + bytes(20),
    ]
    for d in declined:
        before = reader.statistics()
        assert reader.receive_app_untrusted(d, 1.0) is None
        assert reader.statistics() == before
        take(reader.receive_datagram_untrusted(d, 1.0))
    assert pools.in_use == 0
