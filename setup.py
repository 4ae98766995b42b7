"""Build script: compiles src/dtls13/_fast.pyx (required, no pure-Python fallback) and
src/dtls13/_io.pyx (batched datagram I/O; it builds everywhere and says at import time
whether the platform has recvmmsg/sendmmsg)."""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HELP = (
    "dtls13 needs its compiled extension dtls13._fast and could not build it: {err}\n"
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


def extensions() -> list[Extension]:
    from Cython.Build import cythonize

    ext = Extension(
        "dtls13._fast",
        ["src/dtls13/_fast.pyx"],
        depends=["src/dtls13/_fast_record.pxi", "src/dtls13/_fast_handshake.pxi"],
        extra_compile_args=["-O2"],
    )
    io = Extension("dtls13._io", ["src/dtls13/_io.pyx"], extra_compile_args=["-O2"])
    return cythonize(
        [ext, io],
        language_level=3,
        compiler_directives={"embedsignature": True},
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtRequired})
