"""Jinja extensions of the template (cookiecutter.json's `_extensions`; Cookiecutter and
cruft put the template folder on sys.path while they render).

The filters write an answer so that the file's own parser reads back exactly what was
typed: emoji, right-to-left text, quotes, backslashes, `$(...)`, backticks, braces.
"""

from __future__ import annotations

import re
from pathlib import Path

from cookiecutter.utils import simple_filter
from jinja2 import Environment
from jinja2.ext import Extension

# TOML basic strings escape these two and every control character; the rest is literal
# UTF-8. (Jinja's `tojson` writes astral characters such as emoji as JSON surrogate pairs,
# \ud83d\ude80, which TOML rejects.)
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\"}
# CommonMark: any ASCII punctuation may be backslash-escaped and then shows as itself.
# Escaped: what can change inline text (emphasis, code, links, HTML, entities, GitHub's
# math and strikethrough, a heading's closing #s) ...
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>!&~$#|])")
# ... and what would open a block at the start of a line (a list, a setext underline).
_MARKDOWN_BLOCK_START = re.compile(r"^(\s*|\s*\d+)([-+=]|(?<=\d)[.)])")


# (cookiecutter has no type information: its decorator is untyped to mypy.)
@simple_filter  # type: ignore[untyped-decorator]
def toml_string(value: object) -> str:
    """`value` as a TOML basic string, quotes included."""
    out = []
    for char in str(value):
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@simple_filter  # type: ignore[untyped-decorator]
def markdown_text(value: object) -> str:
    """`value` as Markdown inline text that renders as itself."""
    text = _MARKDOWN_INLINE.sub(r"\\\1", str(value))
    return _MARKDOWN_BLOCK_START.sub(r"\1\\\2", text)


class TemplateFolder(Extension):
    """`template_folder`: the folder this template is rendered from. Cookiecutter tells the
    hooks (`_repo_dir`); cruft, regenerating the project at two commits to update it, does
    not, and the post-gen hook needs the folder for environments/."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals["template_folder"] = str(Path(__file__).resolve().parent)
