# Shared declarations of memory.pyx: other _fast modules cimport Lease (and its pool and
# owner) to read and fill pooled slots at C level.

cimport cython
from cpython.ref cimport PyObject

cdef enum:
    MAX_CLASSES = 32


cdef struct Arena:
    char *base
    void *free_head      # intrusive free list through released slots
    Py_ssize_t bump      # slots never handed out yet start here (lazy carving)
    Py_ssize_t in_use


cdef class SlabPool
cdef class Owner
cdef class OwnerSet
cdef class Lease
cdef class PoolCore


@cython.final
cdef class SlabPool:
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

    cdef Py_ssize_t _add_arena(self)
    cdef char *_take(self, Py_ssize_t *arena_out)
    cdef void _give(self, char *p, Py_ssize_t i, bint secure)


@cython.final
cdef class Owner:
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
    # The OwnerSet it is in (borrowed) and its neighbours there; NULL when in none.
    cdef PyObject *_set
    cdef PyObject *_set_prev
    cdef PyObject *_set_next
    cdef object __weakref__


@cython.final
cdef class OwnerSet:
    cdef PyObject *_first
    cdef readonly Py_ssize_t count

    cdef void _unlink(self, Owner owner)


@cython.final
cdef class Lease:
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

    cdef int _check(self) except -1
    cdef void _finish(self)
    cdef void _return(self)


@cython.final
cdef class PoolCore:
    cdef list _pools
    cdef Py_ssize_t _sizes[MAX_CLASSES]
    cdef int _nclasses
    cdef public Py_ssize_t global_limit
    cdef readonly Py_ssize_t in_use_bytes
    cdef readonly Py_ssize_t high_water_bytes
    cdef readonly Py_ssize_t refusals
    cdef readonly Py_ssize_t reclaimed
    cdef public bint debug

    cpdef Lease acquire(self, Py_ssize_t size, Owner owner=*, bint secure=*)
