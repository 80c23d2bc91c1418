"""EU Clinical Trials Register (EUCTR, legacy EudraCT): HTML search pages and per-country
protocol texts to one StudyRecord per EudraCT number.

Contract (shared/docs/API_NOTES.md section 5): there is no JSON or XML API. The HTML search
``/ctr-search/search?query=...&page=N`` sends 20 trials a page and announces the total as
"Trials with a EudraCT protocol (N)"; each result lists its member-state protocols as links
``/ctr-search/trial/{EudraCT}/{CC}`` with the country's status, e.g. "DE (Completed)" (``CC``
is a two-letter member state or ``3rd`` for a protocol outside the EU/EEA). The full protocol
of one country is plain text at ``/ctr-search/rest/download/trial/{EudraCT}/{CC}``, in the
"Download full trial details" format: a ``Summary`` block (``EudraCT Number:``, ``Trial
Status:``, ``Date on which this record was first entered in the EudraCT database:``,
``Link:``) then one line per field, ``<code> <label>: <value>`` (``A.3 Full title of the
trial: ...``, ``E.7.1 Human pharmacology (Phase I): Yes``), a value running on over the
following lines until the next field; translations carry a language suffix on the label
(``A.3 Full title of the trial (es): ...``) and are not read.

Incremental runs: the register has no "last updated" filter (its ``dateFrom``/``dateTo``
filter the date a trial was first entered in EudraCT, which says nothing about changes) and
its RSS feed ``/ctr-search/rest/feed/bydates?<query>`` covers the last 7 days only. So an
incremental run whose window starts at most ``FEED_DAYS`` days back (the nightly run: the
watermark minus the overlap) reads the feed (:func:`parse_feed`: the EudraCT numbers in its
``<link>`` entries, ``eudract_number:NNNN-NNNNNN-NN``) and downloads only those trials, each
through a search for its number; a feed that lists nothing costs one request. Every other
run (the first, ``--full``, a window older than the feed reaches after missed nights)
re-pages the whole query and downloads every protocol again, and the pipeline's content hash
keeps unchanged trials unchanged. EUCTR is frozen for new trials (CTIS took over in 2023), so
the query's total moves little and the feed is short.

One trial, one record: a trial has one protocol per member state, and the tracker stores ONE
StudyRecord per EudraCT number (registry ``euctr``). Its protocols are put in a canonical order
before anything is read from them, so the same protocols in any order give a byte-identical
record (raw bytes and content hash included):

* ``raw`` is the protocols' texts, exact duplicates dropped, sorted by (country code, text).
* Trial-level fields (title, sponsor, phase, eligibility, ...) come from the *lead* protocol:
  the one first entered into EudraCT (then the lowest country code, then the text), falling
  back on the next protocols in that order for a field the lead leaves empty. List fields
  (conditions, MedDRA terms, interventions) gather every protocol's values in that order,
  without repeats; countries (member states and the E.8.6.3 countries) are sorted.
* ``status_raw`` keeps every country's status, sorted by country: ``"DE: Ongoing; ES:
  Completed"``; ``status`` is derived from all of them by :func:`combine_statuses`.

Layout: a page or text without the markers this module reads (the "Trials with a EudraCT
protocol" tab, ``tr.tricell`` rows, a ``Summary``/``EudraCT Number:`` block) raises one
ParseError line saying the register's layout changed. Missing fields never raise.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bs4 import BeautifulSoup, NavigableString, Tag

from db.records import Intervention, SecondaryId, StudyRecord, content_hash
from sources.base import (
    FETCH_IDS,
    BaseSource,
    Page,
    SourceCount,
    Window,
    pages_for,
    parse_xml,
)
from tracker.config import SourceSettings
from tracker.errors import FetchError, ParseError
from tracker.taxonomy import ctgov_phase
from tracker.trial_ids import REGISTRIES, extract_trial_ids

__all__ = [
    "EUCTR",
    "EuctrItem",
    "Field",
    "Protocol",
    "ProtocolLink",
    "SearchResult",
    "build_search_params",
    "combine_statuses",
    "euctr_phase",
    "parse_download",
    "parse_protocol_text",
    "parse_search_page",
    "parse_trial_page",
    "protocol_url",
    "record_from_protocols",
    "record_from_text",
    "record_from_trial_pages",
    "search_url",
    "trial_page_url",
]

NAME = "euctr"
BASE_URL = "https://www.clinicaltrialsregister.eu/ctr-search"
RECORD_URL = BASE_URL + "/search?query={}"
PAGE_SIZE = 20  # the register sends 20 trials a page; it cannot be changed
EUDRACT_RE = re.compile(r"^(?:19|20)\d{2}-\d{6}-\d{2}$")
_EUDRACT_IN = re.compile(r"(?<![0-9-])((?:19|20)\d{2}-\d{6}-\d{2})(?![0-9])")
_TOTAL_RE = re.compile(r"Trials\s+with\s+a\s+EudraCT\s+protocol\s*\(\s*([0-9][0-9,.]*)\s*\)")
# A protocol link ends in the member state, two letters or "3rd" (not "/results").
_LINK_RE = re.compile(r"/trial/((?:19|20)\d{2}-\d{6}-\d{2})/([A-Za-z]{2}|3[rR][dD])/?\s*$")


# --------------------------------------------------------------------------------------------
# Request builders (pure)
# --------------------------------------------------------------------------------------------


def search_url(base: str = BASE_URL) -> str:
    """The HTML search endpoint under ``base`` (the configured ``.../ctr-search``)."""
    return base.rstrip("/") + "/search"


def build_search_params(
    query: str,
    page: int = 1,
    *,
    entered_from: dt.date | None = None,
    entered_to: dt.date | None = None,
) -> dict[str, str]:
    """Query parameters of one search page (1-based ``page``).

    ``entered_from``/``entered_to`` become the register's ``dateFrom``/``dateTo`` filter
    (YYYY-MM-DD), which restricts the date a trial was *first entered* in EudraCT, not the
    date it last changed; there is no "last updated" filter, so :meth:`EUCTR.fetch` does not
    use them for incremental windows (it re-pages the whole query; see the module docstring).
    Every page of a run repeats the same parameters, only ``page`` changes.
    """
    params = {"query": query, "page": str(max(1, page))}
    if entered_from is not None:
        params["dateFrom"] = entered_from.isoformat()
    if entered_to is not None:
        params["dateTo"] = entered_to.isoformat()
    return params


def feed_url(base: str = BASE_URL) -> str:
    """The RSS feed of the query's changes in the last 7 days (the search's parameters)."""
    return base.rstrip("/") + "/rest/feed/bydates"


def build_feed_params(query: str) -> dict[str, str]:
    """Query parameters of the 7-day feed: the search's query, no page."""
    return {"query": query}


# The feed reaches 7 days back from the register's today; a window starting 6 days back at
# most is inside it with a day to spare (clock differences, a run that starts near midnight).
FEED_DAYS = 6


def feed_covers(window: Window) -> bool:
    """Whether the 7-day feed holds every change of ``window`` (an incremental window that
    starts at most FEED_DAYS before it ends)."""
    return window.since is not None and (window.until - window.since).days <= FEED_DAYS


def protocol_url(eudract: str, country: str, base: str = BASE_URL) -> str:
    """The plain-text full protocol of one member state (``country`` ``DE``, ``3rd``, ...)."""
    return f"{base.rstrip('/')}/rest/download/trial/{eudract}/{country}"


def trial_page_url(eudract: str, country: str, base: str = BASE_URL) -> str:
    """The HTML protocol page of one member state."""
    return f"{base.rstrip('/')}/trial/{eudract}/{country}"


def record_url(eudract: str) -> str:
    """The public address a StudyRecord links to: the register's search for the number."""
    return RECORD_URL.format(eudract)


# --------------------------------------------------------------------------------------------
# Text clean-up
# --------------------------------------------------------------------------------------------

# Line and paragraph separators (U+2028/U+2029, NEL, VT, FF) become newlines; other control
# and zero-width characters go; no-break spaces become spaces.
_SEPARATORS = str.maketrans({"\u2028": "\n", "\u2029": "\n", "\x85": "\n", "\x0b": "\n",
                             "\x0c": "\n", "\r": "\n", "\t": " ", "\xa0": " ", "\u202f": " ",
                             "\u200b": None, "\u200c": None, "\u200d": None, "\u2060": None,
                             "\ufeff": None, "\x7f": None,
                             **{chr(c): None for c in range(0x20) if c not in (9, 10, 11, 12,
                                                                                13)}})


def _clean(value: str | None) -> str | None:
    """``value`` with separators as newlines, each line's runs of spaces as one space, blank
    runs as one blank line; None when nothing is left."""
    if value is None:
        return None
    out: list[str] = []
    for line in value.translate(_SEPARATORS).split("\n"):
        line = " ".join(line.split())
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) or None


def _one_line(value: str | None) -> str | None:
    """``value`` cleaned and flattened to one line."""
    cleaned = _clean(value)
    return " ".join(cleaned.split()) if cleaned else None


_NOT_GIVEN = {"", "-", "na", "n/a", "n.a.", "none", "not applicable",
              "information not present in eudract"}


def _given(value: str | None) -> str | None:
    """``value`` unless it is a placeholder ("NA", "not applicable", ...)."""
    if value is None or value.strip().lower().rstrip(".") in _NOT_GIVEN:
        return None
    return value


def _date(value: str | None) -> str | None:
    """An ISO date ``YYYY-MM-DD`` found at the start of ``value``, else None."""
    if not value:
        return None
    m = re.match(r"\s*(\d{4}-\d{2}-\d{2})\b", value)
    if not m:
        return None
    try:
        dt.date.fromisoformat(m.group(1))
    except ValueError:
        return None
    return m.group(1)


def _decode(raw: bytes | str, what: str) -> str:
    if isinstance(raw, str):
        text = raw
    else:
        if not raw or raw.isspace():
            raise ParseError(f"euctr: {what} is empty")
        text = raw.decode("utf-8", "replace")
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _layout(what: str, marker: str) -> ParseError:
    return ParseError(f"euctr: the layout of the {what} changed ({marker} not found); the "
                      "register changed its pages and the parser needs updating")


# --------------------------------------------------------------------------------------------
# Search page
# --------------------------------------------------------------------------------------------


class ProtocolLink(NamedTuple):
    """One member-state protocol a search result lists: ``DE``, ``3rd``, ... with its status
    as the result shows it ("Completed") and the protocol page's path."""

    country: str
    status: str | None
    url: str


class SearchResult(NamedTuple):
    """One trial of a search page: its EudraCT number and member-state protocols."""

    eudract: str
    protocols: list[ProtocolLink]


def _soup(body: bytes | str, what: str) -> BeautifulSoup:
    if not body or (isinstance(body, bytes) and body.isspace()) or (
            isinstance(body, str) and not body.strip()):
        raise ParseError(f"euctr: {what} is empty")
    with warnings.catch_warnings():
        # bs4 warns about markup that "looks like a URL/file name"; the body is what it is.
        warnings.simplefilter("ignore")
        return BeautifulSoup(body, "lxml")


def _total(text: str) -> int | None:
    m = _TOTAL_RE.search(text)
    if not m:
        return None
    digits = re.sub(r"[,.]", "", m.group(1))
    return int(digits) if digits.isdigit() else None


def parse_search_page(body: bytes | str) -> tuple[list[SearchResult], int]:
    """One HTML search page: its trials (EudraCT number, member-state protocol links with
    statuses, in page order) and the total "Trials with a EudraCT protocol (N)".

    Raises ParseError (one line: the layout changed) when the page has no such total, or
    results whose EudraCT number or protocol links cannot be read.
    """
    soup = _soup(body, "search page")
    total = _total(soup.get_text(" "))
    if total is None:
        raise _layout("search page", "'Trials with a EudraCT protocol (N)'")
    tables = soup.select("table.result")
    if total and not tables:
        raise _layout("search page", "'table.result' of the trials it announces")
    results: list[SearchResult] = []
    for table in tables:
        eudract = None
        box = table.find("input", attrs={"name": "enchx"})
        if isinstance(box, Tag) and EUDRACT_RE.match(str(box.get("value", "")).strip()):
            eudract = str(box.get("value")).strip()
        if eudract is None:
            label = table.find("span", class_="label", string=re.compile("EudraCT Number"))
            cell = label.find_parent("td") if isinstance(label, Tag) else None
            m = _EUDRACT_IN.search(cell.get_text(" ")) if cell is not None else None
            eudract = m.group(1) if m else None
        if eudract is None:
            raise _layout("search page", "a result's 'EudraCT Number'")
        protocols: list[ProtocolLink] = []
        for a in table.find_all("a", href=True):
            m = _LINK_RE.search(str(a["href"]))
            if not m or m.group(1) != eudract:
                continue
            # the status is the element right after the link: <span class="status">(...)
            after = next((n for n in a.next_siblings if isinstance(n, Tag)), None)
            status = (_one_line(after.get_text()) if after is not None and after.name == "span"
                      and "status" in (after.get("class") or []) else None)
            if status:
                status = status.strip().removeprefix("(").removesuffix(")").strip() or None
            country = _code(m.group(2))
            protocols.append(ProtocolLink(country, status, str(a["href"]).strip()))
        results.append(SearchResult(eudract, protocols))
    return results, total


# --------------------------------------------------------------------------------------------
# Protocols: the per-country text (and the HTML page, read into the same shape)
# --------------------------------------------------------------------------------------------


_FEED_NUMBER = re.compile(r"eudract_number:\s*((?:19|20)\d{2}-\d{6}-\d{2})(?![0-9])")


def parse_feed(body: bytes) -> list[str]:
    """The EudraCT numbers of the 7-day feed, distinct, in feed order: those its ``<link>``
    (or ``<guid>``) entries name as ``eudract_number:NNNN-NNNNNN-NN`` (API_NOTES 5.2). A feed
    without items is []. Raises one ParseError line when the body is not XML (an HTML error
    page) or not an RSS or Atom feed."""
    root = parse_xml(body, f"{NAME}: the 7-day feed", ParseError)
    tag = root.tag.rsplit("}", 1)[-1] if isinstance(root.tag, str) else ""
    if tag not in ("rss", "feed", "RDF"):
        raise ParseError(f"{NAME}: the 7-day feed is not an RSS or Atom feed (its root is "
                         f"<{tag}>: an error page, or the register changed it); nothing is "
                         "lost, the next run repeats this window")
    found: dict[str, None] = {}
    for el in root.iter():
        name = el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""
        if name in ("link", "guid", "id"):
            for text in (el.text, el.get("href")):
                for m in _FEED_NUMBER.finditer(text or ""):
                    found.setdefault(m.group(1), None)
    return list(found)


@dataclass(slots=True)
class Field:
    """One protocol field: its code (``A.3``, ``E.7.1``, ``N.``, ``D.IMP``), English label,
    language of a translated value (None for English), value (continuation lines joined with
    newlines, as received) and its first line verbatim."""

    code: str
    label: str
    value: str
    lang: str | None = None
    line: str = ""


@dataclass(slots=True)
class Protocol:
    """One member state's protocol of a trial."""

    eudract: str
    country: str  # "DE", "3rd"; "" when neither the link nor the authority name tells
    summary: dict[str, str]
    fields: list[Field]
    text: str  # the block as received (newline-normalised), the unit ``raw`` is made of

    def get(self, code: str, label: str | None = None) -> list[str]:
        """The English values of ``code`` (whose label starts with ``label``, if given)."""
        low = label.lower() if label else None
        return [f.value for f in self.fields
                if f.code == code and f.lang is None
                and (low is None or f.label.lower().startswith(low))]

    def first(self, code: str, label: str | None = None) -> str | None:
        """The first non-empty English value of ``code``, cleaned."""
        for value in self.get(code, label):
            cleaned = _clean(value)
            if cleaned:
                return cleaned
        return None

    @property
    def status(self) -> str | None:
        """This country's status: the summary's "Trial Status", else "P. End of Trial
        Status"."""
        return _one_line(self.summary.get("Trial Status")) or _one_line(
            self.first("P.", "End of Trial Status"))

    @property
    def first_entered(self) -> str | None:
        """The date this protocol was first entered in EudraCT (ISO), when given."""
        for key, value in self.summary.items():
            if key.lower().startswith("date on which this record was first entered"):
                return _date(value)
        return None

    @property
    def authority(self) -> str | None:
        """"Spain - AEMPS": the national competent authority (or A.1 member state)."""
        return _one_line(self.summary.get("National Competent Authority")) or self.first(
            "A.1", "Member State Concerned")

    def lead_key(self) -> tuple[str, str, str]:
        """Order of preference for trial-level fields: first entered, country, text."""
        return (self.first_entered or "9999-99-99", self.country, self.text)


# Section headings of the text download ("A. Protocol Information"; they end the field before
# them) and the labels of the field lines whose code has no number ("N. Date of Competent
# Authority Decision: ..."). A line such as "P. falciparum ..." or "E. coli ..." in a value is
# neither: it continues the value.
_SECTION_TITLES = ("protocol information", "sponsor information", "applicant identification",
                   "imp identification", "general information on the trial",
                   "population of trial subjects", "investigator networks",
                   "third country", "review by the competent authority", "end of trial",
                   "information on placebo")
_UNNUMBERED_LABELS = ("competent authority decision", "date of competent authority decision",
                      "ethics committee opinion", "date of ethics committee opinion",
                      "end of trial status", "date of the global end of the trial")
_HEADING_RE = re.compile(r"^(?:Sponsor\s+\d+|MedDRA Classification|Summary)\s*$")
_FIELD_RE = re.compile(
    r"^(?P<code>D\.IMP(?=:)|[A-HNP]\.(?:\d+(?:\.\d+)*)?"
    r"(?:\s+(?:and|to)\s+[A-H]\.\d+(?:\.\d+)*)?)(?P<sep>:|[ \t]+)(?P<rest>.*)$")
_LANG_RE = re.compile(r"^(?P<label>.*?)\s*\((?P<lang>[a-z]{2})\)$")
_SUMMARY_RE = re.compile(r"^(?P<key>[A-Z][^:]{1,120}?)\s*:\s*(?P<value>.*)$")
# The "Download full trial details" file opens with this line (not part of any record).
_PREAMBLE = "This file contains full details on each clinical trial"


def _classify(line: str) -> tuple[str, re.Match[str] | None]:
    """("heading" | "field" | "text", match) for one line of a protocol's body."""
    if _HEADING_RE.match(line) or line.startswith(_PREAMBLE):
        return "heading", None
    m = _FIELD_RE.match(line)
    if m is None:
        return "text", None
    if m.group("code").endswith("."):
        rest = m.group("rest").strip().lower()
        if rest.startswith(_SECTION_TITLES) and ": " not in rest and not rest.endswith(":"):
            return "heading", None
        if m.group("code") in ("N.", "P.") and rest.startswith(_UNNUMBERED_LABELS):
            return "field", m
        return "text", None
    return "field", m


def _split_label(rest: str) -> tuple[str, str]:
    if ": " in rest:
        label, value = rest.split(": ", 1)
    elif rest.rstrip().endswith(":"):
        label, value = rest.rstrip()[:-1], ""
    else:
        label, value = rest, ""
    return label.strip(), value


def _blocks(text: str) -> list[list[str]]:
    """The text's records: each starts at a ``Summary`` line followed by ``EudraCT Number:``
    (anything before the first, such as the download's preamble, is dropped)."""
    lines = text.split("\n")  # not splitlines(): U+2028 and friends are not line ends here
    starts = [i for i, line in enumerate(lines[:-1])
              if line.strip() == "Summary" and lines[i + 1].startswith("EudraCT Number:")]
    out = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        block = []
        for line in lines[start:end]:
            if line.startswith(_PREAMBLE):  # a second download's preamble: not this record's
                break
            block.append(line.rstrip())
        while block and not block[-1]:
            block.pop()
        out.append(block)
    return out


def _code(country: str) -> str:
    """A member-state code as the register's links write it: ``DE``, ``3rd``."""
    return "3rd" if country.lower() == "3rd" else country.upper()


def _country(link: str | None, authority: str | None, trial_type: str | None) -> str:
    if link:
        m = _LINK_RE.search(link.strip().rstrip("/"))
        if m:
            return _code(m.group(2))
    if authority:
        name = authority.split(" - ", 1)[0].strip().lower()
        if name in _COUNTRY_CODES:
            return _COUNTRY_CODES[name]
    if trial_type and "outside eu/eea" in trial_type.lower():
        return "3rd"
    return ""


def _protocol(block: list[str]) -> Protocol:
    summary: dict[str, str] = {}
    i = 1
    while i < len(block) and block[i].strip():
        m = _SUMMARY_RE.match(block[i])
        if m:
            summary.setdefault(m.group("key").strip(), m.group("value").strip())
        i += 1
    fields: list[Field] = []
    current: Field | None = None
    extra: list[str] = []

    def close() -> None:
        nonlocal current, extra
        if current is not None and extra:
            current.value = "\n".join([current.value, *extra]).strip("\n")
        current, extra = None, []

    for line in block[i:]:
        kind, m = _classify(line)
        if kind == "heading":
            close()
        elif kind == "field" and m is not None:
            close()
            label, value = _split_label(m.group("rest")) if m.group("sep") != ":" else (
                "", m.group("rest").strip())
            lang = None
            lm = _LANG_RE.match(label)
            if lm:
                label, lang = lm.group("label"), lm.group("lang")
            current = Field(" ".join(m.group("code").split()), label, value, lang, line)
            fields.append(current)
        elif current is not None:
            extra.append(line)
    close()
    eudract = (summary.get("EudraCT Number") or "").strip()
    if not EUDRACT_RE.match(eudract):
        a2 = next((f.value.strip() for f in fields if f.code == "A.2"), "")
        if not EUDRACT_RE.match(a2):
            raise ParseError(f"euctr: a protocol has no valid EudraCT number ({eudract!r})")
        eudract = a2
    if not any(f.code.startswith(("A.", "E.")) for f in fields):
        raise _layout("protocol text", f"'A.'/'E.' field lines of {eudract}")
    country = _country(summary.get("Link"), summary.get("National Competent Authority") or next(
        (f.value for f in fields if f.code == "A.1" and f.lang is None), None),
        summary.get("Clinical Trial Type"))
    return Protocol(eudract, country, summary, fields, "\n".join(block))


def parse_protocol_text(raw: bytes | str) -> list[Protocol]:
    """Every protocol in a text download (one country's or a whole "full trial details"
    file), in the order received.

    Raises ParseError: for an empty body, a text with no ``Summary``/``EudraCT Number:``
    record or no field lines (the layout changed), a record with no valid EudraCT number.
    """
    text = _decode(raw, "protocol text")
    blocks = _blocks(text)
    if not blocks:
        head = " ".join(text[:80].split())
        raise ParseError(f"euctr: the layout of the protocol text changed (no 'Summary' / "
                         f"'EudraCT Number:' record found; it starts {head!r}); the register "
                         "changed its download format or sent an error page")
    return [_protocol(block) for block in blocks]


def _cell_text(tag: Tag) -> str:
    """A cell's text: HTML whitespace collapsed, ``<br>`` and table rows as newlines."""
    parts: list[str] = []
    for node in tag.descendants:
        if isinstance(node, NavigableString):
            if type(node) is NavigableString:  # not a Comment, CData, Doctype, ...
                parts.append(re.sub(r"[ \t\r\n\f\v]+", " ", str(node)))
        elif isinstance(node, Tag) and node.name in ("br", "tr", "p", "li"):
            parts.append("\n")
    return _clean("".join(parts)) or ""


def _render(eudract: str, country: str, summary: dict[str, str], fields: list[Field]) -> str:
    """A protocol read from an HTML page, written in the text-download format."""
    lines = ["Summary", f"EudraCT Number: {eudract}"]
    lines += [f"{key}: {value}" for key, value in summary.items() if key != "EudraCT Number"]
    if country and "Link" not in summary:
        lines.append(f"Link: {BASE_URL}/trial/{eudract}/{country}/")
    section = ""
    for f in fields:
        letter = f.code[0]
        if letter != section:
            lines.append("")
            section = letter
        if f.code == "D.IMP":
            lines.append(f"D.IMP: {f.value}")
        else:
            # one physical line per field line: the value's own newlines continue it
            lines.append(f"{f.code} {f.label}: {f.value}".rstrip())
    return "\n".join(lines)


# Fields the register keeps in several languages (the text download labels the translations
# "(es)", ...; a page shows them as further rows of the value's inner table).
_TRANSLATED = frozenset({"A.3", "A.3.1", "A.3.2", "E.1.1", "E.1.1.1", "E.2.1", "E.2.2", "E.3",
                         "E.4", "E.5.1", "E.5.1.1", "E.5.2", "E.5.2.1", "E.8.2.3.1", "E.8.8",
                         "F.3.3.6.1", "F.5"})


def parse_trial_page(body: bytes | str, country: str | None = None) -> Protocol:
    """One member state's HTML protocol page (``/ctr-search/trial/{EudraCT}/{CC}``), read
    into the same :class:`Protocol` as the text download (and rendered in that format, so
    records built from pages and from texts read the same way).

    ``country`` is the page's ``CC`` when the caller knows it; otherwise it is read from the
    national competent authority ("Germany - BfArM" is ``DE``) or the trial type ("Outside
    EU/EEA" is ``3rd``). Raises ParseError (layout changed) for a page without the summary
    table or ``tr.tricell`` rows, and for a page with no valid EudraCT number.
    """
    soup = _soup(body, "trial page")
    table = soup.select_one("table.summary")
    rows = soup.select("tr.tricell")
    if table is None or not rows:
        raise _layout("trial page", "'table.summary' and 'tr.tricell' rows")
    summary: dict[str, str] = {}
    for tr in table.find_all("tr"):
        cells = tr.find_all("td", recursive=False)
        if len(cells) >= 2:
            key = _one_line(cells[0].get_text()) or ""
            key = key.rstrip(":").strip()
            if key:
                value = _cell_text(cells[1])
                if key == "Trial results":
                    value = "View results" if cells[1].find("a") is not None else (
                        _one_line(value) or "")
                summary.setdefault(key, " ".join(value.split()))
    fields: list[Field] = []
    for tr in soup.select("table.section.content tr"):
        if "tricell" in (tr.get("class") or []):
            first = tr.find("td", class_="first", recursive=False)
            second = tr.find("td", class_="second", recursive=False)
            third = tr.find("td", class_="third", recursive=False)
            if first is None or second is None:
                continue
            code = " ".join(first.get_text().split())
            if not _FIELD_RE.match(code + " x"):
                continue
            label = " ".join(second.get_text().split()).rstrip(":").strip()
            value = _cell_text(third) if third is not None else ""
            nested = third.find("td") if third is not None and code in _TRANSLATED else None
            if isinstance(nested, Tag):  # the English row; further rows are translations
                value = _cell_text(nested)
            fields.append(Field(code, label, value, None, f"{code} {label}: {value}"))
        else:
            blue = tr.find("td", class_="cellBlue", recursive=False)
            text = " ".join(blue.get_text().split()) if isinstance(blue, Tag) else ""
            m = re.fullmatch(r"D\.IMP:\s*(\d+)", text)
            if m:
                fields.append(Field("D.IMP", "", m.group(1), None, f"D.IMP: {m.group(1)}"))
    eudract = (summary.get("EudraCT Number") or "").strip()
    if not EUDRACT_RE.match(eudract):
        a2 = next((f.value.strip() for f in fields if f.code == "A.2"), "")
        if not EUDRACT_RE.match(a2):
            raise ParseError(f"euctr: a trial page has no valid EudraCT number ({eudract!r})")
        eudract = a2
    summary["EudraCT Number"] = eudract
    if country:
        country = _code(country)
    else:
        country = _country(None, summary.get("National Competent Authority") or next(
            (f.value for f in fields if f.code == "A.1"), None), summary.get(
            "Clinical Trial Type"))
    blocks = _blocks(_render(eudract, country, summary, fields))
    if len(blocks) != 1:  # a value line that reads as a record start: not a protocol page
        raise _layout("trial page", "a single protocol")
    return _protocol(blocks[0])


# --------------------------------------------------------------------------------------------
# Phase and status
# --------------------------------------------------------------------------------------------

_PHASE_CODES = {"E.7.1": "PHASE1", "E.7.2": "PHASE2", "E.7.3": "PHASE3", "E.7.4": "PHASE4"}


def euctr_phase(flags: dict[str, str | None]) -> str:
    """The canonical phase of the E.7 yes/no lines (``{"E.7.1": "Yes", ...}``).

    E.7.1 Phase I, E.7.2 II, E.7.3 III, E.7.4 IV; several "Yes" combine as CT.gov phase lists
    do (I+II is ``PHASE1_2``, II+III ``PHASE2_3``, III+IV ``PHASE3``; others ``UNKNOWN``).
    No "Yes" at all (or no E.7 lines) is ``UNKNOWN``: every EUCTR trial is a medicinal-product
    trial, so "not applicable" would be wrong.
    """
    yes = [_PHASE_CODES[c] for c in sorted(_PHASE_CODES)
           if (flags.get(c) or "").strip().lower() == "yes"]
    return ctgov_phase(yes) if yes else "UNKNOWN"


# A country's status -> its kind, for combine_statuses (keys lower-case, spaces collapsed).
_STATUS_KINDS = {
    "ongoing": "ongoing",
    "restarted": "ongoing",
    "completed": "completed",
    "prematurely ended": "ended_early",
    "temporarily halted": "halted",
    "suspended by ca": "halted",
    "not authorised": "not_authorised",
    "prohibited by ca": "not_authorised",
    "trial now transitioned": "transitioned",
    "gb - no longer in eu/eea": "left_eea",
}
# EUCTR's "Ongoing" says a trial is authorised and not ended, never whether it recruits: the
# tracker does not claim recruitment it cannot see, so ongoing reads as active, not recruiting.
ONGOING_STATUS = "ACTIVE_NOT_RECRUITING"


def _status_kind(status: str) -> str:
    key = " ".join(status.lower().split()).strip("() ")
    return _STATUS_KINDS.get(key, "unknown")


def combine_statuses(statuses: Iterable[tuple[str, str | None]]) -> tuple[str, str | None]:
    """(canonical status, status_raw) of a trial from its (country, status) pairs.

    ``status_raw`` lists each distinct pair sorted by country then status: ``"DE: Ongoing;
    ES: Completed"`` (None when no country gives a status). The canonical status, whatever
    the order of the pairs:

    1. "GB - no longer in EU/EEA", "Not Authorised"/"Prohibited by CA" and values the
       register has not used before are ignored while another country gives a known status;
    2. any country Ongoing (or Restarted): ``ACTIVE_NOT_RECRUITING`` (:data:`ONGOING_STATUS`);
    3. else any Temporarily Halted (or Suspended by CA): ``SUSPENDED``;
    4. else any "Trial now transitioned" (carried on in CTIS): ``OTHER``;
    5. else all ended: all Prematurely Ended is ``TERMINATED``; Completed somewhere (alone or
       with Prematurely Ended elsewhere: the trial ran to its end) is ``COMPLETED``;
    6. else only Not Authorised/Prohibited: ``WITHDRAWN`` (it never ran); only "GB - no
       longer in EU/EEA" or unknown values: ``OTHER``; no status at all: ``UNKNOWN``.
    """
    pairs = sorted({(c.strip(), s) for c, raw in statuses if raw and (s := _one_line(raw))})
    raw_text = "; ".join(f"{c or '?'}: {s}" for c, s in pairs) or None
    kinds = {_status_kind(s) for _, s in pairs}
    main = kinds - {"left_eea", "not_authorised", "unknown"}
    if "ongoing" in main:
        status = ONGOING_STATUS
    elif "halted" in main:
        status = "SUSPENDED"
    elif "transitioned" in main:
        status = "OTHER"
    elif "completed" in main:
        status = "COMPLETED"
    elif "ended_early" in main:
        status = "TERMINATED"
    elif "not_authorised" in kinds:
        status = "WITHDRAWN"
    elif kinds:
        status = "OTHER"
    else:
        status = "UNKNOWN"
    return status, raw_text


# --------------------------------------------------------------------------------------------
# Protocols -> one StudyRecord
# --------------------------------------------------------------------------------------------


def _first(protocols: list[Protocol], code: str, label: str | None = None) -> str | None:
    for p in protocols:
        value = p.first(code, label)
        if value:
            return value
    return None


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: set[str] = set()
    out = []
    for v in values:
        if v and v.casefold() not in seen:
            seen.add(v.casefold())
            out.append(v)
    return out


def _imps(p: Protocol) -> list[list[Field]]:
    """The protocol's IMP blocks (fields from each ``D.IMP: n`` to the next, or to D.8/E.)."""
    out: list[list[Field]] = []
    current: list[Field] | None = None
    for f in p.fields:
        if f.code == "D.IMP":
            current = []
            out.append(current)
        elif f.code.startswith(("D.1", "D.2", "D.3")):
            if current is None:
                current = []
                out.append(current)
            current.append(f)
        elif f.code.startswith(("D.8", "E.", "F.", "G.", "N.", "P.")):
            current = None
    return out


_ATIMP = {"D.3.11.3.1": "somatic cell therapy medicinal product",
          "D.3.11.3.2": "gene therapy medicinal product",
          "D.3.11.3.3": "tissue engineered product",
          "D.3.11.3.4": "combination ATIMP"}


def _intervention(imp: list[Field]) -> Intervention | None:
    def get(code: str) -> list[str]:
        return [v for f in imp if f.code == code and f.lang is None
                and (v := _given(_one_line(f.value)))]

    def yes(code: str) -> bool:
        return any(v.lower() == "yes" for v in get(code))

    candidates = get("D.3.1") + get("D.3.8") + get("D.3.9.3") + get("D.3.2") + get(
        "D.2.1.1.1")
    if not candidates:
        return None
    name = candidates[0]
    others = [v for v in _unique(get("D.2.1.1.1") + get("D.3.2") + get("D.3.8") + get(
        "D.3.9.2") + get("D.3.9.3")) if v.casefold() != name.casefold()]
    kinds = [label for code, label in _ATIMP.items() if yes(code)]
    if yes("D.3.11.3.2"):
        kind = "GENETIC"
    elif kinds or yes("D.3.11.3") or yes("D.3.11.2"):
        kind = "BIOLOGICAL"
    else:
        kind = "DRUG"
    parts = []
    for label, code in (("Role", "D.1.2 and D.1.3"), ("Pharmaceutical form", "D.3.4"),
                        ("Route", "D.3.7")):
        values = get(code)
        if values:
            parts.append(f"{label}: {', '.join(_unique(values))}")
    strengths = [f"{n} {u}" for n, u in zip(get("D.3.10.3"), get("D.3.10.1"), strict=False)]
    if strengths:
        parts.append(f"Strength: {', '.join(_unique(strengths))}")
    if kinds:
        parts.append(f"Advanced therapy: {', '.join(kinds)}")
    elif yes("D.3.11.3"):
        parts.append("Advanced therapy IMP")
    other_type = get("D.3.11.13.1")
    if other_type:
        parts.append(f"Other medicinal product type: {other_type[0]}")
    return Intervention(type=kind, name=name, description="; ".join(parts) or None,
                        other_names=others)


def _interventions(protocols: list[Protocol]) -> list[Intervention]:
    out: list[Intervention] = []
    seen: set[str] = set()
    for p in protocols:
        for imp in _imps(p):
            iv = _intervention(imp)
            if iv is not None and iv.name.casefold() not in seen:
                seen.add(iv.name.casefold())
                out.append(iv)
    return out


def _int(value: str | None) -> int | None:
    if not value:
        return None
    m = re.fullmatch(r"\s*(\d{1,9})\s*", value)
    return int(m.group(1)) if m else None


def _enrollment(protocols: list[Protocol]) -> int | None:
    """Planned subjects: the whole trial (F.4.2.2), else the EEA (F.4.2.1), else, for a trial
    of one member state, that state's number (F.4.1)."""
    for code in ("F.4.2.2", "F.4.2.1"):
        for p in protocols:
            n = _int(p.first(code))
            if n is not None:
                return n
    if len({p.country for p in protocols}) == 1:
        return _int(_first(protocols, "F.4.1"))
    return None


def _eligibility(lead: list[Protocol]) -> str | None:
    inclusion = _first(lead, "E.3")
    exclusion = _first(lead, "E.4")
    parts = []
    if inclusion:
        parts.append(f"Inclusion criteria:\n{inclusion}")
    if exclusion:
        parts.append(f"Exclusion criteria:\n{exclusion}")
    fields = lead[0].fields if lead else []
    ages = [f.label for f in fields if re.fullmatch(r"F\.1\.(?:1\.\d|2|3)", f.code)
            and f.lang is None and f.value.strip().lower() == "yes"]
    sexes = [f.label for f in fields
             if f.code in ("F.2.1", "F.2.2") and f.value.strip().lower() == "yes"]
    if ages or sexes:
        population = []
        if ages:
            population.append(f"Age groups: {', '.join(ages)}")
        if sexes:
            population.append(f"Sex: {', '.join(sexes)}")
        parts.append("; ".join(population))
    return "\n\n".join(parts) or None


def _phase(lead: list[Protocol]) -> tuple[str, str | None]:
    for p in lead:
        lines = {f.code: f for f in p.fields if f.code in _PHASE_CODES and f.lang is None}
        if lines:
            phase = euctr_phase({c: f.value for c, f in lines.items()})
            raw = "\n".join(lines[c].line for c in sorted(lines))
            return phase, raw
    return "UNKNOWN", None


def _secondary_ids(lead: list[Protocol], eudract: str) -> list[SecondaryId]:
    out: list[SecondaryId] = []
    code = _given(_one_line(_first(lead, "A.4.1")))
    if code:
        out.append(SecondaryId(code, "OTHER", "Sponsor's protocol code"))
    seen = {eudract}
    for p in lead:
        for f in p.fields:
            if f.code.startswith("A.5") and f.lang is None:
                for tid in extract_trial_ids(f.value):
                    if tid.registry_id not in seen:
                        seen.add(tid.registry_id)
                        out.append(SecondaryId(tid.registry_id, "REGISTRY",
                                               REGISTRIES.get(tid.registry, tid.registry)))
    return out


_SPONSOR_CLASS = {"commercial": "INDUSTRY", "non-commercial": "OTHER"}


def record_from_protocols(protocols: Iterable[Protocol]) -> StudyRecord:
    """ONE StudyRecord of a trial from its member-state protocols, in any order.

    The protocols must all carry the same EudraCT number (ParseError otherwise, or for none).
    Exact duplicates are dropped; see the module docstring for the canonical order, the lead
    protocol and :func:`combine_statuses` for the status. ``raw`` is the canonical text
    (:func:`record_from_text` of it gives this same record).
    """
    unique = {p.text: p for p in protocols}
    if not unique:
        raise ParseError("euctr: a trial item holds no protocol (the search result listed no "
                         "member-state protocol, or none could be read)")
    numbers = sorted({p.eudract for p in unique.values()})
    if len(numbers) > 1:
        raise ParseError(f"euctr: one trial item holds protocols of {len(numbers)} trials "
                         f"({', '.join(numbers)})")
    eudract = numbers[0]
    canonical = sorted(unique.values(), key=lambda p: (p.country, p.text))
    lead = sorted(canonical, key=Protocol.lead_key)
    raw = ("\n\n".join(p.text for p in canonical) + "\n").encode("utf-8")

    title = _one_line(_first(lead, "A.3", "Full title")) or _one_line(
        _first(lead, "A.3.1")) or _one_line(_first(lead, "A.3.2"))
    if not title:
        raise ParseError(f"euctr: {eudract} has no title (A.3)")
    short = _given(_one_line(_first(lead, "A.3.2")))
    status, status_raw = combine_statuses((p.country or (p.authority or ""), p.status)
                                          for p in canonical)
    phase, phase_raw = _phase(lead)
    conditions = _unique(_one_line(v) for p in lead for v in p.get("E.1.1"))
    if not conditions:
        conditions = _unique(_one_line(v) for p in lead for v in p.get("E.1.1.1"))
    meddra = _unique(_one_line(v) for p in lead for v in p.get("E.1.2", "Term"))
    first_entered = sorted(d for p in canonical if (d := p.first_entered))
    authorised = sorted(d for p in canonical
                        if (p.first("N.", "Competent Authority Decision") or "").lower()
                        .startswith("authorised")
                        and (d := _date(p.first("N.", "Date of Competent Authority Decision"))))
    ends = sorted(d for p in canonical
                  if (d := _date(p.first("P.", "Date of the global end of the trial"))))
    countries = _unique(
        [(p.authority or "").split(" - ", 1)[0].strip() or None for p in canonical]
        + [_one_line(line) for p in canonical for v in p.get("E.8.6.3")
           for line in v.split("\n")])
    sponsor_status = (_one_line(_first(lead, "B.3.1 and B.3.2")) or "").lower()
    # The register's own "Start Date": the date an EEA trial was authorised to proceed,
    # for a trial outside the EU/EEA the date it was entered in EudraCT.
    enrollment = _enrollment(lead)
    start = authorised[0] if authorised else (
        first_entered[0] if first_entered and all(p.country == "3rd" for p in canonical)
        else None)
    return StudyRecord(
        registry=NAME,
        registry_id=eudract,
        title=title,
        url=record_url(eudract),
        raw=raw,
        content_hash=content_hash(raw),
        official_title=_one_line(_first(lead, "A.3", "Full title")),
        acronym=short if short and len(short) <= 40 else None,
        study_type="INTERVENTIONAL",
        phase=phase,
        phase_raw=phase_raw,
        status=status,
        status_raw=status_raw,
        conditions=conditions,
        keywords=meddra,
        interventions=_interventions(lead),
        enrollment=enrollment,
        enrollment_type="ESTIMATED" if enrollment is not None else None,
        sponsor=_one_line(_first(lead, "B.1.1")),
        sponsor_class=_SPONSOR_CLASS.get(sponsor_status),
        first_posted=dt.date.fromisoformat(first_entered[0]) if first_entered else None,
        start_date=start,
        completion_date=ends[-1] if ends else None,
        has_results=any("view results" in (p.summary.get("Trial results") or "").lower()
                        for p in canonical),
        primary_outcomes=[v for v in [_first(lead, "E.5.1")] if v],
        countries=sorted(c for c in countries if c),
        brief_summary=_first(lead, "E.2.1"),
        detailed_description=_first(lead, "E.2.2"),
        eligibility=_eligibility(lead),
        secondary_ids=_secondary_ids(lead, eudract),
    )


def record_from_text(raw: bytes | str, eudract: str | None = None) -> StudyRecord:
    """The StudyRecord of one trial's protocol text(s) (an item's bytes, or a stored
    ``raw``). ``eudract``, when given, must be the trial the text holds. Raises ParseError
    for a text of another trial or of several, and as :func:`parse_protocol_text` does."""
    protocols = parse_protocol_text(raw)
    numbers = sorted({p.eudract for p in protocols})
    if eudract is not None and numbers != [eudract]:
        raise ParseError(f"euctr: the protocol text for {eudract} holds "
                         f"{', '.join(numbers)}")
    return record_from_protocols(protocols)


def record_from_trial_pages(pages: Iterable[bytes | str]) -> StudyRecord:
    """The StudyRecord of one trial from its member states' HTML protocol pages."""
    return record_from_protocols(parse_trial_page(page) for page in pages)


def parse_download(raw: bytes | str) -> list[StudyRecord]:
    """A "Download full trial details" file of many trials: one record per EudraCT number,
    sorted by number."""
    by_trial: dict[str, list[Protocol]] = {}
    for p in parse_protocol_text(raw):
        by_trial.setdefault(p.eudract, []).append(p)
    return [record_from_protocols(by_trial[n]) for n in sorted(by_trial)]


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class EuctrItem:
    """One trial as fetched: its EudraCT number and its member states' protocol texts,
    concatenated in the order downloaded."""

    eudract: str | None
    raw: bytes
    countries: list[str] = field(default_factory=list)


_FIRST_NUMBER = re.compile(rb"EudraCT Number:\s*((?:19|20)\d{2}-\d{6}-\d{2})")


class EUCTR(BaseSource):
    """The EU Clinical Trials Register source (``euctr``)."""

    name = NAME
    kind = "study"
    registry = NAME
    capabilities = frozenset({FETCH_IDS})

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings

    @property
    def base(self) -> str:
        return self.settings.url.rstrip("/")

    @staticmethod
    def parse_raw(raw: bytes) -> StudyRecord:
        return record_from_text(raw)

    def _search(self, http: Any, query: str, page: int) -> tuple[list[SearchResult], int]:
        body = http.get(NAME, search_url(self.base), build_search_params(query, page)).content
        return parse_search_page(body)

    def _item(self, http: Any, result: SearchResult) -> EuctrItem:
        """Download every member-state protocol of ``result`` (sorted by country)."""
        countries = sorted({p.country for p in result.protocols})
        texts = [http.get(NAME, protocol_url(result.eudract, cc, self.base)).content.rstrip()
                 for cc in countries]
        raw = b"\n\n".join(t for t in texts if t)
        return EuctrItem(result.eudract, raw + b"\n" if raw else b"", countries)

    def _by_number(self, http: Any, eudract: str) -> EuctrItem | None:
        """One trial by its EudraCT number: the register's search for it, then its protocols;
        None when the register does not list it."""
        try:
            results, _ = self._search(http, eudract, 1)
        except FetchError as exc:
            if exc.status_code != 404:
                raise
            return None
        for result in results:
            if result.eudract == eudract:
                return self._item(http, result)
        return None

    def _feed(self, http: Any) -> list[str]:
        body = http.get(NAME, feed_url(self.base), build_feed_params(self.settings.query))
        return parse_feed(body.content)

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """Yield the trials of ``window`` as pages, each trial with all its member-state
        protocol texts. A window the 7-day feed covers (``feed_covers``) downloads the trials
        the feed names, as one page; any other re-pages the whole query: the register cannot
        filter on last change (module docstring)."""
        if window.since is not None and window.since > window.until:
            return
        if feed_covers(window):
            items = [item for item in (self._by_number(http, n) for n in self._feed(http))
                     if item is not None]
            yield Page(items=items, total=len(items))
            return
        # Paging is bounded by the first page's total (every search page announces one; a
        # page without it is a ParseError): pages_for(total) pages, or fewer when a page comes
        # back empty (the pipeline then reports the shortfall against the total).
        results, total = self._search(http, self.settings.query, 1)
        last = pages_for(total, PAGE_SIZE)
        page = 1
        while True:
            yield Page(items=[self._item(http, r) for r in results],
                       total=total if page == 1 else None)
            if not results or page >= last:
                return
            page += 1
            results, _ = self._search(http, self.settings.query, page)

    def count(self, http: Any, window: Window) -> SourceCount:
        """The trials a run would download: for a window the 7-day feed covers, the feed's
        (one request); else the query's total from its first search page. The requests are
        the search pages (or one search per fed trial) plus one download per member-state
        protocol, estimated from the protocols per trial on that first page."""
        if window.since is not None and window.since > window.until:
            return SourceCount(0, 0)
        if feed_covers(window):
            fed = len(self._feed(http))
            return SourceCount(fed, 1 + 2 * fed,
                               note="the 7-day feed; one search and about one protocol "
                                    "download a trial")
        results, total = self._search(http, self.settings.query, 1)
        per_trial = (sum(len(r.protocols) for r in results) / len(results)) if results else 1.0
        downloads = round(total * per_trial)
        return SourceCount(total, pages_for(total, PAGE_SIZE) + downloads,
                           note=f"about {downloads} protocol downloads (one per member state), "
                                "estimated from the first page")

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        """Yield each trial of ``ids`` (EudraCT numbers) as a page of one: the register's
        search for the number, then its protocols. A number the register does not list is
        skipped (it stays quarantined); another id is never requested."""
        for eudract in ids:
            if EUDRACT_RE.match(eudract):
                item = self._by_number(http, eudract)
                if item is not None:
                    yield Page(items=[item])

    def parse(self, item: EuctrItem) -> StudyRecord:
        """One trial's record (see :func:`record_from_protocols`)."""
        if not item.raw.strip():
            raise ParseError(f"euctr: {item.eudract}: the search result lists no member-state "
                             "protocol to download")
        return record_from_text(item.raw, item.eudract)

    def record_id(self, item: EuctrItem) -> str | None:
        """The EudraCT number of an item."""
        return item.eudract

    def item_bytes(self, item: EuctrItem) -> bytes:
        """The item's protocol texts, as downloaded."""
        return item.raw

    def item_from_bytes(self, raw: bytes) -> EuctrItem:
        """Rebuild an item from stored (quarantined) bytes."""
        m = _FIRST_NUMBER.search(raw)
        return EuctrItem(m.group(1).decode() if m else None, raw)


# Member-state names as the register writes them ("Germany - BfArM") -> link codes.
_COUNTRY_CODES = {
    "austria": "AT", "belgium": "BE", "bulgaria": "BG", "croatia": "HR", "cyprus": "CY",
    "czech republic": "CZ", "czechia": "CZ", "denmark": "DK", "estonia": "EE",
    "finland": "FI", "france": "FR", "germany": "DE", "greece": "GR", "hungary": "HU",
    "iceland": "IS", "ireland": "IE", "italy": "IT", "latvia": "LV", "liechtenstein": "LI",
    "lithuania": "LT", "luxembourg": "LU", "malta": "MT", "netherlands": "NL",
    "norway": "NO", "poland": "PL", "portugal": "PT", "romania": "RO", "slovakia": "SK",
    "slovenia": "SI", "spain": "ES", "sweden": "SE", "united kingdom": "GB",
    "outside eu/eea": "3rd",
}
