"""Raw archives: ``tracker update --save-raw DIR`` keeps every page a source sent, and
``tracker import DIR`` reads them back through the same pipeline, quarantine and history as a
fetch (an air-gapped mirror; re-processing an archive after a parser fix).

Layout: ``DIR/<source>/<run started, UTC>-<page number>.jsonl``. Each file is one page: a
first line ``{"source", "page", "total"}`` (the count the API announced with it), then one
line per record ``{"raw": base64 of the source's item_bytes}``. Any source that can read its
own stored bytes back (``item_from_bytes``) can be archived; nothing else is assumed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sources.base import Page
from tracker.errors import ConfigError, ParseError


class RawArchive:
    """Writes one source run's pages into ``root/<source>/``."""

    def __init__(self, root: Path, source: str) -> None:
        self.folder = root / source
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--save-raw: cannot create {self.folder}: "
                              f"{exc.strerror or exc}") from None
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        self.source = source
        self.pages = 0

    def save(self, page: Page, item_bytes: Any) -> None:
        self.pages += 1
        path = self.folder / f"{self.stamp}-{self.pages:05d}.jsonl"
        lines = [json.dumps({"source": self.source, "page": self.pages, "total": page.total})]
        lines += [json.dumps({"raw": base64.b64encode(item_bytes(item)).decode("ascii")})
                  for item in page.items]
        tmp = path.with_suffix(".part")
        try:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            tmp.replace(path)  # a page is in the archive whole or not at all
        except OSError as exc:
            raise ConfigError(f"--save-raw: cannot write {path}: {exc.strerror or exc}") from None


def archived_sources(root: Path) -> list[str]:
    """The sources ``root`` holds pages of (sub-folders with ``*.jsonl``)."""
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a folder of saved pages (tracker update "
                          "--save-raw DIR writes one)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.jsonl")))


def read_pages(folder: Path, item_from_bytes: Any) -> Iterator[Page]:
    """The pages of one source's folder, oldest run first, each as the API sent it."""
    for path in sorted(folder.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            head = json.loads(lines[0])
            items = [item_from_bytes(base64.b64decode(json.loads(line)["raw"], validate=True))
                     for line in lines[1:] if line.strip()]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ParseError(f"{folder.name}: {path.name} is not a page saved by tracker "
                             f"update --save-raw ({type(exc).__name__}); save the pages again"
                             ) from None
        yield Page(items=items, total=head.get("total"))
