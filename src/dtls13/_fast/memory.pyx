# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
"""Slab pools, owners (budgets, live-lease lists), leases and the pool core.

DESIGN.md §3 has the memory design; dtls13.memory is the Python API above it.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset

from ._common cimport dtls13_secure_zero

cdef extern from "stdlib.h":
    int posix_memalign(void **memptr, size_t alignment, size_t size) nogil


cdef enum:
    ALIGN = 64

import traceback as _traceback
import weakref as _weakref

from .errors import LeaseReleasedError, MemoryBudgetExceeded

_all_pools = _weakref.WeakSet()


def live_pools():
    """Every SlabPool alive in this process (tests check none is left in use)."""
    return list(_all_pools)


# ---------------------------------------------------------------------------
# Slab pools
# ---------------------------------------------------------------------------

@cython.final
cdef class SlabPool:
    """Fixed-size slots carved out of arenas; O(1) acquire and release."""

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
        cdef Py_ssize_t _
        for _ in range(min_arenas):
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
                if posix_memalign(&mem, ALIGN,
                                  <size_t>(self.slot_size * self.slots_per_arena)) != 0:
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

    def __cinit__(self, str kind, object name, Py_ssize_t limit=-1, Owner parent=None):
        self.kind = kind
        self.name = name
        self.limit = limit
        self.parent = parent

    @property
    def label(self):
        return f"{self.kind} {self.name}"

    def live_by_class(self):
        """{class index: live leases} for classes with any, counted from the live-lease
        list (statistics only: no per-class array in every owner, ~128 B each)."""
        cdef Py_ssize_t counts[MAX_CLASSES]
        cdef Py_ssize_t index
        cdef int i
        memset(counts, 0, sizeof(counts))
        cdef Lease lease = self._head
        while lease is not None:
            index = lease._pool.class_index
            if 0 <= index < MAX_CLASSES:
                counts[index] += 1
            lease = lease._next
        return {i: counts[i] for i in range(MAX_CLASSES) if counts[i]}

    def leases(self):
        """The leases this owner still holds (the leak report reads it)."""
        out = []
        cdef Lease lease = self._head
        while lease is not None:
            out.append(lease)
            lease = lease._next
        return out

    def release_all(self):
        """Release every lease this owner still holds; returns how many."""
        cdef Py_ssize_t n = 0
        cdef Lease lease
        while self._head is not None:
            lease = self._head
            lease._released = True
            lease._finish()
            n += 1
        self.reclaimed += n
        return n

    def close(self):
        """Release what is left and refuse further acquisitions."""
        n = self.release_all()
        self.closed = True
        return n

    def __dealloc__(self):
        if self._set != NULL:
            (<OwnerSet>self._set)._unlink(self)

    def __repr__(self):
        return f"<Owner {self.kind} {self.name!r} in_use={self.in_use} live={self.live}>"


# ---------------------------------------------------------------------------
# Leases
# ---------------------------------------------------------------------------

@cython.final
cdef class OwnerSet:
    """The owners a PoolSet made, for its statistics and leak report, without keeping
    them alive: a list threaded through the owners themselves (an owner leaves it when it
    goes), where a weakref.WeakSet would hold a weak reference per owner (~130 B each)."""

    def add(self, Owner owner):
        if owner._set == <PyObject *>self:
            return
        if owner._set != NULL:
            (<OwnerSet>owner._set)._unlink(owner)
        owner._set = <PyObject *>self
        owner._set_prev = NULL
        owner._set_next = self._first
        if self._first != NULL:
            (<Owner>self._first)._set_prev = <PyObject *>owner
        self._first = <PyObject *>owner
        self.count += 1

    def discard(self, Owner owner):
        if owner._set == <PyObject *>self:
            self._unlink(owner)

    cdef void _unlink(self, Owner owner):
        if owner._set_prev != NULL:
            (<Owner>owner._set_prev)._set_next = owner._set_next
        else:
            self._first = owner._set_next
        if owner._set_next != NULL:
            (<Owner>owner._set_next)._set_prev = owner._set_prev
        owner._set = owner._set_prev = owner._set_next = NULL
        self.count -= 1

    def owners(self):
        """The owners in the set now (strong references), newest first."""
        out = []
        cdef PyObject *p = self._first
        while p != NULL:
            out.append(<Owner>p)
            p = (<Owner>p)._set_next
        return out

    def __len__(self):
        return self.count

    def __iter__(self):
        return iter(self.owners())

    def __contains__(self, owner):
        return isinstance(owner, Owner) and (<Owner>owner)._set == <PyObject *>self

    def __dealloc__(self):
        # The owners outlive their set: they just leave it.
        cdef PyObject *p = self._first
        cdef PyObject *nxt
        while p != NULL:
            nxt = (<Owner>p)._set_next
            (<Owner>p)._set = (<Owner>p)._set_prev = (<Owner>p)._set_next = NULL
            p = nxt
        self._first = NULL


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
    cdef Lease lease = Lease.__new__(Lease)
    lease._ptr = p
    lease._arena = ai
    lease._pool = pool
    lease._capacity = pool.slot_size
    lease._length = length
    lease._secure = secure
    if owner is not None:
        lease._owner = owner
        lease._next = owner._head
        if owner._head is not None:
            owner._head._prev = <PyObject *>lease
        owner._head = lease
        owner.live += 1
    return lease


# ---------------------------------------------------------------------------
# Pool core: size classes and budgets
# ---------------------------------------------------------------------------

@cython.final
cdef class PoolCore:
    """Size classes plus a global byte cap; the compiled half of PoolSet."""

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
                raise ValueError(
                    f"{sp.name} pool already serves another pool set or has leases out")
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
        cdef Lease lease = _make_lease(sp, p, ai, size, secure, owner)
        if self.debug:
            # The innermost frame is the Python caller (this method is compiled).
            lease._where = _traceback.format_stack(limit=12)
        return lease
