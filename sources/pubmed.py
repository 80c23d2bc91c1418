"""NCBI E-utilities (PubMed): request building and response parsing.

Pure functions only in this part of the module: ``build_*_params`` turn a query into the
parameter dict of one esearch/efetch call, and ``parse_*`` turn a response body into typed
results. Nothing here does I/O. The contracts and quirks are in ``shared/docs/API_NOTES.md`` §2.

Errors (each also a ``tracker.errors`` class, so callers may catch either)::

    PubMedError(TrackerError)                 root of this module's errors
    ├── PubMedParseError(ParseError)          the body is not the document the contract
    │                                         promises (HTML error page, truncated XML,
    │                                         wrong root, bad JSON)
    └── PubMedServerError(FetchError)         NCBI declared an error inside an HTTP 200 body
                                              (``<ERROR>``, ``ErrorList``, JSON ``ERROR``)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from db.records import DataBankAccession, Mesh, PublicationRecord, content_hash
from sources.base import FETCH_IDS, FINGERPRINT, XML_PARSER, BaseSource, parse_json, parse_xml
from tracker.errors import FetchError, IncompleteError, ParseError, TrackerError

__all__ = [
    "ESearchResult",
    "EfetchItem",
    "PubMedError",
    "PubMedParseError",
    "PubMedServerError",
    "build_efetch_id_params",
    "build_efetch_params",
    "build_esearch_params",
    "item_from_bytes",
    "parse_efetch",
    "parse_esearch_json",
    "parse_esearch_xml",
    "parse_item",
]

SOURCE = "pubmed"
ESEARCH_MAX_RETMAX = 10_000  # E-utilities hard cap for both esearch and efetch retmax


class PubMedError(TrackerError):
    """Root of the errors raised while building or reading E-utilities calls."""


class PubMedParseError(PubMedError, ParseError):
    """The response body is not the XML/JSON document the E-utilities contract promises."""


class PubMedServerError(PubMedError, FetchError):
    """NCBI reported an error inside an otherwise successful (HTTP 200) response."""


# --------------------------------------------------------------------------------------------
# Request building
# --------------------------------------------------------------------------------------------


def _eutils_identity(tool: str, email: str, api_key: str | None) -> dict[str, str]:
    params = {"tool": tool, "email": email}
    if api_key:
        params["api_key"] = api_key
    return params


def build_esearch_params(
    term: str,
    *,
    mindate: dt.date,
    maxdate: dt.date,
    datetype: str = "edat",
    retmax: int = 0,
    tool: str,
    email: str,
    api_key: str | None = None,
    count_only: bool = False,
) -> dict[str, str]:
    """Build the parameters of one esearch call that posts a date window to the History server.

    ``mindate``/``maxdate`` are inclusive and always sent together (NCBI ignores one alone).
    With the default ``retmax=0`` the response carries only Count, WebEnv and QueryKey, which
    is what the efetch paging loop needs.

    ``count_only`` asks for the count alone (``rettype=count``, nothing posted to History).

    Raises ``ValueError`` when the window is inverted or ``retmax`` is outside 0..10,000.
    """
    if mindate > maxdate:
        raise ValueError(f"mindate {mindate} is after maxdate {maxdate}")
    if not 0 <= retmax <= ESEARCH_MAX_RETMAX:
        raise ValueError(f"retmax must be within 0..{ESEARCH_MAX_RETMAX}, got {retmax}")
    params = {
        "db": "pubmed",
        "term": term,
        "usehistory": "y",
        "retmode": "json",
        "datetype": datetype,
        "mindate": mindate.strftime("%Y/%m/%d"),
        "maxdate": maxdate.strftime("%Y/%m/%d"),
        "retmax": str(retmax),
    }
    if count_only:
        del params["usehistory"], params["retmax"]
        params["rettype"] = "count"
    params.update(_eutils_identity(tool, email, api_key))
    return params


def build_efetch_params(
    webenv: str,
    query_key: str | int,
    retstart: int,
    retmax: int,
    tool: str,
    email: str,
    api_key: str | None = None,
) -> dict[str, str]:
    """Build the parameters of one efetch page read from the History server (XML only).

    Raises ``ValueError`` when ``retstart`` is negative or ``retmax`` is outside 1..10,000.
    """
    if retstart < 0:
        raise ValueError(f"retstart must be >= 0, got {retstart}")
    if not 1 <= retmax <= ESEARCH_MAX_RETMAX:
        raise ValueError(f"retmax must be within 1..{ESEARCH_MAX_RETMAX}, got {retmax}")
    params = {
        "db": "pubmed",
        "WebEnv": webenv,
        "query_key": str(query_key),
        "retstart": str(retstart),
        "retmax": str(retmax),
        "retmode": "xml",
    }
    params.update(_eutils_identity(tool, email, api_key))
    return params


def build_efetch_id_params(
    pmids: list[str], *, tool: str, email: str, api_key: str | None = None
) -> dict[str, str]:
    """Build the parameters of one efetch call for a list of PMIDs (sent by POST, API_NOTES
    2.3: long id lists do not fit in a URL).

    Raises ``ValueError`` for an empty list, more than 10,000 ids, or an id that is not a PMID.
    """
    if not pmids:
        raise ValueError("no PMIDs to fetch")
    if len(pmids) > ESEARCH_MAX_RETMAX:
        raise ValueError(f"at most {ESEARCH_MAX_RETMAX} PMIDs per efetch call, got {len(pmids)}")
    bad = [p for p in pmids if not p.isdigit()]
    if bad:
        raise ValueError(f"not PMIDs: {', '.join(bad[:3])}")
    params = {"db": "pubmed", "id": ",".join(pmids), "retmode": "xml"}
    params.update(_eutils_identity(tool, email, api_key))
    return params


# --------------------------------------------------------------------------------------------
# esearch
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ESearchResult:
    """What one esearch call reports.

    ``errors`` holds the non-fatal messages NCBI attached (WarningList / warninglist entries such
    as "quoted phrase not found"); fatal ones raise instead.
    """

    count: int
    webenv: str | None
    query_key: str | None
    ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# The one hardened parser of every XML body (sources.base: no DTD, no network, no entities).
_XML_PARSER = XML_PARSER


def _parse_xml(body: bytes, what: str) -> etree._Element:
    return parse_xml(body, f"pubmed: {what} body", PubMedParseError)


# A record's bytes cut from an efetch body lose the body's DOCTYPE. In a document with an
# external subset (which this parser never loads) an entity the subset might declare, such as
# "&foo;", is kept as an unexpanded reference: that is how the record parsed within its page.
# Parsed alone, the same bytes would be rejected ("Entity 'foo' not defined"), so a stored
# record could never be read again; such a record is parsed behind this DOCTYPE instead, which
# gives the tree it had in its page. Nothing is fetched or expanded: same parser, same rules.
_RECORD_DOCTYPE = (b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle//EN" '
                   b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n')


def _parse_record(raw: bytes, what: str) -> etree._Element:
    """One record's own bytes (an item, a stored or quarantined record) as an element.

    Raises ``PubMedParseError`` when they are not well-formed XML.
    """
    try:
        return _parse_xml(raw, what)
    except PubMedParseError:
        head = raw.lstrip()[:9]
        if head.startswith((b"<?xml", b"<!DOCTYPE")) or _NAMED_ENTITY.search(raw) is None:
            raise
        try:
            return etree.fromstring(_RECORD_DOCTYPE + raw, _XML_PARSER)
        except etree.XMLSyntaxError:
            pass
        raise


def _to_int(value: object, what: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise PubMedParseError(f"pubmed: esearch {what} is not an integer: {value!r}") from exc


def parse_esearch_json(body: bytes) -> ESearchResult:
    """Read an esearch ``retmode=json`` body (counts arrive as strings).

    Raises ``PubMedServerError`` on an ``ERROR`` key or a non-empty ``errorlist``, and
    ``PubMedParseError`` when the body is not JSON or lacks ``esearchresult``/``count``.
    """
    doc = parse_json(body, "pubmed: esearch body", PubMedParseError)
    if not isinstance(doc, dict):
        raise PubMedParseError(f"pubmed: esearch JSON is a {type(doc).__name__}, not an object")
    if "error" in doc and "esearchresult" not in doc:
        # e.g. the 429 body {"error":"API rate limit exceeded","count":"4","limit":"3"}
        raise PubMedServerError(f"pubmed: esearch error: {doc['error']}")
    result = doc.get("esearchresult")
    if not isinstance(result, dict):
        raise PubMedParseError("pubmed: esearch JSON has no 'esearchresult' object")
    if result.get("ERROR"):
        raise PubMedServerError(f"pubmed: esearch error: {result['ERROR']}")
    fatal = _json_messages(result.get("errorlist"))
    if fatal:
        raise PubMedServerError("pubmed: esearch errorlist: " + "; ".join(fatal))
    if "count" not in result:
        raise PubMedParseError("pubmed: esearch JSON has no 'count'")
    ids = result.get("idlist") or []
    if not isinstance(ids, list):
        raise PubMedParseError("pubmed: esearch 'idlist' is not a list")
    return ESearchResult(
        count=_to_int(result["count"], "count"),
        webenv=result.get("webenv") or None,
        query_key=(str(result["querykey"]) if result.get("querykey") not in (None, "") else None),
        ids=[str(i) for i in ids],
        errors=_json_messages(result.get("warninglist")),
    )


def _json_messages(block: object) -> list[str]:
    """``{"phrasesnotfound": ["x"], "fieldsnotfound": []}`` -> ``["phrasesnotfound: x"]``."""
    if not isinstance(block, dict):
        return []
    out = []
    for key, values in block.items():
        if isinstance(values, list):
            out.extend(f"{key}: {v}" for v in values if v not in (None, ""))
        elif values:
            out.append(f"{key}: {values}")
    return out


def parse_esearch_xml(body: bytes) -> ESearchResult:
    """Read an esearch XML body (``eSearchResult``).

    Raises ``PubMedServerError`` on ``<ERROR>`` or a non-empty ``<ErrorList>``, and
    ``PubMedParseError`` when the body is not an ``eSearchResult`` with a ``Count``.
    """
    root = _parse_xml(body, "esearch")
    if root.tag != "eSearchResult":
        raise PubMedParseError(
            f"pubmed: esearch root element is <{root.tag}>, expected <eSearchResult>"
        )
    error = root.findtext("ERROR")
    if error is not None:
        raise PubMedServerError(f"pubmed: esearch error: {_squash(error)}")
    error_list = root.find("ErrorList")
    if error_list is not None:
        fatal = [f"{el.tag}: {_text(el)}" for el in error_list if _text(el)]
        if fatal:
            raise PubMedServerError("pubmed: esearch ErrorList: " + "; ".join(fatal))
    count = root.findtext("Count")
    if count is None:
        raise PubMedParseError("pubmed: esearch XML has no <Count>")
    warnings = root.find("WarningList")
    return ESearchResult(
        count=_to_int(count, "Count"),
        webenv=root.findtext("WebEnv") or None,
        query_key=root.findtext("QueryKey") or None,
        ids=[(i.text or "").strip() for i in root.iterfind("IdList/Id")],
        errors=[f"{el.tag}: {_text(el)}" for el in warnings if _text(el)]
        if warnings is not None
        else [],
    )


# --------------------------------------------------------------------------------------------
# efetch
# --------------------------------------------------------------------------------------------
# Speed note: the walkers below loop over an element's children and dispatch on ``tag``
# rather than calling find()/findtext() per field. lxml's find* go through the Python
# ElementPath layer (~1 µs a call); plain child iteration is about 5x cheaper, and a nightly
# run parses tens of thousands of articles.

_MONTHS = {
    name: f"{i:02d}"
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# A season stands for its first month in the journal's (northern-hemisphere) year.
_SEASONS = {"winter": "01", "spring": "03", "summer": "06", "fall": "09", "autumn": "09"}
_MEDLINE_DATE = re.compile(r"(\d{4})(?:\s+([A-Za-z]+)\.?(?:\s+(\d{1,2}))?)?")


def _squash(text: str) -> str:
    return " ".join(text.split())


def _text(el: etree._Element | None) -> str:
    """Element text with inline markup (i, sup, sub, MathML) flattened and whitespace collapsed."""
    if el is None:
        return ""
    if len(el) == 0:  # fast path: no inline markup (the vast majority of fields)
        text = el.text
        return " ".join(text.split()) if text else ""
    return " ".join("".join(el.itertext()).split())


def _month(token: str | None) -> str | None:
    if not token:
        return None
    token = token.strip().lower()
    if token.isdigit():
        n = int(token)
        return f"{n:02d}" if 1 <= n <= 12 else None
    return _MONTHS.get(token[:3]) or _SEASONS.get(token)


def _iso_partial(year: str | None, month: str | None, day: str | None) -> str | None:
    if not year:
        return None
    y = year.strip()
    if len(y) != 4 or not y.isdigit():
        return None
    if not month:
        return y
    if day and day.strip().isdigit():
        d = int(day)
        try:
            dt.date(int(y), int(month), d)
        except ValueError:
            return f"{y}-{month}"
        return f"{y}-{month}-{d:02d}"
    return f"{y}-{month}"


def _date_parts(date_el: etree._Element) -> dict[str, str | None]:
    """Tag -> text of a date element's children (Year, Month, Day, Season, MedlineDate)."""
    return {c.tag: c.text for c in date_el if isinstance(c.tag, str)}


def _pub_date(date_el: etree._Element | None) -> str | None:
    """PubDate -> ISO partial ("2019", "2019-11", "2019-11-05").

    Handles Year/Month/Day with month names or numbers, Year/Season, and MedlineDate such as
    "2019 Nov-Dec" or "1998 Dec-1999 Jan" (the first month wins).
    """
    if date_el is None:
        return None
    parts = _date_parts(date_el)
    year, month, day = parts.get("Year"), parts.get("Month"), parts.get("Day")
    season, medline = parts.get("Season"), parts.get("MedlineDate")
    if year is not None:
        mm = _month(month) or _month(season)
        return _iso_partial(year, mm, day if mm else None)
    if medline:
        m = _MEDLINE_DATE.match(medline.strip())
        if m:
            mm = _month(m.group(2))
            return _iso_partial(m.group(1), mm, m.group(3) if mm else None)
    return None


def _whole_date(date_el: etree._Element | None) -> dt.date | None:
    """A Year/Month/Day element (DateRevised, PubMedPubDate) as a date; None if incomplete."""
    if date_el is None:
        return None
    parts = _date_parts(date_el)
    year, month, day = parts.get("Year"), parts.get("Month"), parts.get("Day")
    try:
        return dt.date(int(year or ""), int(_month(month) or ""), int(day or ""))
    except ValueError:
        return None


def _entrez_date(history: etree._Element | None) -> dt.date | None:
    if history is None:
        return None
    for pub_date in history:
        if pub_date.get("PubStatus") == "entrez":
            return _whole_date(pub_date)
    return None


def _abstract(abstract_el: etree._Element | None) -> str | None:
    """Join AbstractText parts, prefixing structured ones with their label ("RESULTS: ...")."""
    if abstract_el is None:
        return None
    parts = []
    for part in abstract_el:
        if part.tag != "AbstractText":  # CopyrightInformation is not abstract text
            continue
        text = _text(part)
        label = part.get("Label")
        if label:
            parts.append(f"{label}: {text}" if text else f"{label}:")
        elif text:
            parts.append(text)
    return " ".join(parts) or None


def _authors(author_list: etree._Element | None) -> str | None:
    """"Khan R, Srivastava R, ASPIRE Investigators" (LastName Initials | CollectiveName)."""
    if author_list is None:
        return None
    names = []
    for author in author_list:
        if author.tag != "Author" or author.get("ValidYN") == "N":
            continue
        last = initials = collective = None
        for c in author:
            tag = c.tag
            if tag == "LastName":
                last = c.text
            elif tag == "Initials":
                initials = c.text
            elif tag == "CollectiveName":
                collective = _text(c)
        if last:
            names.append(f"{last.strip()} {initials.strip()}" if initials else last.strip())
        elif collective:
            names.append(collective)
    return ", ".join(names) or None


def _mesh(mesh_list: etree._Element) -> list[Mesh]:
    """MeshHeading -> Mesh(kind="heading"); major if the descriptor or any qualifier is starred."""
    out = []
    for heading in mesh_list:
        descriptor = None
        major = False
        for c in heading:
            if c.tag == "DescriptorName":
                descriptor = c
                major = major or c.get("MajorTopicYN") == "Y"
            elif c.tag == "QualifierName" and c.get("MajorTopicYN") == "Y":
                major = True
        if descriptor is not None:
            out.append(Mesh(kind="heading", mesh_id=descriptor.get("UI"), term=_text(descriptor),
                            major=major))
    return out


def _keywords(keyword_list: etree._Element, into: list[str]) -> None:
    for el in keyword_list:
        if el.tag == "Keyword":
            kw = _text(el)
            if kw:
                into.append(kw)


def _article_ids(id_list: etree._Element | None, into: dict[str, str]) -> None:
    """Direct ArticleId children only: ReferenceList nests ArticleIdLists of *cited* papers."""
    if id_list is None:
        return
    for el in id_list:
        kind = el.get("IdType")
        value = el.text
        if kind and value and kind not in into:
            value = value.strip()
            if value:
                into[kind] = value


def _elocation_doi(el: etree._Element) -> str | None:
    if el.get("EIdType") == "doi" and el.get("ValidYN") != "N":
        return (el.text or "").strip() or None
    return None


def _accessions(databank_list: etree._Element, into: list[DataBankAccession]) -> None:
    for bank in databank_list:
        name = ""
        numbers: list[str] = []
        for c in bank:
            if c.tag == "DataBankName":
                name = _text(c)
            elif c.tag == "AccessionNumberList":
                numbers.extend(n.text.strip() for n in c if n.text and n.text.strip())
        into.extend(DataBankAccession(bank=name, accession=n) for n in numbers)


def _year(pub_date: str | None) -> int | None:
    return int(pub_date[:4]) if pub_date else None


def _serialise(el: etree._Element) -> bytes:
    # with_tail=False: the whitespace after the element belongs to the set, not the record
    return etree.tostring(el, encoding="utf-8", with_tail=False)


def _url(pmid: str) -> str:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


def _parse_article(el: etree._Element, raw: bytes | None = None,
                   digest: str | None = None) -> PublicationRecord:
    citation = pubmed_data = None
    for c in el:
        if c.tag == "MedlineCitation":
            citation = c
        elif c.tag == "PubmedData":
            pubmed_data = c
    if citation is None:
        raise PubMedParseError("pubmed: PubmedArticle without MedlineCitation")

    pmid = ""
    article = None
    mesh: list[Mesh] = []
    keywords: list[str] = []
    date_revised = None
    for c in citation:
        tag = c.tag
        if tag == "PMID":
            pmid = (c.text or "").strip()
        elif tag == "Article":
            article = c
        elif tag == "MeshHeadingList":
            mesh = _mesh(c)
        elif tag == "KeywordList":
            _keywords(c, keywords)
        elif tag == "DateRevised":
            date_revised = _whole_date(c)
    if not pmid:
        raise PubMedParseError("pubmed: PubmedArticle without PMID")

    ids: dict[str, str] = {}
    index_date = None
    if pubmed_data is not None:
        for c in pubmed_data:
            if c.tag == "ArticleIdList":
                _article_ids(c, ids)
            elif c.tag == "History":
                index_date = _entrez_date(c)

    title = vernacular = ""
    abstract = journal_title = pub_date = article_date = authors = elocation_doi = None
    pub_types: list[str] = []
    accessions: list[DataBankAccession] = []
    if article is not None:
        for c in article:
            tag = c.tag
            if tag == "Journal":
                for j in c:
                    if j.tag == "Title":
                        journal_title = _text(j) or None
                    elif j.tag == "JournalIssue":
                        for issue_child in j:
                            if issue_child.tag == "PubDate":
                                pub_date = _pub_date(issue_child)
            elif tag == "ArticleTitle":
                title = _text(c)
            elif tag == "VernacularTitle":
                vernacular = _text(c)
            elif tag == "Abstract":
                abstract = _abstract(c)
            elif tag == "AuthorList":
                authors = _authors(c)
            elif tag == "ELocationID":
                elocation_doi = elocation_doi or _elocation_doi(c)
            elif tag == "PublicationTypeList":
                pub_types = [_text(t) for t in c]
            elif tag == "DataBankList":
                _accessions(c, accessions)
            elif tag == "ArticleDate" and article_date is None:
                article_date = _pub_date(c)
    pub_date = pub_date or article_date
    raw = raw or _serialise(el)
    return PublicationRecord(
        source=SOURCE,
        source_id=pmid,
        title=title or vernacular,
        raw=raw,
        content_hash=digest or content_hash(raw),
        pmid=pmid,
        pmcid=ids.get("pmc"),
        doi=ids.get("doi") or elocation_doi,
        abstract=abstract,
        journal=journal_title,
        pub_date=pub_date,
        pub_year=_year(pub_date),
        publication_types=pub_types,
        mesh=mesh,
        keywords=keywords,
        authors=authors,
        accessions=accessions,
        is_preprint="Preprint" in pub_types,
        date_revised=date_revised,
        index_date=index_date,
        url=_url(pmid),
    )


def _parse_book(el: etree._Element, raw: bytes | None = None,
                digest: str | None = None) -> PublicationRecord:
    """PubmedBookArticle (a book or a chapter, e.g. GeneReviews) -> record.

    Title is the chapter's ArticleTitle, else the BookTitle; a chapter's ``journal`` is its
    book's title. Chapter authors (BookDocument/AuthorList) win over book authors/editors.
    """
    doc = book_data = None
    for c in el:
        if c.tag == "BookDocument":
            doc = c
        elif c.tag == "PubmedBookData":
            book_data = c
    if doc is None:
        raise PubMedParseError("pubmed: PubmedBookArticle without BookDocument")

    pmid = article_title = book_title = ""
    ids: dict[str, str] = {}
    abstract = pub_date = authors = book_authors = doi = date_revised = None
    pub_types: list[str] = []
    keywords: list[str] = []
    for c in doc:
        tag = c.tag
        if tag == "PMID":
            pmid = (c.text or "").strip()
        elif tag == "ArticleIdList":
            _article_ids(c, ids)
        elif tag == "Book":
            for b in c:
                if b.tag == "BookTitle":
                    book_title = _text(b)
                elif b.tag == "PubDate":
                    pub_date = _pub_date(b)
                elif b.tag == "AuthorList" and book_authors is None:
                    book_authors = _authors(b)
                elif b.tag == "ELocationID":
                    doi = doi or _elocation_doi(b)
        elif tag == "ArticleTitle":
            article_title = _text(c)
        elif tag == "AuthorList" and authors is None:
            authors = _authors(c)
        elif tag == "PublicationType":
            pub_types.append(_text(c))
        elif tag == "Abstract":
            abstract = _abstract(c)
        elif tag == "KeywordList":
            _keywords(c, keywords)
        elif tag == "ELocationID":
            doi = doi or _elocation_doi(c)
        elif tag == "DateRevised":
            date_revised = _whole_date(c)
    if not pmid:
        raise PubMedParseError("pubmed: PubmedBookArticle without PMID")

    index_date = None
    if book_data is not None:
        for c in book_data:
            if c.tag == "ArticleIdList":
                _article_ids(c, ids)
            elif c.tag == "History":
                index_date = _entrez_date(c)
    raw = raw or _serialise(el)
    return PublicationRecord(
        source=SOURCE,
        source_id=pmid,
        title=article_title or book_title,
        raw=raw,
        content_hash=digest or content_hash(raw),
        pmid=pmid,
        pmcid=ids.get("pmc"),
        doi=ids.get("doi") or doi,
        abstract=abstract,
        journal=(book_title or None) if article_title else None,
        pub_date=pub_date,
        pub_year=_year(pub_date),
        publication_types=pub_types,
        keywords=keywords,
        authors=authors or book_authors,
        is_preprint="Preprint" in pub_types,
        date_revised=date_revised,
        index_date=index_date,
        url=_url(pmid),
    )


def _parse_deleted(pmid_el: etree._Element, raw: bytes | None) -> PublicationRecord:
    pmid = (pmid_el.text or "").strip()
    if not pmid:
        raise PubMedParseError("pubmed: DeleteCitation PMID is empty")
    raw = raw or _serialise(pmid_el)
    return PublicationRecord(
        source=SOURCE, source_id=pmid, title="", raw=raw, content_hash=content_hash(raw),
        pmid=pmid, deleted=True, url=_url(pmid),
    )


@dataclass(slots=True)
class EfetchItem:
    """One record of an efetch page.

    ``raw`` is the record's own bytes as NCBI sent them (a deleted PMID: its ``PMID`` element).
    ``record`` is what ``parse_element`` made of it, or ``error`` why it could not (raised by
    ``parse_item``, so the pipeline quarantines that record alone); both stay None until the
    record is first parsed. ``content_hash`` is filled on first use.
    """

    raw: bytes
    pmid: str | None
    record: PublicationRecord | None = None
    error: PubMedParseError | None = None
    content_hash: str | None = None

    @property
    def hash(self) -> str:
        """The content hash of ``raw`` (computed once)."""
        if self.content_hash is None:
            self.content_hash = content_hash(self.raw)
        return self.content_hash


def _pmid_of(el: etree._Element) -> str | None:
    """The PMID of an article, book or deleted-PMID element (the first PMID of its citation)."""
    if el.tag == "PMID":
        return (el.text or "").strip() or None
    for part in el:
        if part.tag in ("MedlineCitation", "BookDocument"):
            for c in part:
                if c.tag == "PMID":
                    return (c.text or "").strip() or None
            return None
    return None


def _items_of(el: etree._Element, raw: bytes, digest: str | None = None
              ) -> list[EfetchItem]:
    """The items of one record element (a DeleteCitation gives one per PMID); ``digest``
    is the hash of ``raw`` when the caller has it."""
    if el.tag == "DeleteCitation":
        out = []
        for p in el:
            if p.tag == "PMID" and (p.text or "").strip():
                pid = _serialise(p)  # the PMID element alone is the deletion's record
                rec = _parse_deleted(p, pid)
                out.append(EfetchItem(pid, rec.pmid, rec, content_hash=rec.content_hash))
        return out
    pmid = _pmid_of(el)
    try:
        rec = parse_element(el, raw, digest)
        return [EfetchItem(raw, pmid, rec, content_hash=rec.content_hash)]
    except PubMedParseError as exc:
        return [EfetchItem(raw, pmid, error=exc)]


# Record-at-a-time parsing. A page of 500 articles parsed as one tree is several times the size
# of any CPU cache: building it, walking it and freeing it each miss the cache. Parsing each
# record's own bytes when the pipeline asks for it keeps its small tree hot from parse to
# normalisation to free, and a record the pipeline finds unchanged (same hash) is not parsed at
# all. The record boundaries are found in the bytes, which is sound for the plain shape efetch
# sends (a prolog, then records separated by whitespace: record elements never nest, carry no
# attributes, and text cannot hold a literal "<"); a body cut short lacks the closing tag of the
# set. Anything else - an <ERROR>, a comment, another encoding - goes the general way: the whole
# body parsed as one document, every record normalised at once. A record whose own bytes are
# not well-formed fails alone (the pipeline quarantines it), not its page.
_PROLOG = re.compile(
    rb"\s*(?:<\?xml[^>]*\?>)?\s*(?:<!DOCTYPE\s+PubmedArticleSet\b[^\[>]*>)?\s*"
    rb"<PubmedArticleSet>")
_CLOSE_SET = b"</PubmedArticleSet>"
# A named entity other than XML's five: defined (or not) by the DTD, which a record parsed alone
# does not see; such a body goes the general way, which treats it as before.
_NAMED_ENTITY = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")
_RECORD_TAGS = {tag: (f"<{tag}>".encode(), f"</{tag}>".encode())
                for tag in ("PubmedArticle", "PubmedBookArticle", "DeleteCitation")}


def _declares_other_encoding(body: bytes) -> bool:
    """True when the XML declaration names an encoding other than UTF-8 (bytes then differ
    from what a record parsed alone, as UTF-8, would read)."""
    if not body.startswith(b"<?xml"):
        return False
    decl = body[:200].split(b"?>", 1)[0].lower()
    return b"encoding" in decl and b"utf-8" not in decl


def _record_slices(body: bytes) -> list[bytes] | None:
    """Each record element's bytes, when the body is a plain set of records; else None."""
    m = _PROLOG.match(body)
    if m is None or _NAMED_ENTITY.search(body) is not None or _declares_other_encoding(body):
        return None
    end = body.rfind(_CLOSE_SET)
    if end < m.end() or body[end + len(_CLOSE_SET):].strip():
        return None
    out = []
    pos = m.end()
    while True:
        lt = body.find(b"<", pos, end)
        if lt < 0:
            return out if not body[pos:end].strip() else None
        if body[pos:lt].strip():
            return None
        for opening, closing in _RECORD_TAGS.values():
            if body.startswith(opening, lt):
                stop = body.find(closing, lt, end)
                if stop < 0:
                    return None
                pos = stop + len(closing)
                out.append(body[lt:pos])
                break
        else:
            return None


# The PMID a record starts with (MedlineCitation's or BookDocument's first child).
_LEADING_PMID = re.compile(
    rb"<(?:PubmedArticle|PubmedBookArticle)>\s*<(?:MedlineCitation|BookDocument)\b[^>]*>\s*"
    rb"<PMID\b[^>]*>\s*(\d+)\s*</PMID>")


def _split_by_record(body: bytes) -> list[EfetchItem] | None:
    """Items whose records are parsed when first asked for (``parse_item``): a record the
    pipeline finds unchanged by its hash is never parsed at all."""
    slices = _record_slices(body)
    if slices is None:
        return None
    items: list[EfetchItem] = []
    for raw in slices:
        if raw.startswith(b"<DeleteCitation>"):
            try:
                items += _items_of(etree.fromstring(raw, _XML_PARSER), raw)
            except etree.XMLSyntaxError:
                return None  # let the whole-document parse say what is wrong
            continue
        m = _LEADING_PMID.match(raw)
        items.append(EfetchItem(raw, m.group(1).decode() if m else None))
    return items


class _Slicer:
    """Finds each record's bytes in an efetch body, in document order, by its tags (for the
    general path). Each slice is checked against the parsed element's PMID; anything
    unexpected gives None and the caller serialises the element instead."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = None if _declares_other_encoding(body) else body
        self.pos: dict[str, int] = {}

    def take(self, tag: str, pmid: str | None) -> bytes | None:
        body = self.body
        if body is None or not pmid:
            return None
        opening, close = _RECORD_TAGS[tag]
        start = body.find(opening, self.pos.get(tag, 0))
        end = body.find(close, start) if start >= 0 else -1
        if end < 0:
            self.body = None
            return None
        end += len(close)
        self.pos[tag] = end
        if (body.find(opening, start + 1, end) >= 0  # a stray tag (comment, CDATA) in between
                or body.find(f">{pmid}</PMID>".encode(), start, min(end, start + 600)) < 0):
            self.body = None  # out of step with the tree: serialise the rest
            return None
        return body[start:end]


def _split_whole(body: bytes) -> list[EfetchItem]:
    root = _parse_xml(body, "efetch")
    tag = root.tag
    if tag == "eFetchResult" or tag == "ERROR":
        message = root.text if tag == "ERROR" else root.findtext("ERROR")
        raise PubMedServerError(
            f"pubmed: efetch error: {_squash(message or etree.tostring(root, encoding='unicode'))}"
        )
    if tag != "PubmedArticleSet":
        raise PubMedParseError(
            f"pubmed: efetch root element is <{tag}>, expected <PubmedArticleSet>"
        )
    for child in root:
        if child.tag == "ERROR":
            raise PubMedServerError(f"pubmed: efetch error: {_text(child)}")
    slicer = _Slicer(body)
    items: list[EfetchItem] = []
    for child in root:
        tag = child.tag
        if tag == "PubmedArticle" or tag == "PubmedBookArticle":
            raw = slicer.take(tag, _pmid_of(child)) or _serialise(child)
            items += _items_of(child, raw)
        elif tag == "DeleteCitation":
            items += _items_of(child, b"")
    return items


def split_efetch(body: bytes) -> list[EfetchItem]:
    """The records of an efetch ``PubmedArticleSet``, one item per article, book or deletion.

    A ``DeleteCitation`` becomes one item per deleted PMID. A record that cannot be normalised
    (no PMID) is an item with an ``error``. Raises ``PubMedServerError`` when the body carries
    an ``<ERROR>`` (NCBI reports some errors with HTTP 200) and ``PubMedParseError`` when it is
    not a well-formed ``PubmedArticleSet`` (HTML error page, truncated download).
    """
    if not body or body.isspace():  # isspace scans without copying (strip copied the body)
        raise PubMedParseError("pubmed: empty efetch body")
    items = _split_by_record(body)
    return items if items is not None else _split_whole(body)


def item_from_bytes(raw: bytes) -> EfetchItem:
    """An item rebuilt from one record's bytes (a stored raw record, a quarantined one)."""
    items = _items_of(_parse_record(raw, "stored record"), raw)
    if len(items) != 1:
        raise PubMedParseError("pubmed: a stored record holds no single PubMed record")
    return items[0]


def parse_element(el: etree._Element, raw: bytes | None = None,
                  digest: str | None = None) -> PublicationRecord:
    """Normalise one record element (article, book, or deleted PMID).

    ``raw`` is the record's bytes when the caller has them (else the element is serialised),
    ``digest`` their hash. Raises ``PubMedParseError`` for a record without a PMID.
    """
    if el.tag == "PubmedArticle":
        return _parse_article(el, raw, digest)
    if el.tag == "PubmedBookArticle":
        return _parse_book(el, raw, digest)
    if el.tag == "PMID":
        return _parse_deleted(el, raw)
    raise PubMedParseError(f"pubmed: unexpected element <{el.tag}> in PubmedArticleSet")


def parse_item(item: EfetchItem) -> PublicationRecord:
    """The record of one item from ``split_efetch``, parsed from its own bytes on first use.

    Raises ``PubMedParseError`` when the record is not well-formed XML or lacks a PMID.
    """
    if item.record is None and item.error is None:
        try:
            el = _parse_record(item.raw, "record")
        except PubMedParseError as exc:
            item.error = exc
        else:
            (parsed,) = _items_of(el, item.raw, item.content_hash)
            del el  # free the record's tree while it is still in cache
            item.record, item.error = parsed.record, parsed.error
            item.pmid = item.pmid or parsed.pmid
    if item.error is not None:
        raise item.error
    assert item.record is not None
    return item.record


def parse_efetch(body: bytes) -> list[PublicationRecord]:
    """Parse an efetch ``PubmedArticleSet`` into one record per article, book or deletion.

    Each record's ``raw`` is its own bytes (so ``content_hash`` changes only when that record
    changes). ``DeleteCitation/PMID`` entries become ``deleted=True`` records with an empty
    title. Raises as ``split_efetch`` and ``parse_element`` do.
    """
    return [parse_item(item) for item in split_efetch(body)]


# --------------------------------------------------------------------------------------------
# The source: esearch windows on the History server, efetch in batches
# --------------------------------------------------------------------------------------------

TOOL = "msc-trial-tracker"
FULL_LOAD_START = dt.date(1900, 1, 1)
ESEARCH_CEILING = 9999  # PubMed esearch reaches only the first 9,999 records of a query
ID_BATCH = 200  # PMIDs per efetch-by-id call


class PubMed(BaseSource):
    """The PubMed source (``pubmed``): esearch date windows, efetch XML from the History server.

    Incremental runs ask by Entrez date (``edat``) and then by modification date (``mdat``), so
    records whose MeSH terms and publication types arrived after they first appeared are
    fetched again. Windows holding more than the esearch ceiling are split by date until each
    fits.
    """

    name = SOURCE
    kind = "publication"
    registry = SOURCE
    capabilities = frozenset({FETCH_IDS, FINGERPRINT})

    @staticmethod
    def parse_raw(raw: bytes) -> PublicationRecord:
        return parse_item(item_from_bytes(raw))

    @classmethod
    def from_settings(cls, settings: Any) -> PubMed:
        src = settings.source(cls.name)
        return cls(src, email=settings.contact_email, api_key=settings.pubmed_api_key,
                   **({"ceiling": src.max_window} if src.max_window else {}))
    batch_size = 1000  # records are small: store a whole page in one batch

    def __init__(
        self,
        settings: Any,
        *,
        email: str | None = None,
        api_key: str | None = None,
        ceiling: int = ESEARCH_CEILING,
    ) -> None:
        self.settings = settings
        self.email = email or ""
        self.api_key = api_key
        self.ceiling = ceiling

    def _identity(self, params: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in params.items() if v != ""}

    def _esearch(self, http: Any, datetype: str, lo: dt.date, hi: dt.date) -> ESearchResult:
        params = build_esearch_params(
            self.settings.query, mindate=lo, maxdate=hi, datetype=datetype, tool=TOOL,
            email=self.email, api_key=self.api_key)
        # Long queries go by POST (API_NOTES 2.3); E-utilities accept both.
        response = http.request(SOURCE, "POST", self._url("esearch.fcgi"),
                                data=self._identity(params))
        return parse_esearch_json(response.content)

    def _url(self, endpoint: str) -> str:
        return f"{self.settings.url.rstrip('/')}/{endpoint}"

    def count(self, http: Any, window: Any) -> Any:
        """Records of ``window`` by Entrez date (esearch ``rettype=count``, one request) and the
        requests a run needs: its esearch calls (more where a window over the esearch ceiling
        is split by date; an incremental run also asks by modification date) and efetch pages.
        """
        from sources.base import SourceCount, pages_for

        if window.since is not None and window.since > window.until:
            return SourceCount(0, 0)
        params = build_esearch_params(
            self.settings.query, mindate=window.since or FULL_LOAD_START, maxdate=window.until,
            tool=TOOL, email=self.email, api_key=self.api_key, count_only=True)
        response = http.request(SOURCE, "POST", self._url("esearch.fcgi"),
                                data=self._identity(params))
        total = parse_esearch_json(response.content).count
        searches = 2 * pages_for(total, self.ceiling) - 1  # a split asks for both halves
        note = ""
        if window.since is not None:
            searches += 1
            note = "plus the records modified in the window (asked by date of change)"
        batch = max(1, min(self.settings.page_size, ESEARCH_MAX_RETMAX))
        efetch = -(-total // batch)
        return SourceCount(total, searches + efetch, note)

    def windows(
        self, http: Any, datetype: str, lo: dt.date, hi: dt.date
    ) -> Iterator[tuple[dt.date, dt.date, ESearchResult]]:
        """(lo, hi, esearch result) for date windows covering [lo, hi], each under the ceiling."""
        result = self._esearch(http, datetype, lo, hi)
        if result.count <= self.ceiling:
            yield lo, hi, result
            return
        if lo >= hi:
            raise IncompleteError(
                f"pubmed: {result.count} records on {lo.isoformat()} alone exceed the esearch "
                f"ceiling of {self.ceiling}; narrow the PubMed query in config")
        mid = lo + (hi - lo) // 2
        yield from self.windows(http, datetype, lo, mid)
        yield from self.windows(http, datetype, mid + dt.timedelta(days=1), hi)

    def fetch(self, http: Any, window: Any) -> Iterator[Any]:
        """Yield efetch batches for every date window of ``window`` (edat, then mdat)."""
        from sources.base import Page

        if window.since is not None and window.since > window.until:
            return  # a window that starts after it ends is empty: nothing to ask
        passes = [("edat", window.since or FULL_LOAD_START)]
        if window.since is not None:
            passes.append(("mdat", window.since))
        batch = max(1, min(self.settings.page_size, ESEARCH_MAX_RETMAX))
        for datetype, start in passes:
            for _lo, _hi, search in self.windows(http, datetype, start, window.until):
                if not search.count:
                    continue
                for retstart in range(0, search.count, batch):
                    params = build_efetch_params(
                        search.webenv or "", search.query_key or "", retstart, batch,
                        tool=TOOL, email=self.email, api_key=self.api_key)
                    response = http.request(SOURCE, "POST", self._url("efetch.fcgi"),
                                            data=self._identity(params))
                    items = split_efetch(response.content)
                    yield Page(items=items, total=search.count if retstart == 0 else None)

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Any]:
        """Yield efetch batches of the given PMIDs (quarantined records, fetched again)."""
        from sources.base import Page

        pmids = [i for i in ids if i.isdigit()]
        for start in range(0, len(pmids), ID_BATCH):
            params = build_efetch_id_params(pmids[start : start + ID_BATCH], tool=TOOL,
                                            email=self.email, api_key=self.api_key)
            response = http.request(SOURCE, "POST", self._url("efetch.fcgi"),
                                    data=self._identity(params))
            yield Page(items=split_efetch(response.content))

    def parse(self, item: EfetchItem) -> PublicationRecord:
        """Normalise one record."""
        return parse_item(item)

    def fingerprint(self, item: EfetchItem) -> tuple[str, str] | None:
        """(PMID, content hash) of a record, so unchanged records skip parsing."""
        return (item.pmid, item.hash) if item.pmid else None

    def item_bytes(self, item: EfetchItem) -> bytes:
        """The raw bytes of an item, for quarantine."""
        return item.raw

    def item_from_bytes(self, raw: bytes) -> EfetchItem:
        """Rebuild an item from quarantined bytes (parsed as safely as any response)."""
        return item_from_bytes(raw)

    def record_id(self, item: EfetchItem) -> str | None:
        """The PMID of a record, when it has one."""
        return item.pmid
