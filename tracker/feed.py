"""The Atom feed of what is new and what changed, built with feedgen from the digest data.

``build_feed`` takes the plain dict that ``tracker.digest`` builds (the same data the digest
page shows) and returns Atom XML: one entry per new trial, notable change, results paper and
other new paper, in the dict's order, each with an id derived only from its ``entry_key`` so
that a feed reader sees the same entry as the same entry on every run.

``validate_atom`` is an offline check of the RFC 4287 rules that can be expressed without a
network or a schema: what the tests and ``tracker feed --check`` use as a feed validator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from feedgen.feed import FeedGenerator
from lxml import etree

from tracker import __version__
from tracker.text import clean_text as text_clean
from tracker.text import safe_url

ENTRY_ID_PREFIX = "tag:msc-trial-tracker,2026:"
DEFAULT_FEED_ID = "tag:msc-trial-tracker,2026:feed"
DEFAULT_TITLE = "MSC therapy: latest advancements"
AUTHOR_NAME = "MSC trial tracker"
ALTERNATE_URL = "https://clinicaltrials.gov/"
GENERATOR_NAME = "MSC trial tracker"
CATEGORY_SCHEME = "tag:msc-trial-tracker,2026:category:"

ATOM_NS = "http://www.w3.org/2005/Atom"
XHTML_NS = "http://www.w3.org/1999/xhtml"

# Characters XML 1.0 cannot carry (C0 controls but tab, newline and carriage return; U+FFFE,
# U+FFFF) and, on top, DEL and the C1 controls (legal XML, but 0x9B is an 8-bit CSI and
# none of them belongs in text meant for people). Lone surrogates are handled separately.
_NONCHARACTERS = re.compile("[\ufffe\uffff]")

# (digest section, title prefix); "changes" items get their prefix from the change itself.
_SECTIONS = (
    ("new_trials", "New trial"),
    ("changes", None),
    ("results_papers", "Results paper"),
    ("papers", "New paper"),
)

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))")
_IRI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HEADLINE_MAX = 80
# A link without rel is an alternate link (RFC 4287 4.2.7.2); feedgen 1.0 drops the rel of
# entry links, so the entries' links come out that way.
_ALTERNATE_RELS = ("alternate", "http://www.iana.org/assignments/relation/alternate")


# ------------------------------------------------------------------------- text hygiene -----


def clean_text(value: Any) -> str:
    """``value`` as a string XML 1.0 can carry: ``tracker.text.clean_text`` (escape sequences,
    controls and bidi overrides removed, surrogates fixed; line breaks kept) and the
    noncharacters U+FFFE/U+FFFF removed. ``None`` gives ``""``."""
    return _NONCHARACTERS.sub("", text_clean(value, multiline=True))


def _one_line(value: Any) -> str:
    """Clean text with every run of whitespace (newlines included) squashed to one space."""
    return " ".join(clean_text(value).split())


def _http_url(value: Any) -> str | None:
    """The URL when it is an absolute http(s) URL with a host (``tracker.text.safe_url``)."""
    return safe_url(value)


# ------------------------------------------------------------------------------ ids, dates --


def entry_id(entry_key: str) -> str:
    """The entry's Atom id: ``tag:msc-trial-tracker,2026:`` + the key percent-encoded (every
    character but letters, digits and ``-._~:@/`` as UTF-8 ``%XX``). The mapping is
    one-to-one, so equal keys give equal ids and different keys different ids."""
    return ENTRY_ID_PREFIX + quote(clean_text(entry_key), safe=":@-._~/")


def _midnight_utc(value: Any) -> dt.datetime | None:
    """A registry date (``YYYY-MM-DD``, a ``date`` or an aware ``datetime``) as a UTC
    datetime; a date at 00:00:00Z. Partial dates and anything unreadable give None."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else None
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    text = clean_text(value).strip()
    if _ISO_DAY.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            return None
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return _timestamp(text)


def _timestamp(value: Any) -> dt.datetime | None:
    """An ISO 8601 / RFC 3339 timestamp with an offset (``2026-12-01T08:00:00Z``) in UTC."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else None
    text = clean_text(value).strip()
    if not text or "T" not in text.upper():
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.UTC)


def _generated_at(data: Mapping[str, Any]) -> dt.datetime:
    """When the digest was made: ``generated_at``, else the period's end at 00:00Z, else now."""
    found = _timestamp(data.get("generated_at"))
    if found is None:
        period = data.get("period") or {}
        found = _midnight_utc(period.get("until")) if isinstance(period, Mapping) else None
    return found or dt.datetime.now(dt.UTC).replace(microsecond=0)


# ------------------------------------------------------------------------------ the entries --


def _items(data: Mapping[str, Any]) -> Iterator[tuple[str, str | None, Mapping[str, Any],
                                                      str]]:
    """(section, title prefix, item, group label) for every item of the feed's sections, in
    the dict's order; grouped sections are flattened."""
    for section, prefix in _SECTIONS:
        for block in data.get(section) or ():
            if not isinstance(block, Mapping):
                continue
            if "items" in block and "kind" not in block:
                group = _one_line(block.get("group_label") or block.get("group"))
                for item in block.get("items") or ():
                    if isinstance(item, Mapping):
                        yield section, prefix, item, group
            else:
                yield section, prefix, block, ""


def _fallback_key(section: str, item: Mapping[str, Any]) -> str:
    """An entry key for an item that came without one (digest.py always gives one)."""
    ident = clean_text(item.get("id")) or clean_text(item.get("url")) or \
        clean_text(item.get("title"))
    if section == "changes":
        parts = [clean_text(item.get(k)) for k in ("change_kind", "date", "old", "new")]
        return "change:" + ident + ":" + ":".join(parts)
    kind = "study" if section == "new_trials" else "paper"
    return f"{kind}:{ident}:new"


def _shorten(text: str, limit: int = _HEADLINE_MAX) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return (cut or text[: limit - 1]) + "\u2026"


def _change_headline(item: Mapping[str, Any]) -> str:
    """A short "what changed" for a change entry's title: the ``why`` up to its first
    parenthesis or sentence end, else the change kind with old -> new."""
    why = _one_line(item.get("why"))
    if why:
        short = re.split(r" \(|\. |; ", why, maxsplit=1)[0].rstrip(" .:")
        return _shorten(short or why)
    kind = _one_line(item.get("change_kind")).replace("_", " ")
    headline = (kind[:1].upper() + kind[1:] + " changed") if kind else "Changed"
    old, new = _one_line(item.get("old")), _one_line(item.get("new"))
    if old or new:
        headline += f" ({old or '-'} \u2192 {new or '-'})"
    return _shorten(headline)


def _content(item: Mapping[str, Any], section: str) -> str:
    """The entry's plain-text body: why, labels, phase and status, id, what changed, snippet."""
    lines: list[str] = []
    why = _one_line(item.get("why"))
    if why:
        lines.append(why)
    if section == "changes":
        kind = _one_line(item.get("change_kind")).replace("_", " ")
        old, new = _one_line(item.get("old")), _one_line(item.get("new"))
        if old or new:
            lines.append(f"{kind.capitalize() or 'Value'}: {old or '-'} \u2192 {new or '-'}")
    labels = _one_line(item.get("labels"))
    if labels:
        lines.append(f"Labels: {labels}")
    facts = [x for x in (_one_line(item.get("phase_label")), _one_line(item.get("status_label")))
             if x]
    if facts:
        lines.append(" \u00b7 ".join(facts))
    ident = _one_line(item.get("id"))
    if ident:
        lines.append(ident)
    snippet = clean_text(item.get("snippet")).strip()
    if snippet:
        lines.append("")
        lines.append(snippet)
    return "\n".join(lines) or _one_line(item.get("title")) or "(no details)"


def _categories(item: Mapping[str, Any], group: str) -> list[dict[str, str]]:
    """Atom categories: the group, each label, the change kind (terms de-duplicated)."""
    seen: dict[str, dict[str, str]] = {}

    def add(term: str, scheme: str) -> None:
        term = _one_line(term)
        if term and term not in seen:
            seen[term] = {"term": term, "scheme": CATEGORY_SCHEME + scheme}

    add(group, "condition-group")
    for label in clean_text(item.get("labels")).split(","):
        add(label, "label")
    add(_one_line(item.get("change_kind")).replace("_", " "), "change-kind")
    return list(seen.values())


# ------------------------------------------------------------------------------- the feed ---


def build_feed(data: Mapping[str, Any], *, feed_url: str | None = None,
               feed_id: str = DEFAULT_FEED_ID) -> bytes:
    """Atom XML (UTF-8 bytes, pretty-printed by feedgen) of the digest data ``data``.

    One entry per new trial, change, results paper and new paper ("unreported" is left out),
    in the dict's order, the first of any repeated ``entry_key`` kept. An entry's ``updated``
    is its registry/journal date at 00:00:00Z, else the digest's ``generated_at``; the feed's
    ``updated`` is the newest entry's (``generated_at`` with no entries), so the same data
    always gives the same bytes. ``feed_url`` (absolute http(s)) becomes the ``rel=self``
    link; the ``rel=alternate`` link is ClinicalTrials.gov.
    """
    generated = _generated_at(data)
    fg = FeedGenerator()
    fid = clean_text(feed_id).strip()
    if not _IRI_SCHEME.match(fid) or any(c.isspace() for c in fid):
        raise ValueError(f"feed_id must be an absolute IRI, got {feed_id!r}")
    fg.id(fid)
    fg.title(_one_line(data.get("title")) or DEFAULT_TITLE)
    period = data.get("period") or {}
    label = _one_line(period.get("label")) if isinstance(period, Mapping) else ""
    if label:
        fg.subtitle(label)
    fg.author({"name": AUTHOR_NAME})
    fg.link(href=ALTERNATE_URL, rel="alternate", type="text/html")
    if feed_url is not None:
        self_url = _http_url(feed_url)
        if self_url is None:
            raise ValueError(f"feed_url must be an absolute http(s) URL, got {feed_url!r}")
        fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.generator(GENERATOR_NAME, version=__version__)
    fg.language("en")

    newest: dt.datetime | None = None
    seen: set[str] = set()
    for section, prefix, item, group in _items(data):
        key = clean_text(item.get("entry_key")).strip() or _fallback_key(section, item)
        if key in seen:
            continue
        seen.add(key)
        title = _one_line(item.get("title")) or _one_line(item.get("id")) or "(untitled)"
        head = prefix if prefix is not None else _change_headline(item)
        updated = _midnight_utc(item.get("date")) or generated
        newest = updated if newest is None or updated > newest else newest

        fe = fg.add_entry(order="append")
        fe.id(entry_id(key))
        fe.title(f"{head}: {title}")
        fe.updated(updated)
        url = _http_url(item.get("url"))
        if url:
            fe.link(href=url, rel="alternate", type="text/html")
        why = _one_line(item.get("why"))
        if why:
            fe.summary(why, type="text")
        fe.content(_content(item, section), type="text")
        for cat in _categories(item, group):
            fe.category(cat)

    fg.updated(newest or generated)
    out = fg.atom_str(pretty=True)
    return out if isinstance(out, bytes) else out.encode("utf-8")


# ------------------------------------------------------------------------------ validation --


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_pis=False)


def _a(name: str) -> str:
    return f"{{{ATOM_NS}}}{name}"


def _text_of(el: etree._Element) -> str:
    return "".join(el.itertext())


def _is_absolute_iri(value: str) -> bool:
    if not value or any(c.isspace() for c in value) or not _IRI_SCHEME.match(value):
        return False
    return len(value) > value.index(":") + 1


def _rfc3339_problem(value: str) -> str | None:
    """Why ``value`` is not an RFC 3339 date-time with Atom's upper-case T and Z, or None."""
    m = _RFC3339.fullmatch(value)
    if not m:
        return "is not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm))"
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return "is not a real date and time"
    if second > 60 or (second == 60 and minute != 59):
        return "has seconds out of range"
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return "has an offset out of range"
    return None


def _check_counts(el: etree._Element, where: str, exactly_one: Iterable[str],
                  at_most_one: Iterable[str], problems: list[str]) -> None:
    for name in exactly_one:
        n = len(el.findall(_a(name)))
        if n != 1:
            problems.append(f"{where} must have exactly one atom:{name} (has {n})")
    for name in at_most_one:
        n = len(el.findall(_a(name)))
        if n > 1:
            problems.append(f"{where} must have at most one atom:{name} (has {n})")


def _check_id(el: etree._Element, where: str, problems: list[str]) -> str | None:
    ids = el.findall(_a("id"))
    if len(ids) != 1:
        return None
    value = _text_of(ids[0])
    if not _is_absolute_iri(value):
        problems.append(f"{where}: atom:id {value!r} is not an absolute IRI")
    return value


def _check_dates(el: etree._Element, where: str, problems: list[str]) -> None:
    for name in ("updated", "published"):
        for d in el.findall(_a(name)):
            why = _rfc3339_problem(_text_of(d))
            if why:
                problems.append(f"{where}: atom:{name} {_text_of(d)!r} {why}")


def _check_text_constructs(el: etree._Element, where: str, names: Iterable[str],
                           problems: list[str]) -> None:
    for name in names:
        for t in el.findall(_a(name)):
            type_ = t.get("type", "text")
            if type_ not in ("text", "html", "xhtml"):
                problems.append(f"{where}: atom:{name} has type {type_!r} "
                                "(must be text, html or xhtml)")
            elif type_ == "xhtml":
                kids = [k for k in t if isinstance(k.tag, str)]
                if len(kids) != 1 or kids[0].tag != f"{{{XHTML_NS}}}div":
                    problems.append(f"{where}: xhtml atom:{name} must hold exactly one "
                                    "xhtml:div")
            elif any(isinstance(k.tag, str) for k in t):
                problems.append(f"{where}: {type_} atom:{name} must not contain elements")


def _check_people(el: etree._Element, where: str, problems: list[str]) -> None:
    for name in ("author", "contributor"):
        for person in el.findall(_a(name)):
            n = len(person.findall(_a("name")))
            if n != 1:
                problems.append(f"{where}: atom:{name} must have exactly one atom:name "
                                f"(has {n})")


def _check_links(el: etree._Element, where: str, problems: list[str]) -> list[etree._Element]:
    """Problems with ``el``'s links; returns its alternate links (no rel = alternate)."""
    alternates: list[etree._Element] = []
    pairs: set[tuple[str, str]] = set()
    for link in el.findall(_a("link")):
        href = link.get("href")
        if href is None or not href.strip():
            problems.append(f"{where}: atom:link without href")
        if link.get("rel", "alternate") in _ALTERNATE_RELS:
            alternates.append(link)
            pair = (link.get("type", ""), link.get("hreflang", ""))
            if pair in pairs:
                problems.append(f"{where}: more than one atom:link rel=alternate with the "
                                f"same type and hreflang {pair}")
            pairs.add(pair)
    for cat in el.findall(_a("category")):
        if not cat.get("term"):
            problems.append(f"{where}: atom:category without term")
    return alternates


def validate_atom(xml: bytes) -> list[str]:
    """The RFC 4287 MUST rules ``xml`` breaks that can be checked offline; [] when none.

    Checked: the root is atom:feed; the feed has exactly one id, title and updated (at most
    one subtitle, generator, icon, logo, rights); an author on the feed or on every entry,
    each person with exactly one name; every entry has exactly one id, title and updated (at
    most one content, summary, published, rights, source); ids are absolute IRIs and entry
    ids are unique; updated/published are RFC 3339 date-times; text constructs have type
    text, html or xhtml; an entry without content has a link rel=alternate, and one whose
    content has a src or a non-text, non-XML type has a summary; no link without href, no
    two alternate links with the same type and hreflang; no category without term.
    The XML is parsed without DTDs, entity expansion or network access.
    """
    try:
        root = etree.fromstring(xml, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        return [f"not well-formed XML: {exc}"]
    if root.tag != _a("feed"):
        return [f"the root element is {root.tag!r}, not atom:feed ({{{ATOM_NS}}}feed)"]

    problems: list[str] = []
    _check_counts(root, "feed", ("id", "title", "updated"),
                  ("subtitle", "generator", "icon", "logo", "rights"), problems)
    _check_id(root, "feed", problems)
    _check_dates(root, "feed", problems)
    _check_text_constructs(root, "feed", ("title", "subtitle", "rights"), problems)
    _check_people(root, "feed", problems)
    _check_links(root, "feed", problems)
    feed_has_author = bool(root.findall(_a("author")))

    seen: dict[str, int] = {}
    for n, entry in enumerate(root.findall(_a("entry")), start=1):
        where = f"entry {n}"
        _check_counts(entry, where, ("id", "title", "updated"),
                      ("content", "summary", "published", "rights", "source"), problems)
        ident = _check_id(entry, where, problems)
        if ident is not None:
            if ident in seen:
                problems.append(f"{where}: atom:id {ident!r} repeats entry {seen[ident]}'s")
            else:
                seen[ident] = n
        _check_dates(entry, where, problems)
        _check_text_constructs(entry, where, ("title", "summary", "rights"), problems)
        _check_people(entry, where, problems)
        if not feed_has_author and not entry.findall(_a("author")):
            source = entry.find(_a("source"))
            if source is None or not source.findall(_a("author")):
                problems.append(f"{where}: no atom:author (the feed has none either)")
        alternates = _check_links(entry, where, problems)
        contents = entry.findall(_a("content"))
        if not contents and not alternates:
            problems.append(f"{where}: no atom:content and no atom:link rel=alternate")
        for content in contents:
            type_ = content.get("type", "text")
            textual = (type_ in ("text", "html", "xhtml") or type_.startswith("text/")
                       or type_.endswith(("/xml", "+xml")))
            if (content.get("src") is not None or not textual) and \
                    entry.find(_a("summary")) is None:
                problems.append(f"{where}: atom:content with src or a binary type needs an "
                                "atom:summary")
    return problems
