"""Steer each datagram to the worker whose connection ID it carries (Linux, SO_REUSEPORT).

Sockets bound to one port with SO_REUSEPORT form a group; the kernel hands each datagram to
one of them by hashing its addresses, so a client whose NAT rebinds lands on a worker that
does not know its connection. A classic BPF program attached to the group
(SO_ATTACH_REUSEPORT_CBPF) chooses instead: it runs on the UDP payload and returns the index
of a socket in the group, in bind order; an index outside the group makes the kernel fall
back to its hash (net/core/sock_reuseport.c, ``run_bpf_filter``). The program here returns:

- for a DTLSCiphertext record with a unified header (first byte 0b001CSLEE, RFC 9147 §4)
  whose C bit is set: the byte of the CID at `cid_offset`, the worker index the issuing
  server put there (dtls13.cid_layout);
- for anything else (plaintext records, ClientHellos, records without a CID, datagrams too
  short to hold the byte): an index no group has, so the kernel hashes as without a program.

DTLS 1.2's CID records (content type tls12_cid, RFC 9146) are not steered: this library
speaks DTLS 1.3 only and never accepts them.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import sys

# include/uapi/asm-generic/socket.h
SO_ATTACH_REUSEPORT_CBPF = 51

# include/uapi/linux/bpf_common.h: instruction classes, sizes, modes, operations, sources.
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_B = 0x00, 0x10
BPF_ABS, BPF_LEN = 0x20, 0x80
BPF_AND = 0x50
BPF_JEQ, BPF_JGE = 0x10, 0x30
BPF_K, BPF_A = 0x00, 0x10

# Returned for datagrams the kernel should hash: no reuseport group is this large.
HASH_FALLBACK = 0xFFFFFFFF
# Unified header with the C bit: 0b0011xxxx (RFC 9147 §4, Figure 3).
_CID_HEADER_MASK, _CID_HEADER = 0xF0, 0x30
_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt, jf; u32 k}


def steering_program(cid_offset: int = 0) -> list[tuple[int, int, int, int]]:
    """The program as (code, jt, jf, k) instructions; it reads CID byte `cid_offset`."""
    if isinstance(cid_offset, bool) or not isinstance(cid_offset, int):
        raise TypeError("cid_offset is an int")
    if not 0 <= cid_offset < 32:
        raise ValueError("cid_offset is between 0 and 31 (CIDs have at most 32 bytes)")
    at = 1 + cid_offset  # the CID follows the header's first byte
    return [
        (BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),  # A = UDP payload length
        (BPF_JMP | BPF_JGE | BPF_K, 0, 5, at + 1),  # too short to hold the byte: hash
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),  # A = first byte
        (BPF_ALU | BPF_AND | BPF_K, 0, 0, _CID_HEADER_MASK),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 2, _CID_HEADER),  # not a record with a CID: hash
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, at),  # A = the worker byte
        (BPF_RET | BPF_A, 0, 0, 0),  # its socket (the kernel hashes when A >= group size)
        (BPF_RET | BPF_K, 0, 0, HASH_FALLBACK),
    ]


def attach_steering(sock: socket.socket, cid_offset: int = 0) -> None:
    """Attach the steering program to `sock`'s reuseport group (every socket of it, past and
    future members alike). Call it once all members are bound: the index a worker's byte
    names is its socket's place in bind order. Closing a member moves the last one into its
    place, so a group that loses a member must be rebuilt. OSError when the system refuses."""
    if not sys.platform.startswith("linux"):
        raise OSError(f"SO_ATTACH_REUSEPORT_CBPF is Linux's; this is {sys.platform}")
    program = steering_program(cid_offset)
    code = b"".join(_SOCK_FILTER.pack(*insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def bind_group(family: int, address: tuple[str, int], count: int) -> list[socket.socket]:
    """`count` UDP sockets bound to `address` with SO_REUSEPORT, one after the other: in
    the kernel's group, socket i of the list has index i (port 0 picks one for all)."""
    group: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            group.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            address = (address[0], sock.getsockname()[1])
    except BaseException:
        for sock in group:
            sock.close()
        raise
    return group
