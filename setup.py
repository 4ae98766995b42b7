"""Build script: compiles the Cython modules of dtls13 (required, no pure-Python fallback);
dtls13._io (batched datagram I/O) builds everywhere and says at import time whether the
platform has recvmmsg/sendmmsg."""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HELP = (
    "dtls13 needs its compiled extensions (dtls13._fast) and could not build them: {err}\n"
    "Install a C compiler and the Python headers, then retry, e.g.\n"
    "  Debian/Ubuntu: apt-get install gcc python3-dev\n"
    "  Fedora/RHEL:   dnf install gcc python3-devel\n"
    "  macOS:         xcode-select --install"
)


class BuildExtRequired(build_ext):
    """build_ext that fails with a message saying what to install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # compiler missing or broken: say what to do
            sys.stderr.write("\n" + HELP.format(err=err) + "\n\n")
            raise SystemExit(1) from err

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:
            sys.stderr.write("\n" + HELP.format(err=err) + "\n\n")
            raise SystemExit(1) from err


def fast(name: str) -> Extension:
    """The extension module dtls13._fast.NAME, from src/dtls13/_fast/NAME.pyx."""
    return Extension(
        f"dtls13._fast.{name}", [f"src/dtls13/_fast/{name}.pyx"], extra_compile_args=["-O2"]
    )


# Every compiled module; one entry each. Modules of dtls13._fast cimport each other through
# their .pxd files (cythonize tracks those as dependencies).
EXTENSIONS = [
    fast("memory"),
    fast("buffer"),
    fast("record"),
    fast("protection"),
    fast("keys"),
    fast("datagram"),
    fast("handshake"),
    # Batched datagram I/O (recvmmsg/sendmmsg, UDP GSO) for the trio adapter.
    Extension("dtls13._io", ["src/dtls13/_io.pyx"], extra_compile_args=["-O2"]),
]


def extensions() -> list[Extension]:
    from Cython.Build import cythonize

    return cythonize(
        EXTENSIONS,
        language_level=3,
        compiler_directives={"embedsignature": True},
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtRequired})
