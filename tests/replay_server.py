"""Local replay server for the three HTTP sources the tracker reads.

``ReplayServer`` is a stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 on a random free port,
served from a daemon thread.  It REPLAYS real recorded records (the files in
``tests/fixtures/{ctgov,pubmed,europepmc}``, copied from the shared fixtures) with the paging
semantics of the real APIs, so end-to-end and fault-injection tests can run the real
``tracker update`` code with its base URLs pointed here.  Nothing is invented except the
envelopes (paging tokens, WebEnv strings, counts) that the real services generate per request.

Usage::

    with ReplayServer(ctgov_studies=studies, pubmed_articles=articles,
                      europepmc_results=results) as srv:
        srv.ctgov_url      # http://127.0.0.1:PORT/ctgov/api/v2      (client appends /studies)
        srv.pubmed_url     # http://127.0.0.1:PORT/eutils            (/esearch.fcgi, /efetch.fcgi)
        srv.europepmc_url  # http://127.0.0.1:PORT/europepmc/webservices/rest   (/search)
        srv.requests       # list[RecordedRequest], in arrival order
        srv.add_fault("ctgov", "503", on_request=2, times=3)

URL layout
----------
``/ctgov/api/v2/studies``, ``/ctgov/api/v2/studies/{nctId}``, ``/ctgov/api/v2/version``,
``/eutils/esearch.fcgi``, ``/eutils/efetch.fcgi`` (GET or POST form),
``/europepmc/webservices/rest/search``.  Anything else: 404 text/plain.

Data
----
``srv.ctgov_studies`` (list of Study dicts), ``srv.pubmed_articles`` (list of bytes, one
``PubmedArticle`` / ``PubmedBookArticle`` / ``DeleteCitation`` element each) and
``srv.europepmc_results`` (list of core result dicts) are plain lists and may be mutated between
runs (``append``, ``srv.replace_study(changed)``, ``srv.remove_study(nct)``) to simulate the next
night's data.  Paging state (CT.gov tokens, Europe PMC cursors, E-utilities history sets) holds a
snapshot taken on the first page, like a real search index; ``srv.expire_tokens()`` forgets all
of them (a "data refresh": old tokens/cursors/WebEnvs then fail as unknown).

CT.gov ``GET /studies`` (API v2, see API_NOTES 1.3/1.4/1.7)
---------------------------------------------------------
* ``query.*`` are accepted and ignored (no Essie engine): every stored study matches.
* ``filter.advanced``: every ``AREA[<DateField>]RANGE[a,b]`` clause is applied (AND), for the date
  fields LastUpdatePostDate, StudyFirstPostDate, ResultsFirstPostDate, StartDate,
  PrimaryCompletionDate, CompletionDate; bounds are ``MIN``/``MAX``/``yyyy-MM-dd``/``yyyy-MM``/
  ``yyyy``/``MM/DD/YYYY``, inclusive.  Other AREA clauses are ignored.  Unbalanced brackets or
  parentheses, an empty/malformed RANGE or an unparsable date -> 400 text/plain.
* ``filter.ids`` and ``filter.overallStatus`` (comma/pipe lists) are applied.
* ``sort``: ``LastUpdatePostDate``, ``StudyFirstPostDate`` (``:asc``/``:desc``, default desc),
  ``@relevance`` (no-op).  At most 2 items; anything else -> 400.  Studies lacking the sort
  field come last.  Without ``sort`` the order is the list order (the real default is unsorted).
* ``pageSize``: default 10, ``0`` = default, > 1000 coerced to 1000, negative/non-integer -> 400.
* ``countTotal=true``: ``totalCount`` on the FIRST page only (a request without pageToken).
* ``pageToken``: opaque URL-safe string, absent on the last page.  Valid only with exactly the
  same parameters as the first page except ``pageToken``/``pageSize``/``countTotal``; otherwise,
  or when unknown, 400 text/plain.  Tokens stay valid (re-usable) until ``expire_tokens()``.
* ``format`` other than ``json`` -> 400 (the replay has no CSV).  ``fields`` is ignored (full
  study returned).  Body: compact JSON ``{"totalCount"?,"studies":[...],"nextPageToken"?}``.
* ``/studies/{nctId}``: the study, a 301 to the current record when ``nctId`` is one of a study's
  ``nctIdAliases``, 400 for a malformed id, 404 text/plain when unknown.
* ``/version``: ``{"apiVersion":"2.0.5","dataTimestamp": srv.data_timestamp}``.

E-utilities (API_NOTES 2.3/2.4/2.8)
-----------------------------------
* ``esearch.fcgi`` (GET, or POST form): ``db=pubmed`` (else ERROR), ``term`` accepted and ignored,
  ``datetype`` edat|mdat|pdat (default pdat), ``mindate``/``maxdate`` (``YYYY/MM/DD``,
  ``YYYY/MM``, ``YYYY``; a missing bound or a bad date -> ERROR, HTTP 200), ``reldate`` (days
  before ``srv.today``), ``retstart`` (default 0), ``retmax`` (default 20, max 10000),
  ``rettype=count``, ``usehistory=y`` (-> ``webenv`` + ``querykey``; an incoming ``WebEnv`` is
  reused with the next query key), ``retmode`` json|xml (default xml).  One record per PMID,
  as in PubMed: when the stored list holds two elements with one PMID (a crafted variant beside
  the real record), the later one is the record, in the earlier one's place (a live record wins
  over a DeleteCitation of its PMID).
  Dates: edat = ``PubmedData/History/PubMedPubDate[@PubStatus="entrez"]`` (fallback "pubmed"),
  mdat = ``MedlineCitation/DateRevised``, pdat = the first ``PubDate`` (Year, Month name or
  number, Day; missing parts = 1, ``MedlineDate`` -> its year).  ``DeleteCitation`` elements have
  no dates and are part of every result set.  JSON counts are strings, like NCBI.
* Ceiling: ``esearch_ceiling`` (default 9999, what NCBI enforces today: "'retstart' cannot be
  larger than 9998") is the number of records of a PubMed query that are reachable.
  ``retstart >= ceiling`` -> the real ERROR text (HTTP 200); ``retstart+retmax`` beyond it is
  clamped with the real warning "Restrictions achieved. start and count adjusted ...".  A history
  set keeps only the first ``ceiling`` PMIDs while ``count`` reports the true number, so efetch
  from that history never yields more than ``ceiling`` records (beyond: an empty
  ``PubmedArticleSet``).  Tests use e.g. ``esearch_ceiling=3`` to exercise window splitting.
* ``efetch.fcgi`` (GET/POST): ``db=pubmed``; ``id`` (comma list, order kept, unknown ids skipped)
  or ``WebEnv`` + ``query_key`` with ``retstart`` (default 0) / ``retmax`` (default 20, max
  10000).  Returns ``<?xml?><!DOCTYPE PubmedArticleSet ...><PubmedArticleSet>`` wrapping the
  stored element bytes verbatim.  Unknown WebEnv/query_key -> 200
  ``<eFetchResult><ERROR>Unable to obtain query #N</ERROR></eFetchResult>``.
* ``enforce_ncbi_rate=True``: more than 3 requests (10 with ``api_key``) within any
  ``ncbi_rate_window`` (1 s) -> 429 with the NCBI JSON body and ``X-RateLimit-Limit`` /
  ``X-RateLimit-Remaining`` headers (all requests, including rejected ones, count).  Rejected
  requests do not advance fault counters.

Europe PMC ``GET /search`` (API_NOTES 3.2/3.3/3.5)
--------------------------------------------------
* ``query``: ``FIRST_IDATE:[a TO b]`` filters on ``firstIndexDate`` (also FIRST_PDATE ->
  ``firstPublicationDate``, E_PDATE -> ``electronicPublicationDate``); ``*`` is an open bound.
  Several clauses are ANDed unless the word OR stands between two of them (then ORed).  The rest
  of the query is ignored.  A bad date -> 400 text/plain (not verified against the live service).
* ``format`` must be ``json`` (else 400: the replay has no XML/DC); ``resultType`` echoed, the
  stored (core) dicts are returned as they are; ``pageSize`` default 25, max 1000 (coerced);
  ``sort``: ``FIRST_IDATE_D``, ``FIRST_PDATE_D``, ``P_PDATE_D``, ``CITED``, ``PUB_YEAR`` with
  asc/desc; any other field -> HTTP 500 (API_NOTES 3.5 / checklist 9).
* ``cursorMark``: ``*`` first, then a base64 string that always contains ``+``, ``/`` and ``=``,
  so a client that double-encodes it (or sends ``+`` raw) sends an unknown cursor.  Unknown
  cursor (or a cursor used with a different query/sort) -> **HTTP 500**, JSON error body.
* End of results (``europepmc_end``): ``"echo"`` - the page that exhausts the results carries
  ``nextCursorMark`` (and ``nextPageUrl``) equal to the cursor that was sent; ``"omit"`` - that
  page has neither key (official v6.6 note); ``"solr"`` - every non-empty page gets a fresh
  cursor and only the following (empty) page echoes the cursor sent.  A request at/after the end
  always gets an empty ``result`` list with the echo/omit behaviour.
* ``hitCount`` on every page, ``version`` "6.9", ``request`` echo (cursorMark percent-encoded as
  the real service shows ``%2A``), ``nextPageUrl`` correctly percent-encoded.

Fault injection: ``srv.add_fault(source, kind, *, on_request=1, times=1, retry_after=None,
path=None, module=None, extra=5)``
-----------------------------------------------------------------------------------------
The fault fires on the ``on_request``-th .. ``on_request+times-1``-th request to ``source``
counted from the moment the fault is added (1-based; only that source's requests count; for
pubmed esearch and efetch count together unless ``path`` is given, e.g. ``path="efetch.fcgi"``,
which counts only requests whose path ends with it).  Faults are checked in the order added; the
first one that fires wins (each fault still counts every matching request).  Derivation from
the real answer:

* ``"429"``: no real answer computed.  ctgov/europepmc: 429 text/plain ``Too Many Requests``;
  pubmed: 429 with NCBI's JSON body ``{"error":"API rate limit exceeded","api-key":<ip or
  api_key>,"count":"4","limit":"3"|"10"}`` and ``X-RateLimit-Limit``/``X-RateLimit-Remaining: 0``.
  ``Retry-After: <retry_after>`` only when given (no source documents it).
* ``"500"``: 500 (ctgov text/plain, pubmed/europepmc small HTML/JSON error bodies).
* ``"502"`` / ``"503"``: nginx-style HTML gateway page; Retry-After when given.
* ``"timeout"``: waits ``timeout_sleep`` seconds (default 3.0; interrupted by ``stop()``), then
  sends the real answer; a client with a shorter read timeout sees a read timeout.
* ``"hold"``: holds the real answer until the test calls ``release()`` (at most
  ``hold_max`` seconds, default 60), so that a test can act while a client is certainly
  mid-run, however slow the machine; ``held.wait(timeout)`` says when a request is held.
* ``"reset"``: status line + headers (full Content-Length) + the first half of the real body,
  then SO_LINGER(0) close = TCP RST.  httpx: ``ReadError``/``RemoteProtocolError``.
* ``"truncated"``: same, but a graceful FIN after half the body (Content-Length still the full
  length).  httpx: ``RemoteProtocolError``.
* ``"trickle"``: status line + headers (full Content-Length) at once, then the real body 64
  bytes at a time, one chunk every ``trickle_interval`` seconds (default 2.0, as an audit saw a
  server do): every read succeeds within a read timeout, so only an overall deadline ends the
  request.  Bounded: after ``trickle_for`` seconds (default 30) the server closes the
  connection with the body unfinished; it also stops when the client goes away or on
  ``stop()``.
* ``"invalid_json"`` / ``"invalid_xml"``: HTTP 200, real headers, body = first half of the real
  body (cut on a UTF-8 character boundary, so it still decodes as text) + ``\\x00<<< garbage
  }{ </`` (Content-Length matches the corrupted body).  Works on any source/endpoint.
* ``"html_200"``: HTTP 200, ``Content-Type: text/html``, a maintenance page of that source.
* ``"empty_page"``: ctgov - ``{"studies":[]}`` (``totalCount`` kept on a first page) with a
  ``nextPageToken`` that resumes at the SAME position (nothing lost for a client that goes on;
  no token if the position is already the end); europepmc - ``result: []`` with hitCount
  unchanged and a fresh ``nextCursorMark`` resuming at the same position; pubmed - esearch with an
  empty ``idlist`` (count unchanged) / efetch with an empty ``PubmedArticleSet``.  With a large
  ``times`` (ctgov): a fresh token for an empty page, again and again - endless paging.
* ``"same_page"`` (ctgov, europepmc): the real page, with a fresh ``nextPageToken`` /
  ``nextCursorMark`` that resumes at the SAME position, so the next request gets that page
  again (with a large ``times``: the same page for ever, each time with a new token).
* ``"repeat_record"`` (crafted by construction, from the real pages): the last record of the
  page is replaced by a copy of the first record of the result set (ctgov: of the window's
  snapshot; europepmc: of the cursor's snapshot; pubmed efetch: of the History set, or of the
  id list) - a record an earlier page already delivered standing in place of another, as real
  CT.gov paging does when records change while a client pages.  The page keeps its length and
  the announced total is unchanged, so only counting distinct ids shows the gap.
* ``"wrong_type"`` (ctgov, europepmc; crafted by construction): the first record of the page
  (or the single study) is a deep copy with one field of the wrong type: ``module`` is
  ``"dotted.path:type"`` from the record's root, e.g. ``protocolSection.statusModule:str`` (the
  module as a JSON string), ``protocolSection.designModule:list``, ``title:int``; see
  ``wrong_typed`` for how the value is derived.
* ``"undeclared_entity"`` (pubmed efetch; crafted by construction): the first article of the
  batch is its real bytes with `` &foo;`` at the end of its ArticleTitle, an entity no DTD
  declares; the body keeps its DOCTYPE (whose DTD a client must not fetch).
* ``"unknown_enum"`` (ctgov): the first study of the page (or the single study) is a deep copy
  with ``overallStatus="FUTURE_STATUS"`` and ``phases=["PHASE5"]``.
* ``"missing_module"`` (ctgov): the first study of the page is a deep copy without
  ``protocolSection[module]`` (``module`` default ``"statusModule"``; ``"designModule"``,
  ``"identificationModule"`` (record cannot be keyed), or a comma list).
* ``"no_title"`` (ctgov): the first study of the page is a deep copy without ``briefTitle`` and
  ``officialTitle`` (its NCT id kept): a record the tracker cannot store, so it quarantines it.
* ``"bad_token"`` (ctgov): 400 text/plain, the same text as a real unknown-token rejection.
* ``"bad_record"`` (pubmed): efetch's first article of the batch is its real bytes with a stray
  unclosed ``<Broken>`` before its end tag: that record alone is not well-formed XML; the body
  around it (prolog, set, the other records) is intact.
* ``"eutils_error"`` (pubmed): HTTP 200; esearch -> ``{"esearchresult":{"ERROR":"Search Backend
  failed: ..."}}`` (or ``<eSearchResult><ERROR>``); efetch -> ``<eFetchResult><ERROR>...``.
* ``"count_mismatch"``: ctgov - ``totalCount`` + ``extra`` (only on a first page with
  countTotal); pubmed - esearch ``count`` + ``extra``, or efetch drops the last article of the
  batch; europepmc - ``hitCount`` + ``extra``; isrctn, euctr, ctis - one more than they hold.
* ``"page0_trap"`` (ctis): the search answers as it answers a page 0 (API_NOTES 6.4: 200 with
  ``totalRecords: 0`` and no data), whatever page was asked for.

Stored data are never mutated by faults (copies are altered).  ``srv.reset_faults()`` removes
all faults; ``srv.requests.clear()`` empties the log.  ``srv.errors`` collects tracebacks of
unexpected exceptions inside the server (a test can assert it stays empty).

Helpers
-------
``fixture_dir(source)`` (``tests/fixtures/<source>``, falling back to the shared fixtures),
``load_ctgov_studies(dir)`` (every ``study_*.json`` and ``studies*.json`` page file),
``load_pubmed_articles(dir, pattern="efetch_*.xml")`` (recorded efetch files only by default;
hand-made ``crafted_*`` files re-use real PMIDs, pass ``pattern="*.xml"`` to include them),
``load_europepmc_results(file_or_dir)``, ``split_pubmed_articles(bytes)``,
``clone_study(study, nct_id, last_update, first_posted=None)``,
``clone_pubmed_article(elem, pmid, entrez_date=None, revised_date=None)``,
``clone_europepmc_result(result, new_id, first_index_date=None)``, ``wrong_typed(record, spec)``,
``with_undeclared_entity(article)``;
``srv.requests_for(source, path=None)``, ``srv.max_requests_in_window(source, window=1.0)``
(the client's peak rate), ``srv.replace_study``, ``srv.remove_study``,
``srv.add_pubmed_articles``, ``srv.replace_pubmed_article``, ``srv.expire_tokens``.
"""

from __future__ import annotations

import base64
import calendar
import copy
import datetime as dt
import json
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlencode, urlsplit

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "RecordedRequest",
    "ReplayServer",
    "clone_europepmc_result",
    "clone_pubmed_article",
    "clone_study",
    "fixture_dir",
    "load_ctgov_studies",
    "load_europepmc_results",
    "load_pubmed_articles",
    "split_pubmed_articles",
    "with_undeclared_entity",
    "wrong_typed",
]

SOURCES = ("ctgov", "pubmed", "europepmc")

_COMMON_FAULTS = {
    "429", "500", "502", "503", "timeout", "hold", "reset", "truncated", "trickle",
    "invalid_json", "invalid_xml", "html_200", "empty_page", "count_mismatch", "repeat_record",
}
FAULT_KINDS: dict[str, frozenset[str]] = {
    "ctgov": frozenset(_COMMON_FAULTS | {"unknown_enum", "missing_module", "no_title",
                                         "bad_token", "same_page", "wrong_type"}),
    "pubmed": frozenset(_COMMON_FAULTS | {"eutils_error", "bad_record", "undeclared_entity"}),
    "europepmc": frozenset(_COMMON_FAULTS | {"same_page", "wrong_type"}),
    "isrctn": frozenset({"429", "500", "502", "503", "timeout", "hold", "reset", "truncated",
                         "trickle", "invalid_xml", "html_200", "count_mismatch"}),
    "ctis": frozenset({"429", "500", "502", "503", "timeout", "hold", "reset", "truncated",
                       "trickle", "invalid_json", "html_200", "count_mismatch",
                       "page0_trap"}),
    "euctr": frozenset({"429", "500", "502", "503", "timeout", "hold", "reset", "truncated",
                        "trickle", "html_200", "count_mismatch"}),
}

# --------------------------------------------------------------------------------------------
# Fixture helpers
# --------------------------------------------------------------------------------------------

_TESTS_DIR = Path(__file__).resolve().parent


def fixture_dir(source: str) -> Path:
    """``tests/fixtures/<source>``: the project's own copies of the recorded responses."""
    return _TESTS_DIR / "fixtures" / source


def _nct_of(study: dict) -> str | None:
    try:
        return study["protocolSection"]["identificationModule"]["nctId"]
    except (KeyError, TypeError):
        return None


def load_ctgov_studies(directory: str | os.PathLike) -> list[dict]:
    """Every ``study_*.json`` (single study) and every ``studies*.json`` page file's studies.

    De-duplicated on nctId (first occurrence wins); file-name order.
    """
    out: list[dict] = []
    seen: set[str] = set()
    for path in sorted(Path(directory).glob("*.json")):
        if not (path.name.startswith("study_") or path.name.startswith("studies")):
            continue
        data = json.loads(path.read_bytes())
        items = data["studies"] if isinstance(data, dict) and "studies" in data else [data]
        for study in items:
            nct = _nct_of(study)
            if nct is None or nct in seen:
                continue
            seen.add(nct)
            out.append(study)
    return out


_ARTICLE_RE = re.compile(
    rb"<(PubmedArticle|PubmedBookArticle|DeleteCitation)(?:\s[^>]*)?>.*?</\1>", re.DOTALL
)


def split_pubmed_articles(data: bytes | str) -> list[bytes]:
    """Split efetch XML (a whole file or bare elements) into element byte strings, verbatim."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return [m.group(0) for m in _ARTICLE_RE.finditer(data)]


def load_pubmed_articles(
    directory: str | os.PathLike, pattern: str = "efetch_*.xml"
) -> list[bytes]:
    """Elements of every file matching ``pattern`` that holds a ``PubmedArticleSet``.

    The default pattern takes only the recorded efetch files (not hand-made ``crafted_*``
    variants that re-use real PMIDs).  De-duplicated on (element kind, PMID).
    """
    out: list[bytes] = []
    seen: set[tuple[bool, str]] = set()
    for path in sorted(Path(directory).glob(pattern)):
        raw = path.read_bytes()
        if b"<PubmedArticleSet" not in raw:
            continue
        for elem in split_pubmed_articles(raw):
            meta = _article_meta(elem)
            key = (meta.deleted, meta.pmid or elem.decode("utf-8", "replace"))
            if key in seen:
                continue
            seen.add(key)
            out.append(elem)
    return out


def load_europepmc_results(path: str | os.PathLike) -> list[dict]:
    """``resultList.result`` of a JSON search response, or of every ``*.json`` in a directory.

    De-duplicated on (source, id).
    """
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    out: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for f in files:
        data = json.loads(f.read_bytes())
        for res in (data.get("resultList") or {}).get("result") or []:
            key = (str(res.get("source")), str(res.get("id")))
            if key in seen:
                continue
            seen.add(key)
            out.append(res)
    return out


def clone_study(
    study: dict, nct_id: str, last_update: str, first_posted: str | None = None
) -> dict:
    """Deep copy of a real study under a new NCT id and dates (``yyyy-MM-dd``)."""
    new = copy.deepcopy(study)
    ps = new.setdefault("protocolSection", {})
    ident = ps.setdefault("identificationModule", {})
    ident["nctId"] = nct_id
    ident.pop("nctIdAliases", None)
    status = ps.setdefault("statusModule", {})
    status["lastUpdatePostDateStruct"] = {"date": last_update, "type": "ACTUAL"}
    status["lastUpdateSubmitDate"] = last_update
    if first_posted is not None:
        status["studyFirstPostDateStruct"] = {"date": first_posted, "type": "ACTUAL"}
        status["studyFirstSubmitDate"] = first_posted
        status["studyFirstSubmitQcDate"] = first_posted
    return new


def _ymd_parts(date: str) -> tuple[str, str, str]:
    d = _parse_loose_date(date.replace("/", "-"))
    if d is None:
        raise ValueError(f"bad date {date!r}")
    return str(d.year), f"{d.month:02d}", f"{d.day:02d}"


def _replace_date_block(elem: bytes, opener: bytes, closer: bytes, date: str) -> bytes:
    y, m, d = _ymd_parts(date)
    start = elem.find(opener)
    if start < 0:
        return elem
    end = elem.find(closer, start)
    block = elem[start:end]
    block = re.sub(rb"<Year>[^<]*</Year>", b"<Year>" + y.encode() + b"</Year>", block, count=1)
    block = re.sub(rb"<Month>[^<]*</Month>", b"<Month>" + m.encode() + b"</Month>", block,
                   count=1)
    block = re.sub(rb"<Day>[^<]*</Day>", b"<Day>" + d.encode() + b"</Day>", block, count=1)
    return elem[:start] + block + elem[end:]


def clone_pubmed_article(
    article: bytes,
    pmid: str,
    entrez_date: str | None = None,
    revised_date: str | None = None,
) -> bytes:
    """Copy of a real article element with a new PMID (and entrez/DateRevised dates).

    Dates as ``YYYY-MM-DD`` or ``YYYY/MM/DD``.  Only the article's own PMID (the first
    ``<PMID>`` and ``ArticleId[@IdType="pubmed"]``) is changed; cited PMIDs are left alone.
    """
    old = _article_meta(article).pmid
    new = re.sub(rb"(<PMID[^>]*>)\d+(</PMID>)", rb"\g<1>" + pmid.encode() + rb"\g<2>", article,
                 count=1)
    if old:
        new = new.replace(
            b'<ArticleId IdType="pubmed">' + old.encode() + b"</ArticleId>",
            b'<ArticleId IdType="pubmed">' + pmid.encode() + b"</ArticleId>",
        )
    if entrez_date:
        for status in (b"entrez", b"pubmed"):
            new = _replace_date_block(
                new, b'<PubMedPubDate PubStatus="' + status + b'">', b"</PubMedPubDate>",
                entrez_date,
            )
    if revised_date:
        new = _replace_date_block(new, b"<DateRevised>", b"</DateRevised>", revised_date)
    return new


def clone_europepmc_result(
    result: dict, new_id: str, first_index_date: str | None = None
) -> dict:
    """Deep copy of a real Europe PMC result under a new id/pmid (and firstIndexDate)."""
    new = copy.deepcopy(result)
    new["id"] = new_id
    if "pmid" in new or new.get("source") == "MED":
        new["pmid"] = new_id
    new.pop("pmcid", None)
    new.pop("doi", None)
    if first_index_date is not None:
        new["firstIndexDate"] = first_index_date
    return new


def wrong_typed(record: dict, spec: str | None) -> dict:
    """Deep copy of a real record with one field of the wrong type (crafted by construction).

    ``spec`` is ``"dotted.path:type"`` (default ``protocolSection.statusModule:str``); the
    value at the path is replaced by one derived from it: ``str`` - its compact JSON text (an
    object becomes a string); ``list`` - a one-element list holding it; ``int`` - the digits of
    its text as an integer (the date "2019-05-14" becomes 20190514), or the length of its text
    when that has no digit. A path that is not in the record leaves the copy unchanged.
    """
    path, _, kind = (spec or "protocolSection.statusModule:str").partition(":")
    new = copy.deepcopy(record)
    *parents, last = path.split(".")
    node: Any = new
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        return new
    value = node[last]
    if kind == "str":
        node[last] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    elif kind == "list":
        node[last] = [value]
    elif kind == "int":
        text = value if isinstance(value, str) else json.dumps(value)
        digits = re.sub(r"\D", "", text)
        node[last] = int(digits) if digits else len(text)
    else:
        raise ValueError(f"wrong_type: unknown type {kind!r} in {spec!r} (str, list or int)")
    return new


def with_undeclared_entity(article: bytes) -> bytes:
    """A real article's bytes with `` &foo;`` added at the end of its ArticleTitle (or, for a
    book, its BookTitle): a named entity no DTD declares (crafted by construction)."""
    for tag in (b"</ArticleTitle>", b"</BookTitle>"):
        at = article.find(tag)
        if at >= 0:
            return article[:at] + b" &foo;" + article[at:]
    return article


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}


def _parse_loose_date(text: str | None) -> dt.date | None:
    """yyyy-MM-dd, yyyy-MM, yyyy (missing parts -> 1).  None when unparsable."""
    if not text:
        return None
    m = re.fullmatch(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", text.strip())
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


def _period_end(year: int, month: int | None, day: int | None) -> dt.date:
    if month is None:
        return dt.date(year, 12, 31)
    if day is None:
        return dt.date(year, month, calendar.monthrange(year, month)[1])
    return dt.date(year, month, day)


@dataclass
class _ArticleMeta:
    pmid: str | None
    edat: dt.date | None
    mdat: dt.date | None
    pdat: dt.date | None
    deleted: bool


def _ymd_from_block(block: bytes | None) -> dt.date | None:
    if block is None:
        return None

    def tag(name: bytes) -> str | None:
        m = re.search(rb"<" + name + rb">\s*([^<]*?)\s*</" + name + rb">", block)
        return m.group(1).decode() if m else None

    year = tag(b"Year")
    if year is None:
        medline = tag(b"MedlineDate")
        m = re.match(r"(\d{4})", medline or "")
        return dt.date(int(m.group(1)), 1, 1) if m else None
    month_s = tag(b"Month")
    day_s = tag(b"Day")
    month = 1
    if month_s:
        month = int(month_s) if month_s.isdigit() else _MONTHS.get(month_s[:3].lower(), 1)
    day = int(day_s) if day_s and day_s.isdigit() else 1
    try:
        return dt.date(int(year), month, day)
    except ValueError:
        return None


_META_CACHE: dict[bytes, _ArticleMeta] = {}
_META_LOCK = threading.Lock()


def _article_meta(elem: bytes) -> _ArticleMeta:
    with _META_LOCK:
        hit = _META_CACHE.get(elem)
    if hit is not None:
        return hit
    m = re.search(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>", elem)
    pmid = m.group(1).decode() if m else None

    def block(pattern: bytes) -> bytes | None:
        mm = re.search(pattern, elem, re.DOTALL)
        return mm.group(1) if mm else None

    entrez = block(rb'<PubMedPubDate PubStatus="entrez">(.*?)</PubMedPubDate>')
    if entrez is None:
        entrez = block(rb'<PubMedPubDate PubStatus="pubmed">(.*?)</PubMedPubDate>')
    meta = _ArticleMeta(
        pmid=pmid,
        edat=_ymd_from_block(entrez),
        mdat=_ymd_from_block(block(rb"<DateRevised>(.*?)</DateRevised>")),
        pdat=_ymd_from_block(block(rb"<PubDate>(.*?)</PubDate>")),
        deleted=elem.lstrip().startswith(b"<DeleteCitation"),
    )
    with _META_LOCK:
        if len(_META_CACHE) > 50000:
            _META_CACHE.clear()
        _META_CACHE[elem] = meta
    return meta


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as received.  ``params`` merges the query string and a POST form body."""

    time: float  # time.monotonic() at arrival
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    source: str | None = None  # "ctgov" | "pubmed" | "europepmc" | None
    body: bytes = b""
    fault: str | None = None  # kind of the fault that answered it, if any

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default

    @property
    def endpoint(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Fault:
    source: str
    kind: str
    on_request: int = 1
    times: int = 1
    retry_after: str | None = None
    path: str | None = None
    module: str | None = None
    extra: int = 5
    seen: int = 0  # matching requests counted so far
    fired: int = 0

    def matches(self, rec: RecordedRequest) -> bool:
        if rec.source != self.source:
            return False
        return self.path is None or rec.path.endswith(self.path)

    def consume(self) -> bool:
        self.seen += 1
        if self.on_request <= self.seen < self.on_request + self.times:
            self.fired += 1
            return True
        return False


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    transport: str | None = None  # None | "reset" | "truncated"
    delay: float = 0.0
    hold: bool = False  # "hold": wait for ReplayServer.release()


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _text(status: int, message: str) -> _Response:
    return _Response(status, message.encode("utf-8"), "text/plain; charset=utf-8")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _json(status: int, obj: Any, content_type: str = "application/json") -> _Response:
    return _Response(status, _json_bytes(obj), content_type)


# --------------------------------------------------------------------------------------------
# Canned error pages (shapes as the services/their gateways send them)
# --------------------------------------------------------------------------------------------

_GATEWAY_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

_HTML_200 = {
    "euctr": (
        "<!DOCTYPE html><html><head><title>EU Clinical Trials Register</title></head><body>"
        "<h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>"
    ),
    "ctis": (
        "<!DOCTYPE html><html><head><title>CTIS - Maintenance</title></head><body>"
        "<h1>Clinical Trials Information System</h1><p>Scheduled maintenance.</p></body></html>"
    ),
    "isrctn": (
        "<!DOCTYPE html><html><head><title>ISRCTN - Service unavailable</title></head><body>"
        "<h1>ISRCTN</h1><p>The service is temporarily unavailable.</p></body></html>"
    ),
    "ctgov": (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>ClinicalTrials.gov</title></head><body><header><a href=\"/\">"
        "ClinicalTrials.gov</a></header><main><h1>We'll be back soon</h1><p>ClinicalTrials.gov "
        "is undergoing scheduled maintenance. Please try again later.</p></main></body></html>"
    ),
    "pubmed": (
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" "
        "\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www."
        "w3.org/1999/xhtml\"><head><title>NCBI - WWW Error Blocked Diagnostic</title></head>"
        "<body><h1>Service unavailable</h1><p>The NCBI E-utilities service is temporarily "
        "unavailable. Please try again later.</p></body></html>"
    ),
    "europepmc": (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Europe PMC - "
        "Service unavailable</title></head><body><div class=\"ebi-header\">EMBL-EBI</div><h1>"
        "Europe PMC is temporarily unavailable</h1><p>We are performing maintenance. Please "
        "try again later.</p></body></html>"
    ),
}

_NCBI_BACKEND_ERROR = (
    "Search Backend failed: Couldn't resolve #rev-sps-host, the address table is empty."
)

_ESEARCH_XML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eSearchResult PUBLIC '
    '"-//NLM//DTD esearch 20060628//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)
_EFETCH_ERR_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eFetchResult PUBLIC '
    '"-//NLM//DTD efetch 20131226//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
)
_PUBMED_SET_HEAD = (
    b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
    b'1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)

_CTGOV_TOKEN_REJECT = "The pageToken parameter is not valid for this query; page tokens can only " \
    "be used with the same query parameters (except pageToken, pageSize and countTotal) " \
    "as the first page."

# --------------------------------------------------------------------------------------------
# Server plumbing
# --------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], replay: ReplayServer) -> None:
        self.replay = replay
        self._conns: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address):
        t = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self._conns.add(request)
            self._handler_threads = [x for x in self._handler_threads if x.is_alive()]
            self._handler_threads.append(t)
        t.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._conns.discard(request)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # peer went away, timeouts, resets
            return
        self.replay.errors.append(traceback.format_exc())

    def close_all(self, timeout: float) -> None:
        with self._lock:
            conns = list(self._conns)
            threads = list(self._handler_threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ReplayServer/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections end after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        replay = self.server.replay
        arrived = time.monotonic()
        split = urlsplit(self.path)
        params = parse_qs(split.query, keep_blank_values=True)
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if body and "application/x-www-form-urlencoded" in ctype:
            for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(k, []).extend(v)
        rec = RecordedRequest(
            time=arrived,
            method=method,
            path=split.path,
            params=params,
            headers={k: v for k, v in self.headers.items()},
            source=replay._source_for(split.path),
            body=body,
        )
        replay._record(rec)
        try:
            resp = replay._respond(rec, self.client_address[0])
        except Exception:  # noqa: BLE001
            replay.errors.append(traceback.format_exc())
            resp = _text(500, "replay server internal error")
        self._send(resp, head=(method == "HEAD"))

    def _send(self, resp: _Response, head: bool = False) -> None:
        replay = self.server.replay
        if replay.latency > 0 and replay._stopping.wait(replay.latency):
            self.close_connection = True
            return
        if resp.delay > 0 and replay._stopping.wait(resp.delay):
            self.close_connection = True
            return
        if resp.hold:
            replay.held.set()
            released = replay._release.wait(replay.hold_max)
            replay.held.clear()
            if not released or replay._stopping.is_set():
                self.close_connection = True
                return
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers:
                self.send_header(k, v)
            if resp.transport is not None:
                self.close_connection = True
            self.end_headers()
            if head:
                return
            if resp.transport is None:
                self.wfile.write(resp.body)
                return
            if resp.transport == "trickle":
                self._trickle(resp.body)
                return
            self.wfile.write(resp.body[: max(1, len(resp.body) // 2)])
            self.wfile.flush()
            if resp.transport == "reset":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_connection = True


    def _trickle(self, body: bytes) -> None:
        """The body TRICKLE_BYTES at a time, one chunk every ``trickle_interval`` seconds, for
        at most ``trickle_for`` seconds: then the connection is closed, the body unfinished
        (bounded, so a client without a deadline is not held forever). Ends early when the
        client goes away or the server stops."""
        replay = self.server.replay
        give_up = time.monotonic() + replay.trickle_for
        for start in range(0, len(body), TRICKLE_BYTES):
            self.wfile.write(body[start: start + TRICKLE_BYTES])
            self.wfile.flush()
            if (time.monotonic() >= give_up
                    or replay._stopping.wait(replay.trickle_interval)):
                self.connection.shutdown(socket.SHUT_WR)
                return


TRICKLE_BYTES = 64

# --------------------------------------------------------------------------------------------
# ReplayServer
# --------------------------------------------------------------------------------------------


@dataclass
class _CtgovCursor:
    signature: tuple
    snapshot: list[dict]
    offset: int


@dataclass
class _EpmcCursor:
    signature: tuple
    snapshot: list[dict]
    offset: int


@dataclass
class _History:
    elems: list[bytes]  # only the first `ceiling` records of the query
    count: int  # the true count


_CT_DATE_FIELDS = {
    "lastupdatepostdate": ("lastUpdatePostDateStruct",),
    "studyfirstpostdate": ("studyFirstPostDateStruct",),
    "resultsfirstpostdate": ("resultsFirstPostDateStruct",),
    "startdate": ("startDateStruct",),
    "primarycompletiondate": ("primaryCompletionDateStruct",),
    "completiondate": ("completionDateStruct",),
}
_NCT_RE = re.compile(r"^[Nn][Cc][Tt]0*[1-9]\d{0,7}$")

_EPMC_DATE_FIELDS = {
    "FIRST_IDATE": "firstIndexDate",
    "FIRST_PDATE": "firstPublicationDate",
    "E_PDATE": "electronicPublicationDate",
}
_EPMC_SORT_FIELDS = {
    "FIRST_IDATE_D": "firstIndexDate",
    "FIRST_PDATE_D": "firstPublicationDate",
    "P_PDATE_D": "firstPublicationDate",
    "CITED": "citedByCount",
    "PUB_YEAR": "pubYear",
}


def _study_date(study: dict, fld: str) -> str | None:
    status = (study.get("protocolSection") or {}).get("statusModule") or {}
    (key,) = _CT_DATE_FIELDS[fld]
    struct_ = status.get(key) or {}
    return struct_.get("date")


def _norm_ct_date(value: str) -> str | None:
    """Normalise a CT.gov bound or stored date to yyyy-MM-dd (partial -> first day)."""
    v = value.strip()
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", v)
    if m:
        v = f"{m.group(3)}-{int(m.group(1)):02d}-{int(m.group(2)):02d}"
    d = _parse_loose_date(v)
    return d.isoformat() if d else None


class ReplayServer:
    """Replays recorded CT.gov / E-utilities / Europe PMC data with real paging semantics."""

    def __init__(
        self,
        ctgov_studies: Iterable[dict] | None = None,
        pubmed_articles: Iterable[bytes | str] | None = None,
        europepmc_results: Iterable[dict] | None = None,
        isrctn_trials: Iterable[bytes] | None = None,
        ctis_trials: Iterable[tuple[dict, dict]] | None = None,
        euctr_trials: Iterable[tuple[str, dict[str, bytes]]] | None = None,
        *,
        esearch_ceiling: int = 9999,
        europepmc_end: str = "echo",
        timeout_sleep: float = 3.0,
        latency: float = 0.0,
        trickle_interval: float = 2.0,
        trickle_for: float = 30.0,
        enforce_ncbi_rate: bool = False,
        ncbi_rate_window: float = 1.0,
        today: dt.date | None = None,
        data_timestamp: str = "2025-01-01T08:00:00",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if europepmc_end not in ("echo", "omit", "solr"):
            raise ValueError("europepmc_end must be 'echo', 'omit' or 'solr'")
        self.ctgov_studies: list[dict] = list(ctgov_studies or [])
        self.pubmed_articles: list[bytes] = []
        for item in pubmed_articles or []:
            self.pubmed_articles.extend(split_pubmed_articles(item))
        self.europepmc_results: list[dict] = list(europepmc_results or [])
        # ISRCTN: one ``<fullTrial>`` element (bytes) per trial, as the XML API sends them
        self.isrctn_trials: list[bytes] = list(isrctn_trials or [])
        # EU CTIS: (search summary, retrieve record) per trial, in the search's order
        self.ctis_trials: list[tuple[dict, dict]] = list(ctis_trials or [])
        # EU CTR: (EudraCT number, {member state: protocol text}) per trial, in search order
        self.euctr_trials: list[tuple[str, dict[str, bytes]]] = list(euctr_trials or [])
        # EU CTR: the EudraCT numbers the 7-day feed lists (changed "in the last 7 days")
        self.euctr_changed: list[str] = []
        self.esearch_ceiling = esearch_ceiling
        self.europepmc_end = europepmc_end
        self.timeout_sleep = timeout_sleep
        self.trickle_interval = trickle_interval
        self.trickle_for = trickle_for
        self.enforce_ncbi_rate = enforce_ncbi_rate
        self.ncbi_rate_window = ncbi_rate_window
        self.today = today
        self.data_timestamp = data_timestamp
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.faults: list[Fault] = []
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._ctgov_tokens: dict[str, _CtgovCursor] = {}
        self._epmc_cursors: dict[str, _EpmcCursor] = {}
        self._history: dict[str, dict[str, _History]] = {}
        self._ncbi_times: list[float] = []
        self._stopping = threading.Event()
        self.latency = latency  # seconds every answer waits before it is sent (benchmarks)
        self.held = threading.Event()  # set while a "hold" fault holds a request
        self._release = threading.Event()
        self.hold_max = 60.0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ReplayServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="replay-server", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._release.set()
        httpd.shutdown()
        httpd.close_all(timeout=5.0)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- URLs --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def ctgov_url(self) -> str:
        return f"{self.base_url}/ctgov/api/v2"

    @property
    def pubmed_url(self) -> str:
        return f"{self.base_url}/eutils"

    @property
    def europepmc_url(self) -> str:
        return f"{self.base_url}/europepmc/webservices/rest"

    @property
    def euctr_url(self) -> str:
        """The EU Clinical Trials Register's ctr-search root (search, rest/download/trial)."""
        return f"{self.base_url}/euctr/ctr-search"

    @property
    def ctis_url(self) -> str:
        """EU CTIS's public API root (POST /search, GET /retrieve/{ctNumber})."""
        return f"{self.base_url}/ctis/ctis-public-api"

    @property
    def isrctn_url(self) -> str:
        """ISRCTN's API root (the client appends /query/format/default, /trial/N/...)."""
        return f"{self.base_url}/isrctn/api"

    @property
    def source_env(self) -> dict[str, str]:
        """``TRACKER_<SOURCE>_URL`` of every source this server answers for: a bare
        ``tracker update`` (every source enabled by default) asks nothing of a real host."""
        return {"TRACKER_CTGOV_URL": self.ctgov_url, "TRACKER_PUBMED_URL": self.pubmed_url,
                "TRACKER_EUROPEPMC_URL": self.europepmc_url,
                "TRACKER_ISRCTN_URL": self.isrctn_url, "TRACKER_EUCTR_URL": self.euctr_url,
                "TRACKER_CTIS_URL": self.ctis_url}

    # ---- data mutation -----------------------------------------------------------------------
    def replace_study(self, study: dict) -> None:
        """Replace the stored study with the same nctId by ``study`` (append if new)."""
        nct = _nct_of(study)
        with self._lock:
            for i, s in enumerate(self.ctgov_studies):
                if _nct_of(s) == nct:
                    self.ctgov_studies[i] = study
                    return
            self.ctgov_studies.append(study)

    def remove_study(self, nct_id: str) -> None:
        with self._lock:
            self.ctgov_studies[:] = [s for s in self.ctgov_studies if _nct_of(s) != nct_id]

    def add_pubmed_articles(self, data: bytes | str) -> None:
        self.pubmed_articles.extend(split_pubmed_articles(data))

    def replace_pubmed_article(self, article: bytes) -> None:
        pmid = _article_meta(article).pmid
        with self._lock:
            for i, a in enumerate(self.pubmed_articles):
                if _article_meta(a).pmid == pmid:
                    self.pubmed_articles[i] = article
                    return
            self.pubmed_articles.append(article)

    def expire_tokens(self) -> None:
        """Forget all CT.gov tokens, Europe PMC cursors and E-utilities history sets."""
        with self._lock:
            self._ctgov_tokens.clear()
            self._epmc_cursors.clear()
            self._history.clear()

    # ---- faults ------------------------------------------------------------------------------
    def add_fault(
        self,
        source: str,
        kind: str,
        *,
        on_request: int = 1,
        times: int = 1,
        retry_after: str | None = None,
        path: str | None = None,
        module: str | None = None,
        extra: int = 5,
    ) -> Fault:
        if source not in FAULT_KINDS:
            raise ValueError(f"unknown source {source!r}")
        if kind not in FAULT_KINDS[source]:
            raise ValueError(f"fault {kind!r} not supported for {source}")
        if on_request < 1 or times < 1:
            raise ValueError("on_request and times are 1-based positive counts")
        fault = Fault(source, kind, on_request, times, retry_after, path, module, extra)
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def release(self) -> None:
        """Let every request a "hold" fault holds (and any later one) go on."""
        self._release.set()

    # ---- request log helpers -----------------------------------------------------------------
    def requests_for(self, source: str, path: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in list(self.requests)
            if r.source == source and (path is None or r.path.endswith(path))
        ]

    def max_requests_in_window(
        self, source: str, window: float = 1.0, path: str | None = None
    ) -> int:
        """Largest number of ``source`` requests that arrived within any ``window`` seconds."""
        times = sorted(r.time for r in self.requests_for(source, path))
        best = i = 0
        for j, t in enumerate(times):
            while t - times[i] >= window:
                i += 1
            best = max(best, j - i + 1)
        return best

    # ---- internals ---------------------------------------------------------------------------
    @staticmethod
    def _source_for(path: str) -> str | None:
        if path.startswith("/ctgov/"):
            return "ctgov"
        if path.startswith("/eutils/"):
            return "pubmed"
        if path.startswith("/europepmc/"):
            return "europepmc"
        if path.startswith("/isrctn/"):
            return "isrctn"
        if path.startswith("/ctis/"):
            return "ctis"
        if path.startswith("/euctr/"):
            return "euctr"
        return None

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _take_fault(self, rec: RecordedRequest) -> Fault | None:
        chosen = None
        with self._lock:
            for fault in self.faults:
                if fault.matches(rec) and fault.consume() and chosen is None:
                    chosen = fault
        return chosen

    def _ncbi_rate_exceeded(self, rec: RecordedRequest) -> tuple[int, int] | None:
        with self._lock:
            now = rec.time
            self._ncbi_times = [t for t in self._ncbi_times if now - t < self.ncbi_rate_window]
            self._ncbi_times.append(now)
            limit = 10 if rec.get("api_key") else 3
            count = len(self._ncbi_times)
        return (count, limit) if count > limit else None

    def _respond(self, rec: RecordedRequest, client_ip: str) -> _Response:
        if rec.source is None:
            return _text(404, f"Not Found: {rec.path}")
        if rec.source == "pubmed" and self.enforce_ncbi_rate:
            exceeded = self._ncbi_rate_exceeded(rec)
            if exceeded is not None:
                rec.fault = "rate_limit"
                return self._ncbi_429(rec, client_ip, count=exceeded[0], limit=exceeded[1])
        fault = self._take_fault(rec)
        if fault is not None:
            rec.fault = fault.kind
        kind = fault.kind if fault else None

        # Faults answered without computing the real response.
        if kind is not None:
            early = self._early_fault(rec, fault, client_ip)
            if early is not None:
                return early

        try:
            if rec.source == "ctgov":
                resp = self._ctgov(rec, kind, fault)
            elif rec.source == "pubmed":
                resp = self._eutils(rec, kind, fault)
            elif rec.source == "isrctn":
                resp = self._isrctn(rec, kind, fault)
            elif rec.source == "ctis":
                resp = self._ctis(rec, kind, fault)
            elif rec.source == "euctr":
                resp = self._euctr(rec, kind, fault)
            else:
                resp = self._europepmc(rec, kind, fault)
        except _BadRequest as e:
            resp = _text(e.status, e.message)

        if kind == "timeout":
            resp.delay = self.timeout_sleep
        elif kind == "hold":
            resp.hold = True
        elif kind in ("reset", "truncated", "trickle"):
            resp.transport = kind
        elif kind in ("invalid_json", "invalid_xml"):
            cut = len(resp.body) // 2
            while 0 < cut < len(resp.body) and (resp.body[cut] & 0xC0) == 0x80:
                cut -= 1  # stay on a UTF-8 character boundary: decodable, but not parseable
            resp.body = resp.body[:cut] + b"\x00<<< garbage }{ </"
            resp.status = 200
        return resp

    def _early_fault(self, rec: RecordedRequest, fault: Fault, client_ip: str) -> _Response | None:
        kind, src = fault.kind, rec.source
        extra_headers = [("Retry-After", fault.retry_after)] if fault.retry_after else []
        if kind == "429":
            if src == "pubmed":
                resp = self._ncbi_429(rec, client_ip, count=4 if not rec.get("api_key") else 11,
                                      limit=10 if rec.get("api_key") else 3)
            else:
                resp = _text(429, "Too Many Requests")
            resp.headers.extend(extra_headers)
            return resp
        if kind == "500":
            if src == "ctgov":
                resp = _text(500, "Internal Server Error")
            elif src == "europepmc":
                resp = _json(500, {"errCode": 500, "errMsg": "Internal Server Error"})
            else:
                resp = _Response(500, _GATEWAY_HTML.format(code=500, reason="Internal Server "
                                 "Error").encode(), "text/html")
            resp.headers.extend(extra_headers)
            return resp
        if kind in ("502", "503"):
            reason = "Bad Gateway" if kind == "502" else "Service Temporarily Unavailable"
            body = _GATEWAY_HTML.format(code=kind, reason=reason).encode()
            return _Response(int(kind), body, "text/html", list(extra_headers))
        if kind == "html_200":
            return _Response(200, _HTML_200[src].encode(), "text/html; charset=utf-8")
        if kind == "bad_token":
            return _text(400, _CTGOV_TOKEN_REJECT)
        return None

    # ---- EU Clinical Trials Register ---------------------------------------------------------
    _EUCTR_PAGE = 20  # the register sends 20 trials a page

    def _euctr(self, rec: RecordedRequest, kind: str | None, fault: Fault | None) -> _Response:
        """``search?query=..&page=N``: the recorded search page's HTML with its result table
        repeated for each trial of the page (20 a page) and its total replaced;
        ``rest/download/trial/{EudraCT}/{CC}``: that protocol's text. The query itself is not
        applied (every stored trial is a hit, as for the other sources); a query that is an
        EudraCT number finds that trial. ``count_mismatch`` announces one more."""
        sub = rec.path[len("/euctr/ctr-search"):]
        if sub.startswith("/rest/download/trial/"):
            _, eudract, country = sub.rsplit("/", 2)
            for number, texts in self.euctr_trials:
                if number == eudract and country in texts:
                    return _Response(200, texts[country], "text/plain; charset=utf-8")
            return _text(404, f"No protocol {eudract}/{country}")
        if sub.rstrip("/") == "/rest/feed/bydates":
            known = {number for number, _ in self.euctr_trials}
            return _Response(200, _euctr_feed_xml([n for n in self.euctr_changed if n in known]),
                             "application/rss+xml;charset=UTF-8")
        if sub.rstrip("/") != "/search":
            return _text(404, f"Not Found: {rec.path}")
        query = (rec.get("query") or "").strip()
        page = int(rec.get("page") or 1)
        hits = [t for t in self.euctr_trials if query == t[0]] or (
            self.euctr_trials if not re.fullmatch(r"\d{4}-\d{6}-\d{2}", query) else [])
        total = len(hits) + (1 if kind == "count_mismatch" else 0)
        chosen = hits[(page - 1) * self._EUCTR_PAGE: page * self._EUCTR_PAGE]
        return _Response(200, _euctr_search_html(chosen, total), "text/html;charset=UTF-8")

    # ---- EU CTIS -----------------------------------------------------------------------------
    def _ctis(self, rec: RecordedRequest, kind: str | None, fault: Fault | None) -> _Response:
        """``POST /search`` with the documented JSON body (API_NOTES 6.2): 1-based pages of
        ``pagination.size``; page 0 answers 200 with ``totalRecords: 0`` (the documented trap);
        ``GET /retrieve/{ctNumber}``. ``count_mismatch`` announces one more trial."""
        sub = rec.path[len("/ctis/ctis-public-api"):]
        if sub.startswith("/retrieve/"):
            ct = sub.rsplit("/", 1)[-1]
            for summary, record in self.ctis_trials:
                if summary.get("ctNumber") == ct:
                    return _json(200, record)
            return _json(404, {"message": f"Trial {ct} not found"})
        if sub.rstrip("/") != "/search" or rec.method != "POST":
            return _text(404, f"Not Found: {rec.path}")
        try:
            body = json.loads(rec.body or b"{}")
            page = int(body["pagination"]["page"])
            size = int(body["pagination"]["size"])
        except (ValueError, KeyError, TypeError):
            return _json(400, {"message": "Bad request body"})
        total = len(self.ctis_trials) + (1 if kind == "count_mismatch" else 0)
        pages = -(-total // max(1, size))
        if page < 1 or kind == "page0_trap":  # API_NOTES 6.4: page 0 is 200 with nothing
            return _json(200, {"showWarning": False, "pagination": {
                "totalRecords": 0, "currentPage": page, "totalPages": 0, "nextPage": False,
                "prevPage": False}, "data": []})
        data = [s for s, _ in self.ctis_trials[(page - 1) * size: page * size]]
        return _json(200, {"showWarning": False, "pagination": {
            "totalRecords": total, "currentPage": page, "totalPages": pages,
            "nextPage": page < pages, "prevPage": page > 1}, "data": data})

    # ---- ISRCTN ------------------------------------------------------------------------------
    _ISRCTN_NS = "http://www.67bricks.com/isrctn"
    _ISRCTN_EDITED = re.compile(r"lastEdited\s+(GE|GT|LE|LT)\s+(\d{4}-\d{2}-\d{2})")
    _ISRCTN_UPDATED = re.compile(rb'<trial\b[^>]*\blastUpdated="(\d{4}-\d{2}-\d{2})')
    _ISRCTN_NUMBER = re.compile(rb"<isrctn\b[^>]*>(\d+)</isrctn>")

    def _isrctn(self, rec: RecordedRequest, kind: str | None, fault: Fault | None
                ) -> _Response:
        """``/query/format/default?q=..&limit=N`` (no paging: ``limit`` records of the
        ``totalCount``, the query's ``lastEdited`` comparisons applied to each trial's
        ``lastUpdated``; an empty ``q`` is 400, as the API answers) and
        ``/trial/{digits}/format/default``. ``count_mismatch`` announces one more."""
        sub = rec.path[len("/isrctn/api"):]
        if sub.startswith("/trial/"):
            digits = sub.split("/")[2]
            found = [t for t in self.isrctn_trials
                     if (m := self._ISRCTN_NUMBER.search(t)) and m.group(1).decode() == digits]
            if not found:
                return _text(404, f"Trial {digits} not found")
            return self._isrctn_body(found, 1)
        if sub.rstrip("/") != "/query/format/default":
            return _text(404, f"Not Found: {rec.path}")
        q = rec.get("q") or ""
        if not q.strip():
            return _text(400, "Query must not be empty")
        limit = int(rec.get("limit") or 10)
        chosen = []
        tests = self._ISRCTN_EDITED.findall(q)
        for trial in self.isrctn_trials:
            m = self._ISRCTN_UPDATED.search(trial)
            day = m.group(1).decode() if m else ""
            if all({"GE": day >= d, "GT": day > d, "LE": day <= d, "LT": day < d}[op]
                   for op, d in tests):
                chosen.append(trial)
        total = len(chosen) + (1 if kind == "count_mismatch" else 0)
        return self._isrctn_body(chosen[:limit] if limit > 0 else [], total)

    def _isrctn_body(self, trials: list[bytes], total: int) -> _Response:
        body = (f'<allTrials xmlns="{self._ISRCTN_NS}" totalCount="{total}">'.encode()
                + b"".join(trials) + b"</allTrials>")
        return _Response(200, body, "application/xml;charset=UTF-8")

    def _ncbi_429(self, rec: RecordedRequest, client_ip: str, count: int, limit: int) -> _Response:
        key = rec.get("api_key") or client_ip
        body = {"error": "API rate limit exceeded", "api-key": key, "count": str(count),
                "limit": str(limit)}
        return _Response(429, _json_bytes(body), "application/json",
                         [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", "0")])

    # ---- CT.gov ------------------------------------------------------------------------------
    def _ctgov(self, rec: RecordedRequest, kind: str | None, fault: Fault | None) -> _Response:
        sub = rec.path[len("/ctgov/api/v2"):] if rec.path.startswith("/ctgov/api/v2") else None
        if rec.method not in ("GET", "HEAD"):
            return _text(405, "Method Not Allowed")
        if sub in ("/studies", "/studies/"):
            return self._ctgov_studies(rec, kind, fault)
        if sub == "/version":
            return _json(200, {"apiVersion": "2.0.5", "dataTimestamp": self.data_timestamp})
        if sub is not None and sub.startswith("/studies/"):
            return self._ctgov_one(sub[len("/studies/"):], kind, fault)
        return _text(404, f"Not Found: {rec.path}")

    def _ctgov_one(self, nct: str, kind: str | None, fault: Fault | None) -> _Response:
        if not _NCT_RE.match(nct):
            return _text(400, f"Invalid NCT number: {nct}")
        with self._lock:
            studies = list(self.ctgov_studies)
        for s in studies:
            if (_nct_of(s) or "").upper() == nct.upper():
                page = self._ctgov_mutate([s], kind, fault)
                return _json(200, page[0])
        for s in studies:
            ident = (s.get("protocolSection") or {}).get("identificationModule") or {}
            if nct.upper() in [a.upper() for a in ident.get("nctIdAliases") or []]:
                real = _nct_of(s)
                return _Response(301, b"", "text/plain",
                                 [("Location", f"{self.ctgov_url}/studies/{real}")])
        return _text(404, f"Study {nct} not found")

    @staticmethod
    def _ctgov_mutate(page: list[dict], kind: str | None, fault: Fault | None) -> list[dict]:
        if page and kind == "wrong_type":
            return [wrong_typed(page[0], fault.module if fault else None), *page[1:]]
        if not page or kind not in ("unknown_enum", "missing_module", "no_title"):
            return page
        first = copy.deepcopy(page[0])
        ps = first.setdefault("protocolSection", {})
        if kind == "no_title":
            ident = ps.setdefault("identificationModule", {})
            ident.pop("briefTitle", None)
            ident.pop("officialTitle", None)
        elif kind == "unknown_enum":
            ps.setdefault("statusModule", {})["overallStatus"] = "FUTURE_STATUS"
            ps.setdefault("designModule", {})["phases"] = ["PHASE5"]
        else:
            modules = (fault.module if fault and fault.module else "statusModule").split(",")
            for m in modules:
                ps.pop(m.strip(), None)
        return [first, *page[1:]]

    def _ctgov_filter_advanced(self, expr: str) -> list[tuple[str, str, str]]:
        """Parse the date RANGE clauses of an Essie expression -> [(field, lo, hi)]."""
        if not expr.strip():
            raise _BadRequest("filter.advanced: empty expression")
        depth_sq = depth_par = 0
        for ch in expr:
            depth_sq += (ch == "[") - (ch == "]")
            depth_par += (ch == "(") - (ch == ")")
            if depth_sq < 0 or depth_par < 0:
                break
        if depth_sq or depth_par:
            raise _BadRequest(f"Invalid filter.advanced expression: unbalanced brackets in "
                              f"'{expr}'")
        clauses = []
        for m in re.finditer(r"AREA\[\s*(\w+)\s*\]\s*RANGE\[([^\]]*)\]", expr, re.IGNORECASE):
            fld = m.group(1).lower()
            parts = m.group(2).split(",")
            if len(parts) != 2:
                raise _BadRequest(f"Invalid RANGE in filter.advanced: '{m.group(0)}'")
            if fld not in _CT_DATE_FIELDS:
                continue
            bounds = []
            for part, open_ in zip(parts, ("MIN", "MAX"), strict=True):
                p = part.strip()
                if p.upper() in ("MIN", "MAX"):
                    bounds.append("0000-01-01" if open_ == "MIN" else "9999-12-31")
                    continue
                norm = _norm_ct_date(p)
                if norm is None:
                    raise _BadRequest(f"Invalid date '{p}' in filter.advanced: '{m.group(0)}'")
                if open_ == "MAX" and re.fullmatch(r"\d{4}(-\d{1,2})?", p):
                    y, *rest = (int(x) for x in p.split("-"))
                    norm = _period_end(y, rest[0] if rest else None, None).isoformat()
                bounds.append(norm)
            clauses.append((fld, bounds[0], bounds[1]))
        if re.search(r"RANGE\[", expr, re.IGNORECASE) and not re.search(r"AREA\[", expr, re.IGNORECASE):
            raise _BadRequest(f"Invalid filter.advanced expression: '{expr}'")
        return clauses

    def _ctgov_select(self, rec: RecordedRequest) -> list[dict]:
        with self._lock:
            studies = list(self.ctgov_studies)
        adv = rec.params.get("filter.advanced")
        if adv is not None:
            for fld, lo, hi in self._ctgov_filter_advanced(adv[0]):
                kept = []
                for s in studies:
                    raw = _study_date(s, fld)
                    d = _norm_ct_date(raw) if raw else None
                    if d is not None and lo <= d <= hi:
                        kept.append(s)
                studies = kept
        ids = rec.get("filter.ids")
        if ids:
            wanted = {x.strip().upper() for x in re.split(r"[,|]", ids) if x.strip()}
            for x in wanted:
                if not _NCT_RE.match(x):
                    raise _BadRequest(f"Invalid NCT number in filter.ids: {x}")
            studies = [s for s in studies if (_nct_of(s) or "").upper() in wanted]
        statuses = rec.get("filter.overallStatus")
        if statuses:
            wanted = {x.strip().upper() for x in re.split(r"[,|]", statuses) if x.strip()}
            studies = [
                s for s in studies
                if ((s.get("protocolSection") or {}).get("statusModule") or {}).get(
                    "overallStatus") in wanted
            ]
        sort = rec.get("sort")
        if sort:
            items = [x.strip() for x in re.split(r"[,|]", sort) if x.strip()]
            if len(items) > 2:
                raise _BadRequest("sort: at most 2 sort items are allowed")
            for item in reversed(items):
                name, _, direction = item.partition(":")
                direction = (direction or "").lower()
                if name == "@relevance":
                    continue
                fld = name.lower()
                if fld not in ("lastupdatepostdate", "studyfirstpostdate"):
                    raise _BadRequest(f"sort: unsupported sort field '{name}'")
                if direction not in ("", "asc", "desc"):
                    raise _BadRequest(f"sort: invalid direction in '{item}'")
                desc = direction != "asc"
                have = [s for s in studies if _study_date(s, fld)]
                lack = [s for s in studies if not _study_date(s, fld)]
                have.sort(key=lambda s, f=fld: _norm_ct_date(_study_date(s, f)) or "",
                          reverse=desc)
                studies = have + lack
        return studies

    def _ctgov_studies(self, rec: RecordedRequest, kind: str | None, fault: Fault | None
                       ) -> _Response:
        fmt = rec.get("format", "json")
        if fmt != "json":
            raise _BadRequest(f"format '{fmt}' is not supported by the replay server")
        raw_size = rec.get("pageSize")
        page_size = 10
        if raw_size not in (None, ""):
            try:
                page_size = int(raw_size)
            except ValueError:
                raise _BadRequest(f"Invalid value for pageSize: '{raw_size}'") from None
            if page_size < 0:
                raise _BadRequest(f"pageSize must not be negative: {page_size}")
            page_size = 10 if page_size == 0 else min(page_size, 1000)
        count_total = (rec.get("countTotal") or "false").lower()
        if count_total not in ("true", "false"):
            raise _BadRequest(f"Invalid value for countTotal: '{count_total}'")
        signature = tuple(sorted(
            (k, tuple(v)) for k, v in rec.params.items()
            if k not in ("pageToken", "pageSize", "countTotal")
        ))
        token = rec.get("pageToken")
        first_page = not token
        if token:
            with self._lock:
                cur = self._ctgov_tokens.get(token)
            if cur is None or cur.signature != signature:
                raise _BadRequest(_CTGOV_TOKEN_REJECT)
            snapshot, offset = cur.snapshot, cur.offset
        else:
            snapshot, offset = self._ctgov_select(rec), 0

        if kind == "empty_page":
            page: list[dict] = []
            next_offset = offset
        else:
            page = snapshot[offset: offset + page_size]
            next_offset = offset if kind == "same_page" else offset + len(page)
        if kind == "repeat_record" and page:
            page = [*page[:-1], snapshot[0]]
        page = self._ctgov_mutate(page, kind, fault)
        out: dict[str, Any] = {}
        if first_page and count_total == "true":
            out["totalCount"] = len(snapshot) + (fault.extra if kind == "count_mismatch" else 0)
        out["studies"] = page
        if next_offset < len(snapshot):
            new_token = secrets.token_urlsafe(9)
            with self._lock:
                self._ctgov_tokens[new_token] = _CtgovCursor(signature, snapshot, next_offset)
            out["nextPageToken"] = new_token
        return _json(200, out)

    # ---- E-utilities -------------------------------------------------------------------------
    def _eutils(self, rec: RecordedRequest, kind: str | None, fault: Fault | None) -> _Response:
        if rec.method not in ("GET", "POST"):
            return _text(405, "Method Not Allowed")
        if rec.path == "/eutils/esearch.fcgi":
            return self._esearch(rec, kind, fault)
        if rec.path == "/eutils/efetch.fcgi":
            return self._efetch(rec, kind, fault)
        return _text(404, f"Not Found: {rec.path}")

    def _esearch_error(self, rec: RecordedRequest, message: str) -> _Response:
        if (rec.get("retmode") or "xml").lower() == "json":
            return _json(200, {"header": {"type": "esearch", "version": "0.3"},
                               "esearchresult": {"ERROR": message}})
        body = (_ESEARCH_XML_HEAD + "<eSearchResult><ERROR>" + _xml_escape(message)
                + "</ERROR></eSearchResult>\n")
        return _Response(200, body.encode(), "text/xml; charset=UTF-8")

    @staticmethod
    def _parse_ncbi_date(value: str, upper: bool) -> dt.date | None:
        m = re.fullmatch(r"(\d{4})(?:/(\d{1,2}))?(?:/(\d{1,2}))?", value.strip())
        if not m:
            return None
        y = int(m.group(1))
        mo = int(m.group(2)) if m.group(2) else None
        d = int(m.group(3)) if m.group(3) else None
        try:
            if upper:
                return _period_end(y, mo, d)
            return dt.date(y, mo or 1, d or 1)
        except ValueError:
            return None

    def _esearch(self, rec: RecordedRequest, kind: str | None, fault: Fault | None) -> _Response:
        db = rec.get("db", "")
        if db != "pubmed":
            return self._esearch_error(rec, f"Invalid db name specified: {db}")
        if kind == "eutils_error":
            return self._esearch_error(rec, _NCBI_BACKEND_ERROR)
        datetype = (rec.get("datetype") or "pdat").lower()
        if datetype not in ("edat", "mdat", "pdat"):
            return self._esearch_error(rec, f"Invalid datetype: {datetype}")
        mindate, maxdate, reldate = rec.get("mindate"), rec.get("maxdate"), rec.get("reldate")
        lo = hi = None
        if mindate or maxdate:
            if not (mindate and maxdate):
                return self._esearch_error(
                    rec, "mindate and maxdate must be used together (format YYYY/MM/DD)")
            lo = self._parse_ncbi_date(mindate, upper=False)
            hi = self._parse_ncbi_date(maxdate, upper=True)
            if lo is None or hi is None:
                return self._esearch_error(rec, f"Invalid date range: {mindate} - {maxdate}")
        elif reldate:
            try:
                days = int(reldate)
            except ValueError:
                return self._esearch_error(rec, f"Invalid reldate: {reldate}")
            hi = self.today or dt.date.today()
            lo = hi - dt.timedelta(days=days)
        try:
            retstart = int(rec.get("retstart") or 0)
            retmax = int(rec.get("retmax") if rec.get("retmax") not in (None, "") else 20)
        except ValueError:
            return self._esearch_error(rec, "Invalid retstart/retmax")
        retmax = max(0, min(retmax, 10000))
        ceiling = self.esearch_ceiling
        if retstart > ceiling - 1:
            return self._esearch_error(
                rec,
                f"Search Backend failed: Exception:\n'retstart' cannot be larger than "
                f"{ceiling - 1}. For PubMed, ESearch can only retrieve the first {ceiling:,} "
                f"records matching the query. To obtain more than {ceiling:,} PubMed records, "
                "consider using EDirect that contains additional logic to batch PubMed search "
                "results automatically so that an arbitrary number can be retrieved. For details "
                "see https://www.ncbi.nlm.nih.gov/books/NBK25499/",
            )
        with self._lock:
            articles = list(self.pubmed_articles)
        # One record per PMID, as in PubMed: when the stored list holds two elements with one
        # PMID (a crafted variant beside the real record), the later one is the record, in the
        # earlier one's place; a live record wins over a DeleteCitation of its PMID.
        by_pmid: dict[str, bytes] = {}
        for a in articles:
            meta = _article_meta(a)
            if meta.pmid is None:
                continue
            if lo is not None and not meta.deleted:
                d = getattr(meta, datetype)
                if d is None or not (lo <= d <= hi):
                    continue
            if meta.deleted and meta.pmid in by_pmid:
                continue
            by_pmid[meta.pmid] = a
        hits = list(by_pmid.values())
        ids = list(by_pmid)
        count = len(ids)
        warnings = []
        shown_max = retmax
        if retstart + retmax > ceiling:
            shown_max = ceiling - retstart
            warnings.append(f"Restrictions achieved. start and count adjusted to {retstart}, "
                            f"{shown_max}")
        idlist = [] if kind == "empty_page" else ids[retstart: retstart + shown_max]
        if kind == "count_mismatch" and fault is not None:
            count += fault.extra
        webenv = querykey = None
        if (rec.get("usehistory") or "").lower() == "y":
            webenv = rec.get("WebEnv") or ("MCID_" + secrets.token_hex(12))
            with self._lock:
                store = self._history.setdefault(webenv, {})
                querykey = str(len(store) + 1)
                store[querykey] = _History(hits[:ceiling], count)
        rettype = (rec.get("rettype") or "").lower()
        if (rec.get("retmode") or "xml").lower() == "json":
            res: dict[str, Any] = {"count": str(count)}
            if rettype != "count":
                res.update(retmax=str(len(idlist)), retstart=str(retstart))
                if webenv:
                    res.update(querykey=querykey, webenv=webenv)
                res.update(idlist=idlist, translationset=[],
                           querytranslation=rec.get("term", ""))
                if warnings:
                    res["warninglist"] = {"phrasesignored": [], "quotedphrasesnotfound": [],
                                          "outputmessages": warnings}
            return _json(200, {"header": {"type": "esearch", "version": "0.3"},
                               "esearchresult": res})
        parts = [f"<eSearchResult><Count>{count}</Count>"]
        if rettype != "count":
            parts.append(f"<RetMax>{len(idlist)}</RetMax><RetStart>{retstart}</RetStart>")
            if webenv:
                parts.append(f"<QueryKey>{querykey}</QueryKey><WebEnv>{webenv}</WebEnv>")
            parts.append("<IdList>\n" + "".join(f"<Id>{i}</Id>\n" for i in idlist) + "</IdList>")
            parts.append("<TranslationSet/><QueryTranslation>"
                         + _xml_escape(rec.get("term", "")) + "</QueryTranslation>")
            if warnings:
                parts.append("<WarningList>" + "".join(
                    f"<OutputMessage>{_xml_escape(w)}</OutputMessage>" for w in warnings)
                    + "</WarningList>")
        parts.append("</eSearchResult>\n")
        return _Response(200, (_ESEARCH_XML_HEAD + "".join(parts)).encode(),
                         "text/xml; charset=UTF-8")

    def _efetch(self, rec: RecordedRequest, kind: str | None, fault: Fault | None) -> _Response:
        db = rec.get("db", "")
        xml_type = "text/xml; charset=UTF-8"
        if db != "pubmed":
            body = f"{_EFETCH_ERR_HEAD}<eFetchResult>\n\t<ERROR>Invalid db name specified: " \
                   f"{_xml_escape(db)}</ERROR>\n</eFetchResult>\n"
            return _Response(200, body.encode(), xml_type)
        webenv, query_key = rec.get("WebEnv"), rec.get("query_key")
        if kind == "eutils_error":
            msg = (f"Cannot retrieve history data. query_key: {query_key}, WebEnv: {webenv}, "
                   f"retstart: {rec.get('retstart', '0')}, retmax: {rec.get('retmax', '20')}"
                   if webenv else "Cannot process ID list")
            body = f"{_EFETCH_ERR_HEAD}<eFetchResult>\n\t<ERROR>{_xml_escape(msg)}</ERROR>\n" \
                   "</eFetchResult>\n"
            return _Response(200, body.encode(), xml_type)
        id_values = rec.params.get("id") or []
        ids = [x.strip() for v in id_values for x in v.split(",") if x.strip()]
        if not ids:
            if not webenv or not query_key:
                body = f"{_EFETCH_ERR_HEAD}<eFetchResult>\n\t<ERROR>Empty id list - nothing " \
                       "todo</ERROR>\n</eFetchResult>\n"
                return _Response(200, body.encode(), xml_type)
            with self._lock:
                hist = (self._history.get(webenv) or {}).get(query_key)
            if hist is None:
                body = f"{_EFETCH_ERR_HEAD}<eFetchResult>\n\t<ERROR>Unable to obtain query " \
                       f"#{_xml_escape(query_key)}</ERROR>\n</eFetchResult>\n"
                return _Response(200, body.encode(), xml_type)
            try:
                retstart = int(rec.get("retstart") or 0)
                retmax = int(rec.get("retmax") if rec.get("retmax") not in (None, "") else 20)
            except ValueError:
                body = f"{_EFETCH_ERR_HEAD}<eFetchResult>\n\t<ERROR>Invalid retstart/retmax" \
                       "</ERROR>\n</eFetchResult>\n"
                return _Response(200, body.encode(), xml_type)
            retmax = max(0, min(retmax, 10000))
            elems = hist.elems[max(0, retstart): max(0, retstart) + retmax]
            if kind == "repeat_record" and elems:
                elems = [*elems[:-1], hist.elems[0]]
        else:
            by_pmid: dict[str, bytes] = {}
            with self._lock:
                articles = list(self.pubmed_articles)
            for a in articles:  # live records win over DeleteCitation for the same PMID
                meta = _article_meta(a)
                if meta.pmid is not None and (meta.pmid not in by_pmid or not meta.deleted):
                    by_pmid[meta.pmid] = a
            elems = [by_pmid[i] for i in ids if i in by_pmid]
        if kind == "empty_page":
            elems = []
        elif kind == "count_mismatch" and elems:
            elems = elems[:-1]
        elif kind == "bad_record" and elems:
            first = elems[0]
            end = first.rindex(b"</")  # the record's own end tag
            elems = [first[:end] + b"<Broken>" + first[end:], *elems[1:]]
        elif kind == "undeclared_entity" and elems:
            elems = [with_undeclared_entity(elems[0]), *elems[1:]]
        elif kind == "repeat_record" and elems and id_values:
            elems = [*elems[:-1], elems[0]]
        body = _PUBMED_SET_HEAD + b"<PubmedArticleSet>\n"
        body += b"".join(e + b"\n" for e in elems)
        body += b"</PubmedArticleSet>\n"
        return _Response(200, body, xml_type)

    # ---- Europe PMC --------------------------------------------------------------------------
    @staticmethod
    def _new_epmc_cursor() -> str:
        # 17 bytes -> 24 base64 chars ending in "=", like the real "AoIIP4ZawSg1MzEyODI1MA=="
        while True:
            raw = base64.b64encode(b"\x02\x82\x08" + secrets.token_bytes(14)).decode()
            if "+" in raw and "/" in raw:
                return raw

    def _europepmc(self, rec: RecordedRequest, kind: str | None, fault: Fault | None
                   ) -> _Response:
        if rec.path.rstrip("/") != "/europepmc/webservices/rest/search":
            return _text(404, f"Not Found: {rec.path}")
        if rec.method not in ("GET", "HEAD"):
            return _text(405, "Method Not Allowed")
        fmt = (rec.get("format") or "xml").lower()
        if fmt != "json":
            raise _BadRequest(f"format '{fmt}' is not supported by the replay server (json only)")
        query = rec.get("query") or ""
        result_type = rec.get("resultType") or "lite"
        sort = (rec.get("sort") or "").strip()
        synonym = (rec.get("synonym") or "false").lower() == "true"
        raw_size = rec.get("pageSize")
        try:
            page_size = int(raw_size) if raw_size not in (None, "") else 25
        except ValueError:
            raise _BadRequest(f"Invalid pageSize: {raw_size}") from None
        page_size = 25 if page_size <= 0 else min(page_size, 1000)
        cursor = rec.get("cursorMark") or "*"
        signature = (query, sort, synonym)
        if cursor == "*":
            snapshot = self._epmc_select(query, sort)
            offset = 0
        else:
            with self._lock:
                cur = self._epmc_cursors.get(cursor)
            if cur is None or cur.signature != signature:
                return _json(500, {"errCode": 500,
                                   "errMsg": f"Invalid cursorMark value: {cursor}"})
            snapshot, offset = cur.snapshot, cur.offset

        if kind == "empty_page":
            page: list[dict] = []
            next_offset = offset
        else:
            page = snapshot[offset: offset + page_size]
            next_offset = offset if kind == "same_page" else offset + len(page)
        if kind == "repeat_record" and page:
            page = [*page[:-1], snapshot[0]]
        elif kind == "wrong_type" and page:
            page = [wrong_typed(page[0], fault.module if fault else None), *page[1:]]
        hit_count = len(snapshot) + (fault.extra if kind == "count_mismatch" and fault else 0)
        out: dict[str, Any] = {"version": "6.9", "hitCount": hit_count}
        exhausted = next_offset >= len(snapshot)
        next_cursor: str | None
        if not exhausted:
            next_cursor = self._mint_epmc(signature, snapshot, next_offset)
        elif self.europepmc_end == "omit":
            next_cursor = None
        elif self.europepmc_end == "solr" and page:
            next_cursor = self._mint_epmc(signature, snapshot, next_offset)
        else:
            next_cursor = cursor
        if next_cursor is not None:
            out["nextCursorMark"] = next_cursor
            params = {k: v[0] for k, v in rec.params.items()}
            params["cursorMark"] = next_cursor
            out["nextPageUrl"] = f"{self.europepmc_url}/search?{urlencode(params)}"
        out["request"] = {
            "queryString": query, "resultType": result_type,
            "cursorMark": quote(cursor, safe=""), "pageSize": page_size, "sort": sort,
            "synonym": synonym,
        }
        out["resultList"] = {"result": page}
        return _json(200, out, "application/json;charset=UTF-8")

    def _mint_epmc(self, signature: tuple, snapshot: list[dict], offset: int) -> str:
        token = self._new_epmc_cursor()
        with self._lock:
            self._epmc_cursors[token] = _EpmcCursor(signature, snapshot, offset)
        return token

    def _epmc_select(self, query: str, sort: str) -> list[dict]:
        with self._lock:
            results = list(self.europepmc_results)
        clauses = list(re.finditer(
            r"\b(" + "|".join(_EPMC_DATE_FIELDS) + r")\s*:\s*\[\s*(\S+)\s+TO\s+(\S+)\s*\]",
            query, re.IGNORECASE))
        if clauses:
            conds = []
            for m in clauses:
                key = _EPMC_DATE_FIELDS[m.group(1).upper()]
                bounds = []
                for raw, default in ((m.group(2), "0000-01-01"), (m.group(3), "9999-12-31")):
                    v = raw.strip("\"'")
                    if v == "*":
                        bounds.append(default)
                        continue
                    d = _parse_loose_date(v) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) else None
                    if d is None:
                        raise _BadRequest(f"Invalid date in query: {m.group(0)}")
                    bounds.append(d.isoformat())
                conds.append((key, bounds[0], bounds[1]))
            use_or = any(
                re.search(r"\bOR\b", query[clauses[i].end(): clauses[i + 1].start()])
                for i in range(len(clauses) - 1)
            )

            def ok(r: dict) -> bool:
                checks = [
                    (r.get(k) is not None and lo <= str(r.get(k))[:10] <= hi)
                    for k, lo, hi in conds
                ]
                return any(checks) if use_or else all(checks)

            results = [r for r in results if ok(r)]
        if sort:
            fld, _, direction = sort.partition(" ")
            key = _EPMC_SORT_FIELDS.get(fld.strip().upper())
            direction = direction.strip().lower() or "asc"
            if key is None or direction not in ("asc", "desc"):
                raise _BadRequest(
                    f"Internal server error: invalid sort field '{sort}'", status=500)
            have = [r for r in results if r.get(key) not in (None, "")]
            lack = [r for r in results if r.get(key) in (None, "")]

            def sort_key(r: dict) -> Any:
                v = r.get(key)
                return (0, float(v)) if isinstance(v, (int, float)) else (1, str(v))

            have.sort(key=sort_key, reverse=(direction == "desc"))
            results = have + lack
        return results


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def load_isrctn_trials(folder: Path) -> list[bytes]:
    """The ``<fullTrial>`` elements of every recorded ISRCTN response in ``folder``, as bytes,
    one per ISRCTN number (the first recording of each)."""
    out: dict[bytes, bytes] = {}
    for path in sorted(folder.glob("*.xml")):
        body = path.read_bytes()
        for m in re.finditer(rb"<fullTrial\b.*?</fullTrial>", body, re.DOTALL):
            num = re.search(rb"<isrctn\b[^>]*>(\d+)</isrctn>", m.group(0))
            if num is not None:
                out.setdefault(num.group(1), m.group(0))
    return list(out.values())


def clone_isrctn_trial(trial: bytes, number: int, last_updated: str) -> bytes:
    """A real ``<fullTrial>`` under a new ISRCTN number (8 digits) and ``lastUpdated`` day."""
    digits = f"{number:08d}".encode()
    out = re.sub(rb"(<isrctn\b[^>]*>)\d+(</isrctn>)", rb"\g<1>" + digits + rb"\g<2>", trial, count=1)
    out = re.sub(rb'publicIdentifierCanonical="ISRCTN\d+"',
                 b'publicIdentifierCanonical="ISRCTN' + digits + b'"', out, count=1)
    return re.sub(rb'lastUpdated="[^"]*"', b'lastUpdated="' + last_updated.encode()
                  + b'T10:00:00Z"', out, count=1)


_EUCTR_SEARCH = "euctr/euctr_search_query_2015-000590-12.html"  # the recorded search page


_EUCTR_FEED = "euctr/crafted_feed_bydates.xml"  # the documented feed shape (see its README)


def _euctr_feed_xml(numbers: list[str]) -> bytes:
    """The crafted 7-day feed with one ``<item>`` per number, in the recorded item's form."""
    body = (_TESTS_DIR / "fixtures" / _EUCTR_FEED).read_text(encoding="utf-8")
    head, rest = body.split("<item>", 1)
    item, tail = rest.split("</item>", 1)
    tail = tail[tail.index("</channel>"):]
    old = re.search(r"\d{4}-\d{6}-\d{2}", item).group(0)  # type: ignore[union-attr]
    items = "".join("<item>" + item.replace(old, n) + "</item>\n    " for n in numbers)
    return (head + items + tail).encode()


def _euctr_search_html(trials: list[tuple[str, dict[str, bytes]]], total: int) -> bytes:
    """The recorded EU CTR search page with one copy of its result table per trial (the
    trial's EudraCT number and member-state protocol links swapped in) and ``total``."""
    page = (_TESTS_DIR / "fixtures" / _EUCTR_SEARCH).read_text(encoding="utf-8")
    start = page.index('<table class="result">')
    end = page.index("</table>", page.rindex('<table class="meddra"')) + len("</table>")
    end = page.index("</table>", end) + len("</table>")  # the result table itself
    head, block, tail = page[:start], page[start:end], page[end:]
    links = re.search(r'<a href="/ctr-search/trial/2015-000590-12/DE">DE</a>\s*'
                      r'<span class="status">\(Completed\)</span>', block)
    assert links is not None, "the recorded search page changed"
    tables = []
    for eudract, texts in trials:
        anchors = "\n".join(
            f'<a href="/ctr-search/trial/{eudract}/{cc}">{cc}</a> '
            f'<span class="status">(Ongoing)</span>' for cc in sorted(texts))
        tables.append(block.replace(links.group(0), anchors).replace("2015-000590-12", eudract))
    head = re.sub(r"Trials with a EudraCT protocol \(\d+\)",
                  f"Trials with a EudraCT protocol ({total})", head)
    return (head + "\n".join(tables) + tail).encode("utf-8")
