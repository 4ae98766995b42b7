"""The README's first command, as a newcomer runs it: a copy of the repository, a new venv,
the command run from the copy's root, and a client that talks to the server it starts."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
import venv
from pathlib import Path

from tests.support.cli_helpers import ROOT, env, run_cli

# What a fresh clone does not have: build products, caches, local peers and venvs.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "*.so", "*.c", "__pycache__", ".peers", ".venv",
    ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache", "_build",
)  # fmt: skip


def readme_first_command() -> str:
    setup = (ROOT / "README.md").read_text().split("## Set-up", 1)[1]
    first = re.search(r"```sh\n(.*?)\n```", setup, re.S)
    assert first is not None
    return first.group(1)


def test_readme_first_command_works_in_a_new_venv_from_the_repository_root(
    tmp_path: Path,
) -> None:
    command = readme_first_command()
    assert command == "pip install . && python -m dtls13 server"
    clone = tmp_path / "dtls13"
    shutil.copytree(ROOT, clone, ignore=NOT_IN_A_CLONE)
    assert (clone / "src" / "dtls13" / "_fast" / "memory.pyx").exists()
    venv_dir = tmp_path / "venv"
    venv.create(venv_dir, with_pip=True)
    bin_dir = venv_dir / "bin"
    shell_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    shell_env.update(VIRTUAL_ENV=str(venv_dir), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    shell_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=clone,
        env=shell_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C below reaches the shell and the server, as a terminal's
        bufsize=0,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    cert_path = None
    try:
        deadline = time.monotonic() + 600  # the build compiles the extension
        while time.monotonic() < deadline and not any("listening on" in x for x in lines):
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline().decode()
                if not line:
                    break
                lines.append(line)
                if "certificate:" in line:
                    cert_path = line.split("certificate:", 1)[1].strip()
            elif proc.poll() is not None:
                break
        listening = [x for x in lines if "listening on" in x]
        if not listening:
            proc.kill()
            raise AssertionError(
                f"the server did not start: {lines} {proc.stderr.read().decode()[-3000:]}"
            )
        assert listening[0].strip() == "dtls13 echo server listening on 127.0.0.1:4433"
        assert cert_path is not None
        # The installed package, not the source tree, is what ran.
        where = subprocess.run(
            [str(bin_dir / "python"), "-c", "import dtls13; print(dtls13.__file__)"],
            cwd=clone, env=shell_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "site-packages" in where.stdout
        client = run_cli(
            "client", "--host", "127.0.0.1", "--port", "4433", "--cafile", cert_path,
            "--server-name", "localhost", input=b"first hour\n", env=env(),
        )  # fmt: skip
        assert client.returncode == 0, client.stderr
        assert client.stdout == b"first hour\n"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err[-3000:]
    assert cert_path is not None and not Path(cert_path).exists()
