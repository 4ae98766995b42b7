# cython: language_level=3, boundscheck=False, wraparound=False
"""Batched datagram I/O for the trio adapter: recvmmsg / sendmmsg and UDP GSO on Linux.

`HAVE_MMSG` says whether this build has them (decided by the C preprocessor when the
extension is compiled); without them (macOS, the BSDs) `BatchSocket` cannot be made and the
adapter keeps its plain ``recvfrom_into`` / ``sendto`` loop.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from os import strerror

from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcmp, memcpy, memset, strchr

cdef extern from * nogil:
    """
    #include <errno.h>
    #include <string.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <sys/mman.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>
    #include <netdb.h>
    #ifndef MAP_NORESERVE
    #define MAP_NORESERVE 0
    #endif
    #ifndef MAP_ANONYMOUS
    #define MAP_ANONYMOUS MAP_ANON
    #endif
    #if defined(__linux__)
    #include <netinet/udp.h>
    #define DTLS13_HAVE_MMSG 1
    #ifndef UDP_SEGMENT
    #define UDP_SEGMENT 103
    #endif
    #define DTLS13_SOL_UDP IPPROTO_UDP
    #define DTLS13_CMSG_SPACE_U16 CMSG_SPACE(sizeof(uint16_t))
    static void dtls13_set_segment(struct msghdr *m, char *control, uint16_t size) {
        struct cmsghdr *c;
        m->msg_control = control;
        m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        c = CMSG_FIRSTHDR(m);
        c->cmsg_level = IPPROTO_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(c), &size, sizeof(size));
    }
    #else
    /* No recvmmsg/sendmmsg: the module still builds; BatchSocket refuses to be made. */
    #define DTLS13_HAVE_MMSG 0
    #define UDP_SEGMENT 0
    #define DTLS13_SOL_UDP 0
    #define DTLS13_CMSG_SPACE_U16 32
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
    static int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int f, struct timespec *t)
    { (void)fd; (void)v; (void)n; (void)f; (void)t; errno = ENOSYS; return -1; }
    static int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int f)
    { (void)fd; (void)v; (void)n; (void)f; errno = ENOSYS; return -1; }
    static void dtls13_set_segment(struct msghdr *m, char *control, uint16_t size)
    { (void)m; (void)control; (void)size; }
    #endif
    """
    int DTLS13_HAVE_MMSG
    int UDP_SEGMENT
    int DTLS13_SOL_UDP
    int DTLS13_CMSG_SPACE_U16

    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    ctypedef unsigned short uint16_t
    ctypedef unsigned int uint32_t

    struct sockaddr:
        sa_family_t sa_family

    struct sockaddr_storage:
        sa_family_t ss_family

    struct in_addr:
        pass

    struct in6_addr:
        pass

    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr

    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id

    struct iovec:
        void *iov_base
        size_t iov_len

    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    struct timespec:
        pass

    int recvmmsg(int fd, mmsghdr *vec, unsigned int n, int flags, timespec *timeout)
    int sendmmsg(int fd, mmsghdr *vec, unsigned int n, int flags)
    void dtls13_set_segment(msghdr *m, char *control, uint16_t size)
    int getsockopt(int fd, int level, int name, void *value, socklen_t *length)
    int inet_pton(int af, const char *src, void *dst)
    int getnameinfo(const sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                    char *serv, socklen_t servlen, int flags)
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE
    int AF_INET, AF_INET6, MSG_DONTWAIT, MSG_TRUNC, NI_NUMERICHOST, NI_MAXHOST
    int EAGAIN, EWOULDBLOCK, EINTR, errno

HAVE_MMSG: bool = bool(DTLS13_HAVE_MMSG)

# What `send` reports besides an errno: the item at the count needs the plain sendto
# (an address this module does not parse: a host name, an IPv4 literal on an IPv6 socket).
NEEDS_SENDTO = -2

# Linux caps a GSO send at 64 segments (UDP_MAX_SEGMENTS) and one IP datagram's payload.
cdef int _GSO_MAX_SEGMENTS = 64
cdef Py_ssize_t _GSO_MAX_BYTES = 65000


cdef class BatchSocket:
    """recvmmsg into caller-supplied leases and sendmmsg of (lease, address) items on one
    non-blocking UDP descriptor (not owned: the caller closes it).

    Each receive slot is a lease (one datagram's worth) followed by one of
    `overflow_slots` shared overflow areas of `max_datagram - slot` bytes (slot i uses area
    i mod overflow_slots; anonymous memory, touched only by a datagram longer than its
    lease; see `copy_overflow`). Two long datagrams of one receive on the same area leave
    the earlier one's tail overwritten: `lost(i)` says so, as it does for a datagram
    longer than `max_datagram` (cut by the kernel, MSG_TRUNC). A receive of at most
    `overflow_slots` datagrams never loses one."""

    cdef int _fd
    cdef int _family
    cdef unsigned int _cap
    cdef mmsghdr *_msgs
    cdef iovec *_iovs
    cdef sockaddr_storage *_names
    cdef Py_buffer *_bufs
    cdef char *_control
    cdef char *_overflow
    cdef size_t _overflow_size
    cdef size_t _overflow_map
    cdef unsigned int _overflow_slots
    cdef char *_lost
    cdef char *_claimed
    cdef char *_scratch
    cdef Py_ssize_t _scratch_size
    cdef int *_items_per_msg
    cdef sockaddr_storage _last_in
    cdef socklen_t _last_in_len
    cdef object _last_in_addr
    cdef object _last_out_addr
    cdef sockaddr_storage _last_out
    cdef socklen_t _last_out_len
    cdef public bint gso
    cdef readonly Py_ssize_t slot_size

    def __cinit__(self, int fd, int family, int batch, Py_ssize_t slot_size,
                  Py_ssize_t max_datagram, bint gso=True, int overflow_slots=1):
        self._msgs = NULL
        self._overflow = NULL
        self._lost = NULL
        self._claimed = NULL
        if not DTLS13_HAVE_MMSG:
            raise OSError("recvmmsg/sendmmsg are not available on this platform")
        if family != AF_INET and family != AF_INET6:
            raise ValueError("an AF_INET or AF_INET6 socket is needed")
        if batch < 1 or slot_size < 1 or max_datagram < slot_size or overflow_slots < 1:
            raise ValueError("batch, slot_size and overflow_slots must be positive, "
                             "max_datagram >= slot_size")
        self._fd = fd
        self._family = family
        self._cap = batch
        self.slot_size = slot_size
        self._msgs = <mmsghdr *>calloc(batch, sizeof(mmsghdr))
        self._iovs = <iovec *>calloc(2 * batch, sizeof(iovec))
        self._names = <sockaddr_storage *>calloc(batch, sizeof(sockaddr_storage))
        self._bufs = <Py_buffer *>calloc(batch, sizeof(Py_buffer))
        self._control = <char *>calloc(batch, DTLS13_CMSG_SPACE_U16)
        self._items_per_msg = <int *>calloc(batch, sizeof(int))
        self._overflow_slots = <unsigned int>min(overflow_slots, batch)
        self._lost = <char *>calloc(batch, 1)
        self._claimed = <char *>calloc(self._overflow_slots, 1)
        if (self._msgs == NULL or self._iovs == NULL or self._names == NULL
                or self._bufs == NULL or self._control == NULL or self._items_per_msg == NULL
                or self._lost == NULL or self._claimed == NULL):
            raise MemoryError()
        self._overflow_size = <size_t>(max_datagram - slot_size)
        self._overflow_map = 0
        if self._overflow_size:
            # Address space only: the kernel backs a page once a long datagram lands on it.
            self._overflow_map = self._overflow_size * self._overflow_slots
            p = mmap(NULL, self._overflow_map, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if p == MAP_FAILED:
                raise MemoryError()
            self._overflow = <char *>p
        self._scratch = NULL
        self._scratch_size = 0
        self._last_in_len = 0
        self._last_out_len = 0
        self._last_in_addr = None
        self._last_out_addr = None
        cdef int value = 0
        cdef socklen_t vlen = sizeof(int)
        # UDP_SEGMENT readable: the kernel (4.18+) can segment one send into datagrams.
        self.gso = gso and getsockopt(fd, DTLS13_SOL_UDP, UDP_SEGMENT, &value, &vlen) == 0

    def __dealloc__(self):
        free(self._msgs)
        free(self._iovs)
        free(self._names)
        free(self._bufs)
        free(self._control)
        free(self._items_per_msg)
        free(self._lost)
        free(self._claimed)
        free(self._scratch)
        if self._overflow != NULL:
            munmap(self._overflow, self._overflow_map)

    @property
    def batch(self) -> int:
        return self._cap

    @property
    def overflow_slots(self) -> int:
        """Overflow areas: a receive of at most this many datagrams keeps every one whole."""
        return self._overflow_slots

    @property
    def overflow_reserved(self) -> int:
        """Bytes of address space reserved for long datagrams' tails (backed only once used)."""
        return self._overflow_map

    def recv(self, list leases):
        """Receive up to len(leases) datagrams with one recvmmsg: a list of (length,
        address), in order; empty when nothing is waiting. Raises OSError (e.g.
        ConnectionRefusedError for an ICMP report) when nothing was received."""
        cdef Py_ssize_t n = min(len(leases), <Py_ssize_t>self._cap)
        cdef Py_ssize_t i, k
        cdef int r = 0, err = 0
        cdef mmsghdr *m
        for i in range(n):
            try:
                PyObject_GetBuffer(leases[i], &self._bufs[i], PyBUF_WRITABLE)
            except BaseException:
                for k in range(i):
                    PyBuffer_Release(&self._bufs[k])
                raise
            m = &self._msgs[i]
            self._iovs[2 * i].iov_base = self._bufs[i].buf
            self._iovs[2 * i].iov_len = <size_t>self._bufs[i].len
            m.msg_hdr.msg_iov = &self._iovs[2 * i]
            if self._overflow_size and self._bufs[i].len == self.slot_size:
                self._iovs[2 * i + 1].iov_base = (
                    self._overflow + (i % self._overflow_slots) * self._overflow_size)
                self._iovs[2 * i + 1].iov_len = self._overflow_size
                m.msg_hdr.msg_iovlen = 2
            else:
                m.msg_hdr.msg_iovlen = 1
            m.msg_hdr.msg_name = &self._names[i]
            m.msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            m.msg_hdr.msg_control = NULL
            m.msg_hdr.msg_controllen = 0
            m.msg_hdr.msg_flags = 0
            m.msg_len = 0
        with nogil:
            while True:
                r = recvmmsg(self._fd, self._msgs, <unsigned int>n, MSG_DONTWAIT, NULL)
                if r >= 0 or errno != EINTR:
                    break
            if r < 0:
                err = errno
        for i in range(n):
            PyBuffer_Release(&self._bufs[i])
        if r < 0:
            if err == EAGAIN or err == EWOULDBLOCK:
                return []
            raise OSError(err, strerror(err))  # the errno's subclass, as socket calls raise
        # Which long datagrams kept their tail: the last one on each area, walking back.
        cdef unsigned int area
        memset(self._claimed, 0, self._overflow_slots)
        for i in range(r - 1, -1, -1):
            m = &self._msgs[i]
            self._lost[i] = (m.msg_hdr.msg_flags & MSG_TRUNC) != 0
            if m.msg_hdr.msg_iovlen == 2 and <Py_ssize_t>m.msg_len > self.slot_size:
                area = <unsigned int>(i % self._overflow_slots)
                if self._claimed[area]:
                    self._lost[i] = 1
                self._claimed[area] = 1
        out = []
        for i in range(r):
            out.append((<Py_ssize_t>self._msgs[i].msg_len, self._address(i)))
        return out

    def lost(self, Py_ssize_t i) -> bool:
        """Whether datagram `i` of the last receive is not whole: longer than its slot and
        overflow (the kernel cut it), or its tail overwritten by a later long datagram that
        shared its overflow area. The caller drops it and counts it."""
        if i < 0 or i >= self._cap:
            raise IndexError(i)
        return bool(self._lost[i])

    def truncated(self, Py_ssize_t i) -> bool:
        """Whether datagram `i` of the last receive was longer than its slot and overflow."""
        return bool(self._msgs[i].msg_hdr.msg_flags & MSG_TRUNC)

    def copy_overflow(self, Py_ssize_t i, object dest):
        """Copy the bytes of datagram `i` (last receive) past its lease's slot into
        `dest` at offset `slot_size`; `dest` must be at least as long as the datagram."""
        if i < 0 or i >= self._cap:
            raise IndexError(i)
        cdef Py_ssize_t length = self._msgs[i].msg_len
        cdef Py_ssize_t extra = length - self.slot_size
        cdef Py_buffer view
        if extra <= 0:
            return
        if self._lost[i]:
            raise ValueError("datagram %d is not whole (see lost())" % i)
        PyObject_GetBuffer(dest, &view, PyBUF_WRITABLE)
        try:
            if view.len < length:
                raise ValueError("destination shorter than the datagram")
            memcpy(<char *>view.buf + self.slot_size,
                   self._overflow + (i % self._overflow_slots) * self._overflow_size,
                   <size_t>extra)
        finally:
            PyBuffer_Release(&view)

    cdef object _address(self, Py_ssize_t i):
        cdef sockaddr_storage *sa = &self._names[i]
        cdef socklen_t length = self._msgs[i].msg_hdr.msg_namelen
        cdef char host[64]
        cdef sockaddr_in6 *s6
        if length == self._last_in_len and memcmp(sa, &self._last_in, length) == 0:
            return self._last_in_addr
        # numeric getnameinfo, as CPython's recvfrom (a link-local IPv6 host gets %scope)
        if getnameinfo(<sockaddr *>sa, length, host, sizeof(host), NULL, 0, NI_NUMERICHOST):
            return None
        if sa.ss_family == AF_INET:
            addr = (host.decode("ascii"), ntohs((<sockaddr_in *>sa).sin_port))
        elif sa.ss_family == AF_INET6:
            s6 = <sockaddr_in6 *>sa
            addr = (host.decode("ascii"), ntohs(s6.sin6_port), ntohl(s6.sin6_flowinfo),
                    s6.sin6_scope_id)
        else:
            return None
        memcpy(&self._last_in, sa, length)
        self._last_in_len = length
        self._last_in_addr = addr
        return addr

    cdef socklen_t _sockaddr(self, object addr, sockaddr_storage *out) except? 0:
        """Fill `out` from an (IP literal, port[, flowinfo, scope_id]) tuple of this
        socket's family; 0 when it is not one (the caller falls back to sendto)."""
        cdef sockaddr_in *s4
        cdef sockaddr_in6 *s6
        cdef bytes host
        cdef char *h
        if addr is self._last_out_addr:
            memcpy(out, &self._last_out, self._last_out_len)
            return self._last_out_len
        if type(addr) is not tuple or len(addr) < 2 or type(addr[0]) is not str:
            return 0
        try:
            port = int(addr[1])
        except (TypeError, ValueError):
            return 0
        if port < 0 or port > 65535:
            return 0
        host = (<str>addr[0]).encode("ascii", "replace")
        h = host
        memset(out, 0, sizeof(sockaddr_storage))
        cdef socklen_t length
        if self._family == AF_INET:
            s4 = <sockaddr_in *>out
            if inet_pton(AF_INET, h, &s4.sin_addr) != 1:
                return 0
            s4.sin_family = AF_INET
            s4.sin_port = htons(<uint16_t>port)
            length = sizeof(sockaddr_in)
        else:
            s6 = <sockaddr_in6 *>out
            if strchr(h, b'%') != NULL or inet_pton(AF_INET6, h, &s6.sin6_addr) != 1:
                return 0  # scoped or not an IPv6 literal: sendto resolves it
            s6.sin6_family = AF_INET6
            s6.sin6_port = htons(<uint16_t>port)
            if len(addr) >= 4:
                try:
                    s6.sin6_flowinfo = htonl(<uint32_t>int(addr[2]))
                    s6.sin6_scope_id = <uint32_t>int(addr[3])
                except (TypeError, ValueError, OverflowError):
                    return 0
            length = sizeof(sockaddr_in6)
        memcpy(&self._last_out, out, length)
        self._last_out_len = length
        self._last_out_addr = addr
        return length

    def send(self, list items, bint connected):
        """Send the first up to `batch` (lease, address) items with one sendmmsg, runs of
        equal-size datagrams to one address as one UDP GSO message where the kernel has
        it. Returns (items sent, errno or 0 or NEEDS_SENDTO) for the item at that count
        (the caller handles it and calls again for the rest)."""
        cdef Py_ssize_t n = min(len(items), <Py_ssize_t>self._cap)
        cdef Py_ssize_t i, j, k, parsed = n, nmsg = 0, sent_items = 0, seg, total
        cdef socklen_t namelen = 0
        cdef int r = 0, err = 0, status = 0
        cdef mmsghdr *m
        cdef char *p
        for i in range(n):
            item = items[i]
            if not connected:
                namelen = self._sockaddr((<tuple>item)[1], &self._names[i])
                if namelen == 0:
                    parsed = i
                    status = NEEDS_SENDTO
                    break
                self._msgs[i].msg_len = namelen  # kept here until the messages are built
            try:
                PyObject_GetBuffer((<tuple>item)[0], &self._bufs[i], PyBUF_SIMPLE)
            except BaseException:
                for k in range(i):
                    PyBuffer_Release(&self._bufs[k])
                raise
        n = parsed
        # Build the messages: a run of equal lengths to one address (the last may be
        # shorter) is one GSO message when there is more than one of them.
        i = 0
        cdef Py_ssize_t scratch_used = 0
        if self.gso and n > 1:
            self._ensure_scratch(n)
        while i < n:
            k = i + 1
            seg = self._bufs[i].len
            if self.gso and n > 1 and seg > 0:
                total = seg
                while (k < n and k - i < _GSO_MAX_SEGMENTS and self._bufs[k].len <= seg
                       and total + self._bufs[k].len <= _GSO_MAX_BYTES
                       and (connected or (self._msgs[k].msg_len == self._msgs[i].msg_len
                            and memcmp(&self._names[k], &self._names[i],
                                       self._msgs[i].msg_len) == 0))):
                    total += self._bufs[k].len
                    k += 1
                    if self._bufs[k - 1].len < seg:
                        break  # only the last segment may be shorter
            m = &self._msgs[nmsg]
            namelen = self._msgs[i].msg_len
            if k - i > 1:
                p = self._scratch + scratch_used
                for j in range(i, k):
                    memcpy(p, self._bufs[j].buf, <size_t>self._bufs[j].len)
                    p += self._bufs[j].len
                self._iovs[nmsg].iov_base = self._scratch + scratch_used
                self._iovs[nmsg].iov_len = <size_t>(p - (self._scratch + scratch_used))
                scratch_used += p - (self._scratch + scratch_used)
                dtls13_set_segment(&m.msg_hdr, self._control + nmsg * DTLS13_CMSG_SPACE_U16,
                                   <uint16_t>seg)
            else:
                self._iovs[nmsg].iov_base = self._bufs[i].buf
                self._iovs[nmsg].iov_len = <size_t>self._bufs[i].len
                m.msg_hdr.msg_control = NULL
                m.msg_hdr.msg_controllen = 0
            if nmsg != i and not connected:
                memcpy(&self._names[nmsg], &self._names[i], namelen)
            m.msg_hdr.msg_name = NULL if connected else <void *>&self._names[nmsg]
            m.msg_hdr.msg_namelen = 0 if connected else namelen
            m.msg_hdr.msg_iov = &self._iovs[nmsg]
            m.msg_hdr.msg_iovlen = 1
            m.msg_hdr.msg_flags = 0
            self._items_per_msg[nmsg] = <int>(k - i)
            nmsg += 1
            i = k
        # Message headers are written in place over the items' slots: the names of a
        # later item are read before its slot is reused (nmsg <= i at every step).
        if nmsg:
            with nogil:
                while True:
                    r = sendmmsg(self._fd, self._msgs, <unsigned int>nmsg, MSG_DONTWAIT)
                    if r >= 0 or errno != EINTR:
                        break
                if r < 0:
                    err = errno
        for i in range(n):
            PyBuffer_Release(&self._bufs[i])
        if r < 0:
            if self._items_per_msg[0] > 1 and err != EAGAIN and err != EWOULDBLOCK:
                # The kernel refused segmentation (no checksum offload, a route's MTU):
                # send datagram by datagram from now on; the caller calls again.
                self.gso = False
                return 0, 0
            return 0, err
        for i in range(r):
            sent_items += self._items_per_msg[i]
        if sent_items == n and status:
            return sent_items, status
        return sent_items, 0

    cdef int _ensure_scratch(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = 0
        for i in range(n):
            need += self._bufs[i].len
        if need > self._scratch_size:
            p = <char *>realloc(self._scratch, need)
            if p == NULL:
                raise MemoryError()
            self._scratch = p
            self._scratch_size = need
        return 0
