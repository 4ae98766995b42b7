# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Hot paths of dtls13: slab pools, leases, the wire-format Buffer.

Everything here is compiled; the pure-Python layers above only call it.
See ../shared/DESIGN.md §3 for the memory design.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset

cdef extern from "stdlib.h":
    int posix_memalign(void **memptr, size_t alignment, size_t size) nogil

cdef extern from *:
    """
    #include <string.h>
    /* memset that the optimiser may not drop: the barrier makes the zeroed
       bytes observable. */
    static void dtls13_secure_zero(void *p, size_t n) {
        memset(p, 0, n);
    #if defined(__GNUC__) || defined(__clang__)
        __asm__ __volatile__("" : : "r"(p) : "memory");
    #endif
    }
    """
    void dtls13_secure_zero(void *p, size_t n) nogil


DEF ALIGN = 64
DEF MAX_CLASSES = 32

import traceback as _traceback
import weakref as _weakref

_all_pools = _weakref.WeakSet()


def live_pools():
    """Every SlabPool alive in this process (tests check none is left in use)."""
    return list(_all_pools)


class DecodeError(ValueError):
    """Malformed or truncated wire data."""


class EncodeError(ValueError):
    """A value does not fit the wire format or the writer's capacity."""


class LeaseReleasedError(RuntimeError):
    """A lease was used after it was released."""


class MemoryBudgetExceeded(MemoryError):
    """An acquisition would exceed a byte budget or a pool's arena cap.

    Callers in the record and handshake layers turn this into a drop and a
    counter; it never escapes to the network-facing API.
    """

    def __init__(self, owner, requested, in_use, limit, reason="budget"):
        self.owner = owner
        self.requested = requested
        self.in_use = in_use
        self.limit = limit
        self.reason = reason
        super().__init__(
            f"memory {reason} of {owner} exceeded: {requested} B requested, "
            f"{in_use} B in use, limit {limit} B"
        )


# ---------------------------------------------------------------------------
# Slab pools
# ---------------------------------------------------------------------------

cdef struct Arena:
    char *base
    void *free_head      # intrusive free list through released slots
    Py_ssize_t bump      # slots never handed out yet start here (lazy carving)
    Py_ssize_t in_use


@cython.final
cdef class SlabPool:
    """Fixed-size slots carved out of arenas; O(1) acquire and release."""

    cdef readonly str name
    cdef readonly Py_ssize_t slot_size
    cdef readonly Py_ssize_t slots_per_arena
    cdef readonly Py_ssize_t max_arenas
    cdef public Py_ssize_t min_arenas
    cdef public Py_ssize_t grow_by
    cdef Arena *_arenas
    cdef Py_ssize_t _table_cap
    cdef Py_ssize_t _lowest_free
    cdef readonly Py_ssize_t arenas
    cdef readonly Py_ssize_t in_use
    cdef readonly Py_ssize_t high_water
    cdef readonly Py_ssize_t window_high
    cdef readonly Py_ssize_t acquires
    cdef readonly Py_ssize_t releases
    cdef readonly Py_ssize_t refusals
    cdef readonly Py_ssize_t arenas_added
    cdef readonly Py_ssize_t arenas_freed
    cdef public int class_index
    cdef PoolCore _core
    cdef object __weakref__

    def __cinit__(self, Py_ssize_t slot_size, Py_ssize_t slots_per_arena,
                  Py_ssize_t max_arenas, Py_ssize_t min_arenas=0, str name=""):
        if slot_size < 16:
            raise ValueError("slot_size must be at least 16 bytes")
        if slots_per_arena < 1:
            raise ValueError("slots_per_arena must be at least 1")
        if max_arenas < 1:
            raise ValueError("max_arenas must be at least 1")
        if min_arenas < 0 or min_arenas > max_arenas:
            raise ValueError("min_arenas must be between 0 and max_arenas")
        # Slots are cache-line multiples so every slot is 64-byte aligned.
        self.slot_size = (slot_size + ALIGN - 1) // ALIGN * ALIGN
        self.slots_per_arena = slots_per_arena
        self.max_arenas = max_arenas
        self.min_arenas = min_arenas
        self.grow_by = 1
        self.name = name or f"{self.slot_size}B"
        self.class_index = -1
        self._arenas = NULL
        self._table_cap = 0
        self._lowest_free = 0
        cdef Py_ssize_t i
        for i in range(min_arenas):
            if self._add_arena() < 0:
                raise MemoryError()
        _all_pools.add(self)

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._arenas != NULL:
            for i in range(self._table_cap):
                if self._arenas[i].base != NULL:
                    free(self._arenas[i].base)
            free(self._arenas)
            self._arenas = NULL

    cdef Py_ssize_t _add_arena(self):
        """Allocate one arena in the lowest empty index; -1 when impossible."""
        cdef Py_ssize_t i, newcap
        cdef void *mem = NULL
        cdef Arena *table
        if self.arenas >= self.max_arenas:
            return -1
        if self.arenas == self._table_cap:
            # The arena table grows with use so idle capacity costs nothing.
            newcap = self._table_cap * 2 if self._table_cap else 4
            if newcap > self.max_arenas:
                newcap = self.max_arenas
            table = <Arena *>realloc(self._arenas, sizeof(Arena) * newcap)
            if table == NULL:
                return -1
            memset(table + self._table_cap, 0, sizeof(Arena) * (newcap - self._table_cap))
            self._arenas = table
            self._table_cap = newcap
        for i in range(self._table_cap):
            if self._arenas[i].base == NULL:
                if posix_memalign(&mem, ALIGN, <size_t>(self.slot_size * self.slots_per_arena)) != 0:
                    return -1
                self._arenas[i].base = <char *>mem
                self._arenas[i].free_head = NULL
                self._arenas[i].bump = 0
                self._arenas[i].in_use = 0
                self.arenas += 1
                self.arenas_added += 1
                if i < self._lowest_free:
                    self._lowest_free = i
                return i
        return -1

    cdef char *_take(self, Py_ssize_t *arena_out):
        """Hand out one slot, adding arenas as allowed; NULL when at the cap."""
        cdef Py_ssize_t i = self._lowest_free
        cdef Arena *a
        cdef char *p
        cdef Py_ssize_t n
        # Invariant: every arena below _lowest_free is full or absent.
        while i < self._table_cap:
            a = &self._arenas[i]
            if a.base != NULL and a.in_use < self.slots_per_arena:
                break
            i += 1
        else:
            n = self.grow_by if self.grow_by > 0 else 1
            i = -1
            while n > 0:
                if self._add_arena() < 0:
                    break
                n -= 1
            # _add_arena lowered _lowest_free to the first new arena.
            i = self._lowest_free
            while i < self._table_cap:
                a = &self._arenas[i]
                if a.base != NULL and a.in_use < self.slots_per_arena:
                    break
                i += 1
            else:
                self.refusals += 1
                return NULL
        self._lowest_free = i
        a = &self._arenas[i]
        if a.free_head != NULL:
            p = <char *>a.free_head
            a.free_head = (<void **>p)[0]
            (<void **>p)[0] = NULL      # no allocator pointer leaks into a new lease
        else:
            p = a.base + a.bump * self.slot_size
            a.bump += 1
        a.in_use += 1
        self.in_use += 1
        self.acquires += 1
        if self.in_use > self.high_water:
            self.high_water = self.in_use
        if self.in_use > self.window_high:
            self.window_high = self.in_use
        arena_out[0] = i
        return p

    cdef void _give(self, char *p, Py_ssize_t i, bint secure):
        cdef Arena *a = &self._arenas[i]
        if secure:
            dtls13_secure_zero(p, <size_t>self.slot_size)
        (<void **>p)[0] = a.free_head
        a.free_head = p
        a.in_use -= 1
        self.in_use -= 1
        self.releases += 1
        if i < self._lowest_free:
            self._lowest_free = i

    def acquire(self, Py_ssize_t length=-1, *, bint secure=False):
        """Lend one slot as a Lease of `length` bytes (default: the whole slot)."""
        if length > self.slot_size:
            raise ValueError(f"{length} bytes do not fit a {self.slot_size}-byte slot")
        cdef Py_ssize_t ai
        cdef char *p = self._take(&ai)
        if p == NULL:
            raise MemoryBudgetExceeded(self.name, self.slot_size,
                                       self.in_use * self.slot_size,
                                       self.max_arenas * self.slots_per_arena * self.slot_size,
                                       "pool")
        return _make_lease(self, p, ai, self.slot_size if length < 0 else length, secure, None)

    def trim(self, Py_ssize_t keep_arenas=-1):
        """Give back idle arenas, highest first, keeping at least `keep_arenas`
        (default: min_arenas). Returns the number freed."""
        if keep_arenas < 0:
            keep_arenas = self.min_arenas
        if keep_arenas < self.min_arenas:
            keep_arenas = self.min_arenas
        cdef Py_ssize_t i = self._table_cap - 1
        cdef Py_ssize_t freed = 0
        while i >= 0 and self.arenas > keep_arenas:
            if self._arenas[i].base != NULL and self._arenas[i].in_use == 0:
                free(self._arenas[i].base)
                self._arenas[i].base = NULL
                self._arenas[i].free_head = NULL
                self.arenas -= 1
                self.arenas_freed += 1
                freed += 1
            i -= 1
        return freed

    def reserve(self, Py_ssize_t arenas):
        """Allocate arenas ahead of demand up to `arenas` (capped at max_arenas)."""
        cdef Py_ssize_t added = 0
        while self.arenas < arenas and self.arenas < self.max_arenas:
            if self._add_arena() < 0:
                break
            added += 1
        return added

    def reset_window(self):
        """Start a new demand-observation window; returns the previous high."""
        cdef Py_ssize_t high = self.window_high
        self.window_high = self.in_use
        return high

    @property
    def capacity(self):
        """Slots in the arenas currently allocated."""
        return self.arenas * self.slots_per_arena

    @property
    def arena_bytes(self):
        return self.slot_size * self.slots_per_arena

    @property
    def pooled_bytes(self):
        return self.arenas * self.slots_per_arena * self.slot_size

    @property
    def bookkeeping_bytes(self):
        """Bytes of metadata the pool itself keeps (arena table and object)."""
        return <Py_ssize_t>(sizeof(Arena) * self._table_cap) + type(self).__basicsize__

    def __repr__(self):
        return (f"<SlabPool {self.name} slot={self.slot_size} arenas={self.arenas}/"
                f"{self.max_arenas} in_use={self.in_use}>")


# ---------------------------------------------------------------------------
# Owners (budgets and live-lease lists)
# ---------------------------------------------------------------------------

@cython.final
cdef class Owner:
    """Something leases are charged to: an endpoint, a source address, a connection.

    Charges go up the parent chain, so a connection's bytes also count
    against its endpoint. `limit` < 0 means no per-owner cap.
    """

    cdef readonly str kind
    cdef readonly object name
    cdef readonly Owner parent
    cdef public Py_ssize_t limit
    cdef readonly Py_ssize_t in_use
    cdef readonly Py_ssize_t high_water
    cdef readonly Py_ssize_t acquires
    cdef readonly Py_ssize_t releases
    cdef readonly Py_ssize_t refusals
    cdef readonly Py_ssize_t live
    cdef readonly Py_ssize_t reclaimed
    cdef readonly bint closed
    cdef Lease _head
    cdef uint32_t _class_live[MAX_CLASSES]  # live leases per class (32-bit: one Owner per connection)
    cdef object __weakref__

    def __cinit__(self, str kind, object name, Py_ssize_t limit=-1, Owner parent=None):
        self.kind = kind
        self.name = name
        self.limit = limit
        self.parent = parent
        memset(self._class_live, 0, sizeof(self._class_live))

    @property
    def label(self):
        return f"{self.kind} {self.name}"

    def live_by_class(self):
        """{class index: live leases} for classes with any."""
        cdef int i
        return {i: self._class_live[i] for i in range(MAX_CLASSES) if self._class_live[i]}

    def leases(self):
        """The leases this owner still holds (the leak report reads it)."""
        out = []
        cdef Lease l = self._head
        while l is not None:
            out.append(l)
            l = l._next
        return out

    def release_all(self):
        """Release every lease this owner still holds; returns how many."""
        cdef Py_ssize_t n = 0
        cdef Lease l
        while self._head is not None:
            l = self._head
            l._released = True
            l._finish()
            n += 1
        self.reclaimed += n
        return n

    def close(self):
        """Release what is left and refuse further acquisitions."""
        n = self.release_all()
        self.closed = True
        return n

    def __repr__(self):
        return f"<Owner {self.kind} {self.name!r} in_use={self.in_use} live={self.live}>"


# ---------------------------------------------------------------------------
# Leases
# ---------------------------------------------------------------------------

@cython.final
@cython.no_gc
@cython.freelist(256)
cdef class Lease:
    """A pool slot lent out; exposes the writable buffer protocol.

    `len(lease)` and the exported buffer cover `length` bytes (set at
    acquire, changeable up to `capacity` while no view is exported). Views
    keep the slot out of the pool until the last one is gone; release
    happens once; any use after release raises LeaseReleasedError.
    """

    cdef char *_ptr
    cdef Py_ssize_t _length
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _arena
    cdef Py_ssize_t _exports
    cdef Py_ssize_t _shape
    cdef SlabPool _pool
    cdef Owner _owner
    cdef Lease _next
    cdef PyObject *_prev
    cdef object _where
    cdef bint _released
    cdef bint _returned
    cdef bint _secure

    def __init__(self):
        raise TypeError("leases come from SlabPool.acquire() or PoolSet.acquire()")

    cdef inline int _check(self) except -1:
        if self._released:
            raise LeaseReleasedError("lease used after release")
        return 0

    cdef void _finish(self):
        """Unlink from the owner; return the slot once no view is left."""
        cdef Owner o = self._owner
        cdef Lease prev
        cdef Owner p
        if o is not None:
            if self._prev != NULL:
                prev = <Lease>self._prev
                prev._next = self._next
            else:
                o._head = self._next
            if self._next is not None:
                self._next._prev = self._prev
            self._prev = NULL
            self._next = None
            p = o
            while p is not None:
                p.in_use -= self._capacity
                p.releases += 1
                p = p.parent
            o.live -= 1
            if self._pool.class_index >= 0:
                o._class_live[self._pool.class_index] -= 1
        if self._pool._core is not None:
            self._pool._core.in_use_bytes -= self._capacity
        if self._exports == 0:
            self._return()

    cdef void _return(self):
        if not self._returned:
            self._returned = True
            self._pool._give(self._ptr, self._arena, self._secure)
            self._ptr = NULL

    def release(self):
        """Give the slot back (once views are gone). A second call raises."""
        if self._released:
            raise LeaseReleasedError("lease released twice")
        self._released = True
        self._finish()

    def __dealloc__(self):
        # Only reachable for leases without an owner (owners keep theirs alive
        # until released): give the slot back rather than lose it.
        if not self._returned and self._pool is not None and self._ptr != NULL:
            if not self._released and self._pool._core is not None:
                self._pool._core.in_use_bytes -= self._capacity
                self._pool._core.reclaimed += 1
            self._pool._give(self._ptr, self._arena, self._secure)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self._released:
            raise LeaseReleasedError("lease used after release")
        self._shape = self._length
        buffer.buf = self._ptr
        buffer.obj = self
        buffer.len = self._length
        buffer.readonly = 0
        buffer.itemsize = 1
        buffer.format = "B"
        buffer.ndim = 1
        buffer.shape = &self._shape
        buffer.strides = &buffer.itemsize
        buffer.suboffsets = NULL
        buffer.internal = NULL
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1
        if self._exports == 0 and self._released:
            self._return()

    def __len__(self):
        self._check()
        return self._length

    @property
    def length(self):
        self._check()
        return self._length

    @length.setter
    def length(self, Py_ssize_t value):
        self._check()
        if value < 0 or value > self._capacity:
            raise ValueError(f"length {value} outside 0..{self._capacity}")
        if self._exports and value != self._length:
            raise BufferError("cannot resize a lease while views of it exist")
        self._length = value

    @property
    def capacity(self):
        return self._capacity

    @property
    def released(self):
        return self._released

    @property
    def secure(self):
        return self._secure

    @property
    def owner(self):
        return self._owner

    @property
    def size_class(self):
        return self._pool.slot_size

    @property
    def where(self):
        """Where it was acquired (debug mode only), else None."""
        return self._where

    def view(self, Py_ssize_t start=0, Py_ssize_t stop=-1):
        """A writable memoryview of [start:stop] (stop defaults to length)."""
        self._check()
        if stop < 0:
            stop = self._length
        if start < 0 or stop > self._length or start > stop:
            raise IndexError(f"view [{start}:{stop}] outside 0..{self._length}")
        return memoryview(self)[start:stop]

    def __getitem__(self, key):
        self._check()
        return memoryview(self)[key]

    def tobytes(self):
        self._check()
        return PyBytes_FromStringAndSize(self._ptr, self._length)

    def write(self, Py_ssize_t offset, data):
        """Copy `data` into the slot at `offset` (within capacity, length grows)."""
        self._check()
        cdef Py_buffer src
        PyObject_GetBuffer(data, &src, PyBUF_SIMPLE)
        try:
            if offset < 0 or offset + src.len > self._capacity:
                raise ValueError("write outside the lease")
            if offset + src.len > self._length:
                if self._exports:
                    raise BufferError("cannot resize a lease while views of it exist")
                self._length = offset + src.len
            memcpy(self._ptr + offset, src.buf, src.len)
        finally:
            PyBuffer_Release(&src)

    def __repr__(self):
        state = "released" if self._released else f"{self._length}/{self._capacity} B"
        return f"<Lease {state} owner={self._owner!r}>"


cdef inline Lease _make_lease(SlabPool pool, char *p, Py_ssize_t ai, Py_ssize_t length,
                       bint secure, Owner owner):
    cdef Lease l = Lease.__new__(Lease)
    l._ptr = p
    l._arena = ai
    l._pool = pool
    l._capacity = pool.slot_size
    l._length = length
    l._secure = secure
    if owner is not None:
        l._owner = owner
        l._next = owner._head
        if owner._head is not None:
            owner._head._prev = <PyObject *>l
        owner._head = l
        owner.live += 1
        if pool.class_index >= 0:
            owner._class_live[pool.class_index] += 1
    return l


# ---------------------------------------------------------------------------
# Pool core: size classes and budgets
# ---------------------------------------------------------------------------

@cython.final
cdef class PoolCore:
    """Size classes plus a global byte cap; the compiled half of PoolSet."""

    cdef list _pools
    cdef Py_ssize_t _sizes[MAX_CLASSES]
    cdef int _nclasses
    cdef public Py_ssize_t global_limit
    cdef readonly Py_ssize_t in_use_bytes
    cdef readonly Py_ssize_t high_water_bytes
    cdef readonly Py_ssize_t refusals
    cdef readonly Py_ssize_t reclaimed
    cdef public bint debug

    def __cinit__(self, pools, Py_ssize_t global_limit=-1, bint debug=False):
        pools = sorted(pools, key=lambda p: p.slot_size)
        if not pools:
            raise ValueError("at least one size class is needed")
        if len(pools) > MAX_CLASSES:
            raise ValueError(f"at most {MAX_CLASSES} size classes")
        self._pools = list(pools)
        self._nclasses = len(pools)
        cdef int i
        cdef SlabPool sp
        for i in range(self._nclasses):
            sp = self._pools[i]
            if i and sp.slot_size == self._sizes[i - 1]:
                raise ValueError(f"two size classes of {sp.slot_size} bytes")
            if sp._core is not None or sp.in_use:
                raise ValueError(f"{sp.name} pool already serves another pool set or has leases out")
            sp.class_index = i
            sp._core = self
            self._sizes[i] = sp.slot_size
        self.global_limit = global_limit
        self.debug = debug

    @property
    def pools(self):
        return tuple(self._pools)

    @property
    def largest(self):
        return self._sizes[self._nclasses - 1]

    def class_for(self, Py_ssize_t size):
        """The SlabPool that would serve `size` bytes, or None."""
        cdef int i
        for i in range(self._nclasses):
            if size <= self._sizes[i]:
                return self._pools[i]
        return None

    cpdef Lease acquire(self, Py_ssize_t size, Owner owner=None, bint secure=False):
        """Lend the smallest slot that holds `size` bytes, charged to `owner`.

        Raises MemoryBudgetExceeded past the global cap, an owner's cap (up
        its parent chain), the largest class or a pool's arena cap.
        """
        cdef int i = 0
        cdef SlabPool sp
        cdef Py_ssize_t cap, ai
        cdef Owner o
        cdef char *p
        if size < 0:
            raise ValueError("negative size")
        while i < self._nclasses and size > self._sizes[i]:
            i += 1
        if i == self._nclasses:
            self.refusals += 1
            if owner is not None:
                owner.refusals += 1
            raise MemoryBudgetExceeded(owner.label if owner is not None else "pool set",
                                       size, 0, self._sizes[self._nclasses - 1],
                                       "size class")
        cap = self._sizes[i]
        if self.global_limit >= 0 and self.in_use_bytes + cap > self.global_limit:
            self.refusals += 1
            if owner is not None:
                owner.refusals += 1
            raise MemoryBudgetExceeded("global budget", cap, self.in_use_bytes,
                                       self.global_limit)
        o = owner
        while o is not None:
            if o.closed:
                raise ValueError(f"{o.label} is closed")
            if o.limit >= 0 and o.in_use + cap > o.limit:
                self.refusals += 1
                o.refusals += 1
                if o is not owner:
                    owner.refusals += 1
                raise MemoryBudgetExceeded(o.label, cap, o.in_use, o.limit)
            o = o.parent
        sp = self._pools[i]
        p = sp._take(&ai)
        if p == NULL:
            self.refusals += 1
            if owner is not None:
                owner.refusals += 1
            raise MemoryBudgetExceeded(f"{sp.name} pool", cap, sp.in_use * cap,
                                       sp.max_arenas * sp.slots_per_arena * cap, "pool")
        o = owner
        while o is not None:
            o.in_use += cap
            o.acquires += 1
            if o.in_use > o.high_water:
                o.high_water = o.in_use
            o = o.parent
        self.in_use_bytes += cap
        if self.in_use_bytes > self.high_water_bytes:
            self.high_water_bytes = self.in_use_bytes
        cdef Lease l = _make_lease(sp, p, ai, size, secure, owner)
        if self.debug:
            # The innermost frame is the Python caller (this method is compiled).
            l._where = _traceback.format_stack(limit=12)
        return l


# ---------------------------------------------------------------------------
# Buffer: wire-format reader/writer
# ---------------------------------------------------------------------------

@cython.final
cdef class _Block:
    cdef Buffer _buf
    cdef int _size
    cdef bint _push
    cdef Py_ssize_t _saved_end
    cdef Py_ssize_t _start

    def __enter__(self):
        cdef Buffer b = self._buf
        cdef Py_ssize_t length
        if self._push:
            b._reserve(self._size)
            self._start = b._pos
            b._pos += self._size
            return None
        length = <Py_ssize_t>b._pull_uint(self._size)
        if length > b._end - b._pos:
            raise DecodeError(f"vector of {length} bytes overruns its container")
        self._saved_end = b._end
        b._end = b._pos + length
        return length

    def __exit__(self, exc_type, exc, tb):
        cdef Buffer b = self._buf
        cdef Py_ssize_t length
        cdef int i
        if self._push:
            if exc_type is None:
                length = b._pos - self._start - self._size
                if length >> (8 * self._size):
                    raise EncodeError(f"vector of {length} bytes too long for a {self._size}-byte length")
                for i in range(self._size):
                    b._base[self._start + i] = <uint8_t>(length >> (8 * (self._size - 1 - i)))
            return False
        if exc_type is None and b._pos != b._end:
            b._end = self._saved_end
            raise DecodeError(f"{b._end - b._pos} bytes left over inside a vector")
        b._end = self._saved_end
        return False


@cython.final
cdef class Buffer:
    """Reader/writer for network byte order over bytes, memoryviews and leases.

    Reading: `Buffer(data)`. Writing: `Buffer(capacity=n)` (grows as needed)
    or `Buffer(writable)` over a bytearray or a Lease (fixed capacity).
    Every malformed or truncated read raises DecodeError and nothing else.
    """

    cdef Py_buffer _view
    cdef bint _has_view
    cdef bint _growable
    cdef bint _writable
    cdef unsigned char *_base
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef Py_ssize_t _cap
    cdef object _obj
    cdef object _mv

    def __cinit__(self, data=None, *, Py_ssize_t capacity=-1):
        if data is None:
            if capacity < 0:
                capacity = 256
            self._growable = True
            self._writable = True
            self._cap = capacity if capacity > 0 else 16
            self._base = <unsigned char *>realloc(NULL, <size_t>self._cap)
            if self._base == NULL:
                raise MemoryError()
            self._end = self._cap
            return
        if isinstance(data, bytes):
            PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE)
        else:
            try:
                PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE | PyBUF_WRITABLE)
                self._writable = True
            except BufferError:
                PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE)
        self._has_view = True
        self._obj = data
        self._base = <unsigned char *>self._view.buf
        self._cap = self._view.len
        self._end = self._cap

    def __dealloc__(self):
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False
        elif self._growable and self._base != NULL:
            free(self._base)
        self._base = NULL

    def close(self):
        """Let go of the underlying object's buffer (a lease can then resize or release)."""
        if self._has_view:
            self._mv = None
            PyBuffer_Release(&self._view)
            self._has_view = False
            self._base = NULL
            self._cap = self._end = self._pos = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- position -----------------------------------------------------------

    @property
    def capacity(self):
        return self._cap

    @property
    def data(self):
        """The bytes from the start up to the current position."""
        return PyBytes_FromStringAndSize(<char *>self._base, self._pos)

    def data_slice(self, Py_ssize_t start, Py_ssize_t end):
        if start < 0 or end > self._cap or start > end:
            raise DecodeError("slice out of bounds")
        return PyBytes_FromStringAndSize(<char *>self._base + start, end - start)

    def view_slice(self, Py_ssize_t start, Py_ssize_t end):
        """A zero-copy memoryview of [start:end] of the underlying object."""
        if start < 0 or end > self._cap or start > end:
            raise DecodeError("slice out of bounds")
        return self._memoryview()[start:end]

    cdef object _memoryview(self):
        if self._mv is None:
            if self._has_view:
                self._mv = memoryview(self._obj).cast("B")
            else:
                raise EncodeError("a growable Buffer has no view; use .data")
        return self._mv

    cpdef bint eof(self):
        return self._pos >= self._end

    @property
    def remaining(self):
        return self._end - self._pos

    cpdef Py_ssize_t tell(self):
        return self._pos

    def seek(self, Py_ssize_t pos):
        if pos < 0 or pos > self._end:
            raise DecodeError("seek out of bounds")
        self._pos = pos

    def expect_end(self):
        """Raise DecodeError unless everything was consumed."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")

    # -- reading ------------------------------------------------------------

    cdef inline uint64_t _pull_uint(self, int n) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t v = 0
        cdef int i
        if self._end - self._pos < n:
            raise DecodeError(f"need {n} bytes, {self._end - self._pos} left")
        for i in range(n):
            v = (v << 8) | self._base[self._pos + i]
        self._pos += n
        return v

    cpdef uint8_t pull_uint8(self) except? 0xFF:
        if self._pos >= self._end:
            raise DecodeError("need 1 byte, 0 left")
        self._pos += 1
        return self._base[self._pos - 1]

    cpdef uint16_t pull_uint16(self) except? 0xFFFF:
        return <uint16_t>self._pull_uint(2)

    cpdef uint32_t pull_uint24(self) except? 0xFFFFFFFF:
        return <uint32_t>self._pull_uint(3)

    cpdef uint32_t pull_uint32(self) except? 0xFFFFFFFF:
        return <uint32_t>self._pull_uint(4)

    cpdef uint64_t pull_uint48(self) except? 0xFFFFFFFFFFFFFFFF:
        return self._pull_uint(6)

    cpdef uint64_t pull_uint64(self) except? 0xFFFFFFFFFFFFFFFF:
        return self._pull_uint(8)

    cpdef bytes pull_bytes(self, Py_ssize_t length):
        if length < 0 or self._end - self._pos < length:
            raise DecodeError(f"need {length} bytes, {self._end - self._pos} left")
        self._pos += length
        return PyBytes_FromStringAndSize(<char *>self._base + self._pos - length, length)

    def pull_view(self, Py_ssize_t length):
        """The next `length` bytes as a zero-copy memoryview."""
        if length < 0 or self._end - self._pos < length:
            raise DecodeError(f"need {length} bytes, {self._end - self._pos} left")
        self._pos += length
        return self._memoryview()[self._pos - length:self._pos]

    cpdef bytes pull_vector(self, int length_size):
        """A byte string behind a 1-, 2- or 3-byte length."""
        cdef Py_ssize_t length = <Py_ssize_t>self._pull_uint(length_size)
        return self.pull_bytes(length)

    def pull_block(self, int length_size):
        """Context manager over a length-prefixed vector; checks exact consumption."""
        if length_size not in (1, 2, 3, 4):
            raise ValueError("length_size must be 1, 2, 3 or 4")
        cdef _Block b = _Block.__new__(_Block)
        b._buf = self
        b._size = length_size
        b._push = False
        return b

    def pull_uint16_list(self, int length_size, Py_ssize_t minimum=0):
        """``uint16 values<minimum..>`` behind a `length_size`-byte length, as a tuple
        (an odd length or one below `minimum` is a DecodeError)."""
        cdef Py_ssize_t length, i, at
        if length_size not in (1, 2):
            raise ValueError("length_size must be 1 or 2")
        length = <Py_ssize_t>self._pull_uint(length_size)
        if self._end - self._pos < length:
            self._pos -= length_size
            raise DecodeError(f"block of {length} bytes, {self._end - self._pos} left")
        if length % 2 or length < minimum:
            raise DecodeError(f"bad uint16 list length {length}")
        at = self._pos
        self._pos += length
        return tuple([(self._base[at + 2 * i] << 8) | self._base[at + 2 * i + 1]
                      for i in range(length // 2)])

    def pull_list(self, int length_size, func):
        """Items read by `func(buf)` until a length-prefixed vector is used up."""
        items = []
        with self.pull_block(length_size):
            while self._pos < self._end:
                items.append(func(self))
        return items

    # -- writing ------------------------------------------------------------

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = self._pos + n
        cdef Py_ssize_t newcap
        cdef unsigned char *nb
        if need <= self._end:
            return 0
        if not self._writable:
            raise EncodeError("buffer is read-only")
        if not self._growable:
            raise EncodeError(f"writing {n} bytes overflows a {self._cap}-byte buffer")
        newcap = self._cap * 2
        if newcap < need:
            newcap = need
        nb = <unsigned char *>realloc(self._base, <size_t>newcap)
        if nb == NULL:
            raise MemoryError()
        self._base = nb
        self._cap = self._end = newcap
        return 0

    cdef inline int _push_uint(self, uint64_t v, int n) except -1:
        cdef int i
        if not self._writable:
            raise EncodeError("buffer is read-only")
        if n < 8 and (v >> (8 * n)):
            raise EncodeError(f"{v} does not fit in {n} bytes")
        self._reserve(n)
        for i in range(n):
            self._base[self._pos + i] = <uint8_t>(v >> (8 * (n - 1 - i)))
        self._pos += n
        return 0

    def push_uint8(self, uint64_t v):
        self._push_uint(v, 1)

    def push_uint16(self, uint64_t v):
        self._push_uint(v, 2)

    def push_uint24(self, uint64_t v):
        self._push_uint(v, 3)

    def push_uint32(self, uint64_t v):
        self._push_uint(v, 4)

    def push_uint48(self, uint64_t v):
        self._push_uint(v, 6)

    def push_uint64(self, uint64_t v):
        self._push_uint(v, 8)

    cpdef push_bytes(self, data):
        cdef Py_buffer src
        if not self._writable:
            raise EncodeError("buffer is read-only")
        PyObject_GetBuffer(data, &src, PyBUF_SIMPLE)
        try:
            self._reserve(src.len)
            memcpy(self._base + self._pos, src.buf, src.len)
            self._pos += src.len
        finally:
            PyBuffer_Release(&src)

    def push_vector(self, int length_size, data):
        """`data` behind a 1-, 2- or 3-byte length."""
        self._push_uint(len(data), length_size)
        self.push_bytes(data)

    def push_block(self, int length_size):
        """Context manager: bytes pushed inside get a length prefix."""
        if length_size not in (1, 2, 3, 4):
            raise ValueError("length_size must be 1, 2, 3 or 4")
        if not self._writable:
            raise EncodeError("buffer is read-only")
        cdef _Block b = _Block.__new__(_Block)
        b._buf = self
        b._size = length_size
        b._push = True
        return b

    def push_list(self, int length_size, func, items):
        """Write each item with `func(buf, item)` inside a length-prefixed vector."""
        with self.push_block(length_size):
            for item in items:
                func(self, item)


# ---------------------------------------------------------------------------
# Record layer hot paths (unified header, record numbers, replay window)
# ---------------------------------------------------------------------------

include "_fast_record.pxi"

# ---------------------------------------------------------------------------
# Handshake hot paths (fragment coverage for reassembly)
# ---------------------------------------------------------------------------

include "_fast_handshake.pxi"
