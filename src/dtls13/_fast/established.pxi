# The established data path (included by datagram.pyx): one application record alone in its
# datagram, read or written in one call, with the state changes of the general path
# (read_datagram_untrusted / DatagramWriter). RecordLayer.receive_app_untrusted and
# RecordLayer.seal_app_datagram call these; tests drive both paths with the same input.

from cpython.bytes cimport PyBytes_FromStringAndSize


def open_app_datagram_untrusted(data, Py_ssize_t cid_length, ReadEpoch read_newest,
                                tuple read_older, acquire, owner, layer, dict content_types):
    """Read a datagram that is exactly one protected record of a live epoch >= 3.

    None when it is anything else: nothing was done (use read_datagram_untrusted). Else
    what read_datagram_untrusted would have done to the record, with its drops counted
    alike, returning ``(data, epoch, sequence number)`` for application data (its bytes,
    the plaintext lease already released) and otherwise the list read_datagram_untrusted
    returns: ``[]`` after a drop, one InboundRecord for any other content type or an
    oversized payload. Never raises for anything in `data`.
    """
    cdef Py_buffer v
    cdef const uint8_t *p
    cdef _Header h
    cdef ReadEpoch st
    cdef Lease lease
    cdef uint64_t seq = 0
    cdef int ctype = 0
    cdef Py_ssize_t index
    try:
        _get_read(data, &v)
    except (TypeError, BufferError):
        return None
    try:
        p = <const uint8_t *>v.buf
        if v.len == 0 or (p[0] & 0xE0) != 0x20:
            return None
        if _parse_header(p, v.len, 0, cid_length, &h) or h.header_length + h.length != v.len:
            return None
        st = _with_bits(read_newest, read_older, h.epoch)
        if st is None or st.epoch < 3:
            return None
        # From here on, read_datagram_untrusted's steps for one record of a live epoch.
        if h.length < _MASK_SAMPLE:
            _count(layer, "too_short")
            return []
        if st.failures >= st.limit:
            _count(layer, "integrity_limit")
            return []
        try:
            lease = acquire(h.length - st.cipher.tag_length, owner)
        except MemoryBudgetExceeded:
            _count(layer, "budget")
            return []
        try:
            index = st.cipher._open(p, h.header_length, h.length, st.window, lease, &seq,
                                    &ctype)
        except BaseException:
            lease.release()
            raise
        if index < 0:
            lease.release()
            if index == OPEN_AUTH_FAILED:
                st.failures += 1
                _count(layer, "auth_failed")
            elif index == OPEN_REPLAY:
                _count(layer, "replay")
            else:
                _count(layer, "bad_content_type")
            return []
        if ctype == 23 and index <= _MAX_PLAINTEXT:
            try:
                out = PyBytes_FromStringAndSize(<const char *>lease._ptr, index)
            finally:
                lease.release()
            return (out, st.epoch, seq)
        lease._length = index
        return [_inbound(st.epoch, seq, content_types[ctype], lease)]
    finally:
        PyBuffer_Release(&v)


def seal_app_datagram(layer, acquire, owner, Py_ssize_t mtu, int seq_bits, cid,
                      Py_ssize_t padding, error, payload):
    """One application data record of the layer's newest write epoch (with its length
    field) alone in a new datagram lease of at most `mtu` bytes, as DatagramWriter.space +
    add + finish would make it. Returns the lease (the caller sends and releases it), or
    the largest payload that fits (an int) when `payload` does not; raises `error` as
    DatagramWriter does."""
    cdef DatagramWriter w = DatagramWriter(layer, acquire, owner, mtu, seq_bits, cid, False,
                                           padding, error)
    cdef Py_buffer pl
    cdef WriteEpoch st = <WriteEpoch?>layer._write_now
    cdef Py_ssize_t space = w._space(st, False)
    _get_read(payload, &pl)
    try:
        if pl.len > space:
            return space
    finally:
        PyBuffer_Release(&pl)
    try:
        w._add(st, 23, payload, False)
        out = w.finish()
    except BaseException:
        w.abort()
        raise
    return out[0]
