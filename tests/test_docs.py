"""The generated README and docs/, as every ci x task combination renders them.

The README is a user's guide read in one sitting; depth lives in docs/*.md beside it.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import TEMPLATE
from markdown_it import MarkdownIt
from markdown_it.token import Token
from test_bake import baked  # noqa: F401  (the same fixture: one bake per combination)

# About ten minutes of reading at ~30 lines a minute of Markdown tables and prose; the
# rendered README is ~260 lines, so a section may grow a little but not a story.
README_LINE_BUDGET = 300
# Phrases that promise what a shipped project already does, or forgot to do.
STALE = ("TODO", "FIXME", "TBD", "will use", "coming soon", "not yet implemented", "for now")
MAKE_COMMAND = re.compile(r"(?:^|[\s`(])make ([a-z][\w-]*)", re.M)
MAKE_RULE = re.compile(r"^([a-z][\w-]*)\s*:(?!=)", re.M)
# The docs quote measurements taken with this template's own targets, named as such.
TEMPLATE_TARGETS = {"bench"}


def guides(project: Path) -> list[Path]:
    return [project / "README.md", *sorted((project / "docs").glob("*.md"))]


def tokens(path: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub and GitLab make: lower case, punctuation dropped,
    spaces as hyphens, a repeated one suffixed -1, -2, ..."""
    parsed, slugs = tokens(path), set()
    counts: dict[str, int] = {}
    for previous, token in zip(parsed, parsed[1:], strict=False):
        if previous.type == "heading_open":
            text = "".join(child.content for child in token.children or [])
            slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            slugs.add(f"{slug}-{counts[slug]}" if slug in counts else slug)
            counts[slug] = counts.get(slug, 0) + 1
    return slugs


def links(path: Path) -> list[str]:
    """Every link and image target in the file."""
    found: list[str] = []
    for token in tokens(path):
        for child in token.children or []:
            if child.type == "link_open":
                found.append(str(child.attrs["href"]))
            elif child.type == "image":
                found.append(str(child.attrs["src"]))
    return found


def test_readme_and_docs_have_no_stray_blank_lines(baked):  # noqa: F811
    problems = []
    for path in guides(baked.project_path):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(baked.project_path)
        if text.startswith("\n") or text.endswith("\n\n") or not text.endswith("\n"):
            problems.append(f"{name}: blank line at the start or end")
        lines = text.split("\n")
        problems += [
            f"{name}:{number}: two blank lines"
            for number, (one, two) in enumerate(zip(lines, lines[1:], strict=False), start=1)
            if not one.strip() and not two.strip() and number < len(lines) - 1
        ]
    assert problems == []


def test_readme_stays_a_short_guide(baked):  # noqa: F811
    lines = (baked.project_path / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_LINE_BUDGET, f"{lines} lines: move the depth into docs/"


def test_readme_and_docs_say_nothing_stale(baked):  # noqa: F811
    found = [
        f"{path.name}: {phrase!r}"
        for path in guides(baked.project_path)
        for phrase in STALE
        if phrase.lower() in path.read_text(encoding="utf-8").lower()
    ]
    assert found == []


def test_every_relative_link_reaches_a_file_and_heading(baked):  # noqa: F811
    project = baked.project_path
    broken = []
    for path in guides(project):
        for target in links(path):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not ours to check offline
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.is_file() or project.resolve() not in linked.parents:
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert broken == []


def test_every_make_target_the_guides_name_exists(baked):  # noqa: F811
    project = baked.project_path
    rules = set(MAKE_RULE.findall((project / "Makefile").read_text(encoding="utf-8")))
    template_rules = set(MAKE_RULE.findall((TEMPLATE / "Makefile").read_text(encoding="utf-8")))
    assert template_rules >= TEMPLATE_TARGETS
    unknown = []
    for path in guides(project):
        parsed = tokens(path)
        inline = [child for token in parsed for child in token.children or []]
        code = [
            token.content
            for token in parsed + inline
            if token.type in ("fence", "code_block", "code_inline")
        ]
        unknown += [
            f"{path.name}: make {target}"
            for text in code
            for target in MAKE_COMMAND.findall(text)
            if target not in rules | TEMPLATE_TARGETS
        ]
    assert rules and unknown == []
