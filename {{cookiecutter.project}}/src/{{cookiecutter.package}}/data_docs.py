"""GX's Data Docs pages, rendered with their Jinja templates compiled once.

GX builds a new Jinja environment for every page it renders, so each validation compiled
the same templates again: most of a Data Docs build. These are GX's own page views with
Jinja's bytecode cache (files in a folder of the user's own under the system temp folder):
a template compiles once, then every later render, in any process, loads it. Jinja checks
each template's source and the Python version, so a GX upgrade recompiles. `suite_runner`
names these views in the Data Docs site it configures.
"""

from __future__ import annotations

import contextlib
from typing import Any

from great_expectations.render.view.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import FileSystemBytecodeCache
from jinja2.bccache import Bucket


class TemplateCache(FileSystemBytecodeCache):
    """Jinja's file cache, where a cache that cannot be read or written is no cache: a
    full or read-only temp folder must never fail a validation."""

    def load_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(OSError, EOFError, ValueError, TypeError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _cache() -> TemplateCache | None:
    try:  # Jinja refuses a cache folder another user owns or others may write to
        return TemplateCache()
    except (OSError, RuntimeError):
        return None


_COMPILED = _cache()


class PageView(DefaultJinjaPageView):
    """A suite's or a validation's page."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _COMPILED


class IndexPageView(DefaultJinjaIndexPageView):
    """The site's index page."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _COMPILED
