"""Registry and journal text made safe to show: one cleaner and one URL check for every
renderer (terminal tables, markdown, CSV, the digest's HTML and markdown, the Atom feed).

Every string a registry or journal sends is treated as hostile: ``clean_text`` removes
complete escape sequences (OSC, CSI, DCS, ...), then every remaining C0 control (ESC, BEL,
NUL, ...), DEL, C1 control (0x80-0x9f) and Unicode direction override; line breaks become
spaces except in multi-line fields; surrogate pairs are joined and lone surrogates become
U+FFFD. ``safe_url`` gives a link only for an absolute http(s) URL with a host, with the
characters that could end a markdown link or an attribute percent-encoded.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

# Complete escape sequences, 7-bit and 8-bit forms: control strings (OSC, DCS, SOS, PM, APC)
# up to their terminator (BEL or ST), CSI sequences, and the other two-character escapes.
_ESCAPE_SEQUENCE = re.compile(
    "(?:\x1b[\\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\\\|\x9c)"
    "|(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]"
    "|\x1b[ -/]*[0-~]"
)
_LINE_BREAK = re.compile("\r\n|[\r\n\x0b\x0c\x85\u2028\u2029]")
# What is left after line breaks are dealt with: C0 but tab and newline, DEL, C1, and the
# bidi embeddings, overrides and isolates (text shown in another order than it is stored).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"[ \t]{2,}")


def _fix_surrogates(text: str) -> str:
    """Surrogate pairs joined into the character they encode; lone ones become U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    text = _SURROGATE_PAIR.sub(
        lambda m: m.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le"), text)
    return _SURROGATE.sub("\ufffd", text)


def _plain(value: Any) -> str:
    """A value as text: None as "", lists joined with "; ", booleans as yes/no."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "; ".join(_plain(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def clean_text(value: Any, *, multiline: bool = False) -> str:
    """``value`` as text safe to print: escape sequences and control characters removed
    (see the module docstring), lone surrogates replaced. Line breaks and tabs become single
    spaces unless ``multiline`` (then line breaks become ``\\n`` and tabs stay)."""
    text = _plain(value)
    if not text:
        return ""
    text = _fix_surrogates(text)
    text = _ESCAPE_SEQUENCE.sub("", text)
    if multiline:
        text = _LINE_BREAK.sub("\n", text)
    else:
        text = _SPACES.sub(" ", _LINE_BREAK.sub(" ", text).replace("\t", " "))
    return _CONTROL.sub("", text)


# Characters a link URL keeps as they are; everything else (space ( ) < > " ' ` \ { } | ^,
# non-ASCII) is percent-encoded. "%" is kept so that existing escapes stay single.
_URL_SAFE = "/:?#@!$&*+,;=%~-._"


def safe_url(value: Any) -> str | None:
    """An http(s) URL fit for a markdown link destination, or None (other schemes, relative
    URLs). Controls and whitespace are dropped; ``( ) < >``, quotes, backslash, ``|`` and
    non-ASCII are percent-encoded."""
    text = re.sub(r"[\t\n]", "", clean_text(value, multiline=True)).strip()
    if not text:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(text, safe=_URL_SAFE, encoding="utf-8", errors="replace")


def one_line_text(value: Any) -> str:
    """``clean_text`` on one line with runs of whitespace collapsed and no padding."""
    return " ".join(clean_text(value).split())


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~&$])")
_MD_LINE_START = re.compile(r"^(?:([-+=])|(\d+)([.)]))")


def md_escape(value: Any) -> str:
    """Plain text escaped for markdown (inline, one line): markdown punctuation
    backslash-escaped, a leading list or heading marker escaped, and ``://`` / ``www.``
    broken up so that a URL in registry text does not become a link."""
    text = _MD_SPECIAL.sub(r"\\\1", one_line_text(value))
    text = text.replace("://", r":\/\/")
    text = re.sub(r"(?i)\bwww\.", lambda m: m.group(0)[:-1] + r"\.", text)
    return _MD_LINE_START.sub(
        lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), text)
