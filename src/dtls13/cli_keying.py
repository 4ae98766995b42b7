"""The CLI's keying material options, named and printed as openssl s_client/s_server do:
``--keymatexport LABEL --keymatexportlen N`` (RFC 8446 §7.5 exporter) and
``--use-srtp PROFILE[:PROFILE...]`` (DTLS-SRTP, RFC 5764)."""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from .events import HandshakeCompleted
from .handshake.exporter import exporter_label
from .handshake.srtp import SrtpProtectionProfile


class ChannelInfo(Protocol):
    """What the CLI reads of a channel, from either adapter (trio or asyncio)."""

    @property
    def handshake_info(self) -> HandshakeCompleted | None: ...

    @property
    def srtp_profile(self) -> SrtpProtectionProfile | None: ...

    def export_keying_material(
        self, label: str | bytes, context: bytes | None, length: int
    ) -> bytes: ...


DEFAULT_EXPORT_LENGTH = 20  # openssl's -keymatexportlen default


def _length(value: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 1 <= n <= 255 * 32:
        raise argparse.ArgumentTypeError(f"{n} is outside 1..{255 * 32}")
    return n


def add_keying_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keymatexport",
        metavar="LABEL",
        help="after each handshake print keying material exported with LABEL (RFC 8446 §7.5)",
    )
    p.add_argument(
        "--keymatexportlen",
        type=_length,
        metavar="N",
        help=f"bytes to export with --keymatexport ({DEFAULT_EXPORT_LENGTH})",
    )
    p.add_argument(
        "--use-srtp",
        metavar="P:P...",
        help="DTLS-SRTP protection profiles, colon-separated (e.g. SRTP_AES128_CM_SHA1_80)",
    )


def keying_options(args: argparse.Namespace) -> dict[str, Any]:
    """Configuration the options ask for; ValueError (a usage error) for bad ones."""
    if args.keymatexport is not None:
        exporter_label(args.keymatexport)
    elif args.keymatexportlen is not None:
        raise ValueError("--keymatexportlen needs --keymatexport")
    if args.use_srtp is not None:
        return {"srtp_profiles": args.use_srtp.split(":")}
    return {}


def keying_report(channel: ChannelInfo, args: argparse.Namespace) -> list[str]:
    """The lines openssl prints about the same things once a handshake is done."""
    lines: list[str] = []
    if channel.srtp_profile is not None:
        lines.append(f"SRTP Extension negotiated, profile={channel.srtp_profile.name}")
    if args.keymatexport is not None:
        length = args.keymatexportlen or DEFAULT_EXPORT_LENGTH
        material = channel.export_keying_material(args.keymatexport, None, length)
        lines += [
            "Keying material exporter:",
            f"    Label: '{args.keymatexport}'",
            f"    Length: {length} bytes",
            f"    Keying material: {material.hex().upper()}",
        ]
    return lines
