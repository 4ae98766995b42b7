"""Sphinx configuration: Markdown pages (MyST) and API reference from the docstrings (autodoc).

Built by the test suite with warnings as errors (tests/project/test_docs.py):
``python -m sphinx -W --keep-going -b html docs docs/_build/html``. No extension here reaches
the network (no intersphinx): the build works offline.
"""

from __future__ import annotations

import re

from pygments.lexers.special import TextLexer
from sphinx.application import Sphinx

import dtls13

project = "dtls13"
author = "dtls13 developers"
copyright = "2026, dtls13 developers"
release = dtls13.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

html_theme = "alabaster"
html_title = f"dtls13 {release}"
html_static_path: list[str] = []


def _parseable_signature(
    app: object,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """Dataclass signatures show defaults as ``<built-in function urandom>`` and
    ``<factory>``, which are not Python: Sphinx then prints the raw text. Write them as
    names."""
    if signature:
        signature = re.sub(r"<built-in function (\w+)>", r"\1", signature)
        signature = signature.replace("<factory>", "...")
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-signature", _parseable_signature)
    # handshake-states.md holds ```mermaid diagrams (drawn by GitHub and Mermaid-aware
    # viewers); the HTML build shows their text as it is.
    app.add_lexer("mermaid", TextLexer)
