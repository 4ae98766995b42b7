"""The README's commands and embedding examples, run exactly as written."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.cli_helpers import ROOT, env

README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    return [b for b in blocks if "trio.run(" in b or "asyncio.run(" in b]


def test_readme_first_command_installs_and_starts_the_echo_server() -> None:
    setup = README.split("## Set-up", 1)[1]
    first = re.search(r"```sh\n(.*?)\n```", setup, re.S)
    assert first is not None and first.group(1) == "pip install . && python -m dtls13 server"
    assert '```sh\npip install -e ".[test]" && python -m pytest\n```' in README


def test_readme_embedding_examples_run_as_written() -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    outputs = []
    for code in blocks:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, env=env(), timeout=60, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout.decode())
    assert outputs[0].startswith("negotiated TLS_") and "b'hello'" in outputs[0]
    assert outputs[1].startswith("b'hello again' ")
    assert outputs[2].startswith("b'hello from asyncio' TLS_")
