"""Tests of the replay server itself, driven by a plain httpx client."""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest


def _nct(s: dict) -> str:
    return s["protocolSection"]["identificationModule"]["nctId"]


sys.path.insert(0, str(Path(__file__).parent))

import replay_server as rs
from replay_server import (
    ReplayServer,
    clone_europepmc_result,
    clone_pubmed_article,
    clone_study,
    fixture_dir,
    load_ctgov_studies,
    load_europepmc_results,
    load_pubmed_articles,
    split_pubmed_articles,
)

# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


# The recorded records these tests were written against (others may add files to
# tests/fixtures later; the tests select exactly these so their expectations stay valid).
REAL_NCT = {
    "NCT00763412", "NCT02210780", "NCT02513394", "NCT02552212", "NCT03064438", "NCT03475563",
    "NCT03630471", "NCT04431453", "NCT05594173", "NCT04523987", "NCT06388018",
}
REAL_PMIDS = {
    "20412080", "22351513", "23121403", "12091962", "9997", "11748933", "11700088",
    "28775130", "29963580",
}


@pytest.fixture(scope="module")
def studies() -> list[dict]:
    return [s for s in load_ctgov_studies(fixture_dir("ctgov")) if _nct(s) in REAL_NCT]


@pytest.fixture(scope="module")
def articles() -> list[bytes]:
    return [a for a in load_pubmed_articles(fixture_dir("pubmed"))
            if rs._article_meta(a).pmid in REAL_PMIDS and a.startswith(b"<PubmedArticle>")]


@pytest.fixture(scope="module")
def epmc() -> list[dict]:
    return load_europepmc_results(fixture_dir("europepmc") / "search_cancer_core.json")


def _small(studies: list[dict]) -> dict:
    """The smallest recorded study (fast to clone and serialise)."""
    return min(studies, key=lambda s: len(json.dumps(s)))


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c


def _last_update(s: dict) -> str:
    return s["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]


def test_loaders(studies, articles, epmc):
    assert len(studies) == 11  # 9 single-study files + 2 page files
    assert len({_nct(s) for s in studies}) == 11
    assert "NCT04523987" in {_nct(s) for s in studies}  # from the page with nextPageToken
    assert len(articles) == 9
    # crafted_* files are not taken by default (they re-use real PMIDs)
    assert len(load_pubmed_articles(fixture_dir("pubmed"))) == 9
    assert all(a.startswith(b"<PubmedArticle>") and a.endswith(b"</PubmedArticle>")
               for a in articles)
    assert len(epmc) == 25 and all("firstIndexDate" in r for r in epmc)
    both = load_europepmc_results(fixture_dir("europepmc"))
    assert len(both) >= 25


def test_split_mixed_elements(articles):
    raw = (b'<?xml version="1.0" ?>\n<PubmedArticleSet>\n' + articles[0]
           + b'\n<DeleteCitation><PMID Version="1">111</PMID></DeleteCitation>\n'
           + b"<PubmedBookArticle><BookDocument><PMID Version=\"1\">222</PMID></BookDocument>"
           + b"</PubmedBookArticle></PubmedArticleSet>")
    parts = split_pubmed_articles(raw)
    assert [p[:20] for p in parts] == [b"<PubmedArticle>\n    ", b"<DeleteCitation><PMI",
                                       b"<PubmedBookArticle><"]


def test_delete_citation_in_every_window(articles, client):
    deleted = b'<DeleteCitation><PMID Version="1">12091962</PMID></DeleteCitation>'
    with ReplayServer(pubmed_articles=[*articles, deleted]) as srv:
        r = _esearch(client, srv, usehistory="y", datetype="edat", mindate="2018/01/01",
                     maxdate="2018/12/31").json()["esearchresult"]
        assert r["idlist"] == ["29963580", "12091962"]
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={
            "db": "pubmed", "WebEnv": r["webenv"], "query_key": r["querykey"]})
        assert [e.tag for e in ET.fromstring(f.content)] == ["PubmedArticle", "DeleteCitation"]
        g = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed",
                                                                "id": "12091962"})
        assert [e.tag for e in ET.fromstring(g.content)] == ["PubmedArticle"]


def test_clone_helpers(studies, articles, epmc):
    base = _small(studies)
    c = clone_study(base, "NCT09000001", "2025-03-04", first_posted="2025-01-02")
    assert _nct(c) == "NCT09000001" and _last_update(c) == "2025-03-04"
    assert c["protocolSection"]["statusModule"]["studyFirstPostDateStruct"]["date"] == "2025-01-02"
    assert _nct(base) != "NCT09000001"  # deep copy
    a = clone_pubmed_article(articles[1], "99000001", entrez_date="2025-02-03",
                             revised_date="2025/02/04")
    meta = rs._article_meta(a)
    assert meta.pmid == "99000001"
    assert str(meta.edat) == "2025-02-03" and str(meta.mdat) == "2025-02-04"
    assert b'<ArticleId IdType="pubmed">99000001</ArticleId>' in a
    ET.fromstring(a)  # still well-formed
    e = clone_europepmc_result(epmc[0], "99000002", "2025-05-05")
    assert e["id"] == e["pmid"] == "99000002" and e["firstIndexDate"] == "2025-05-05"


# ---------------------------------------------------------------------------------------------
# CT.gov
# ---------------------------------------------------------------------------------------------


def _many_studies(studies: list[dict], n_clones: int = 3) -> list[dict]:
    base = _small(studies)
    clones = [clone_study(base, f"NCT0900000{i}", f"2025-01-0{i}") for i in range(1, n_clones + 1)]
    return [*studies, *clones]


def test_ctgov_paging_sorted_total_on_first_page_only(studies, client):
    data = _many_studies(studies)  # 14 studies
    with ReplayServer(ctgov_studies=data) as srv:
        params = {"query.term": "mesenchymal", "pageSize": "2", "countTotal": "true",
                  "sort": "LastUpdatePostDate:asc", "format": "json"}
        seen: list[dict] = []
        pages = 0
        token = None
        while True:
            p = dict(params, **({"pageToken": token} if token else {}))
            r = client.get(f"{srv.ctgov_url}/studies", params=p)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/json")
            assert b", " not in r.content[:50] and b": " not in r.content[:50]  # compact
            body = r.json()
            if pages == 0:
                assert body["totalCount"] == len(data)
                assert next(iter(body)) == "totalCount"
            else:
                assert "totalCount" not in body
            pages += 1
            seen.extend(body["studies"])
            token = body.get("nextPageToken")
            if token is None:
                break
            assert isinstance(token, str) and token
        assert pages == 7
        assert sorted(_nct(s) for s in seen) == sorted(_nct(s) for s in data)
        dates = [_last_update(s) for s in seen]
        assert dates == sorted(dates)
        assert srv.errors == []


def test_ctgov_token_rules(studies, client):
    with ReplayServer(ctgov_studies=studies) as srv:
        url = f"{srv.ctgov_url}/studies"
        base = {"query.term": "msc", "pageSize": "3", "countTotal": "true"}
        tok = client.get(url, params=base).json()["nextPageToken"]
        # pageSize / countTotal may change; the token may be re-used
        ok = client.get(url, params={"query.term": "msc", "pageSize": "5", "pageToken": tok})
        assert ok.status_code == 200 and len(ok.json()["studies"]) == 5
        again = client.get(url, params={"query.term": "msc", "pageSize": "5", "pageToken": tok})
        assert again.status_code == 200
        # any other change is rejected with 400 text/plain
        bad = client.get(url, params={"query.term": "other", "pageSize": "3", "pageToken": tok})
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/plain")
        added = client.get(url, params={**base, "sort": "LastUpdatePostDate", "pageToken": tok})
        assert added.status_code == 400
        unknown = client.get(url, params={**base, "pageToken": "NF0g5JE"})
        assert unknown.status_code == 400 and "pageToken" in unknown.text
        srv.expire_tokens()
        assert client.get(url, params={**base, "pageToken": tok}).status_code == 400


def test_ctgov_page_size_rules(studies, client):
    data = _many_studies(studies, 3)
    with ReplayServer(ctgov_studies=data) as srv:
        url = f"{srv.ctgov_url}/studies"
        assert len(client.get(url).json()["studies"]) == 10  # default
        assert len(client.get(url, params={"pageSize": "0"}).json()["studies"]) == 10
        big = client.get(url, params={"pageSize": "5000"}).json()
        assert len(big["studies"]) == 14 and "nextPageToken" not in big
        assert client.get(url, params={"pageSize": "abc"}).status_code == 400
        assert client.get(url, params={"format": "csv"}).status_code == 400


def test_ctgov_last_update_window(studies, client):
    with ReplayServer(ctgov_studies=studies) as srv:
        url = f"{srv.ctgov_url}/studies"

        def ids(expr: str) -> set[str]:
            r = client.get(url, params={"filter.advanced": expr, "pageSize": "100"})
            assert r.status_code == 200, r.text
            return {_nct(s) for s in r.json()["studies"]}

        expected = {_nct(s) for s in studies if _last_update(s) >= "2022-01-01"}
        assert ids("AREA[LastUpdatePostDate]RANGE[2022-01-01,MAX]") == expected
        assert expected and len(expected) < len(studies)
        win = {_nct(s) for s in studies if "2019-01-01" <= _last_update(s) <= "2019-12-31"}
        assert ids("AREA[LastUpdatePostDate]RANGE[2019-01-01,2019-12-31]") == win == {
            "NCT03475563", "NCT03630471"}
        # inclusive bounds, legacy MM/DD/YYYY and combination with other (ignored) clauses
        assert ids("AREA[LastUpdatePostDate]RANGE[11/27/2019,11/27/2019]") == {"NCT03475563"}
        assert ids("AREA[Phase]PHASE2 AND AREA[LastUpdatePostDate]RANGE[2019-11-27,2019-11-27]"
                   ) == {"NCT03475563"}
        for bad in ("AREA[LastUpdatePostDate]RANGE[2022-01-01,MAX",
                    "AREA[LastUpdatePostDate]RANGE[yesterday,MAX]",
                    "AREA[LastUpdatePostDate]RANGE[2022-01-01]", ""):
            r = client.get(url, params={"filter.advanced": bad})
            assert r.status_code == 400, bad
            assert r.headers["content-type"].startswith("text/plain")
        # data mutated between runs: a changed study shows up in the next window
        changed = clone_study(studies[0], _nct(studies[0]), "2026-02-01")
        srv.replace_study(changed)
        assert ids("AREA[LastUpdatePostDate]RANGE[2026-01-01,MAX]") == {_nct(studies[0])}
        assert len(srv.ctgov_studies) == len(studies)


def test_ctgov_single_study(studies, client):
    aliased = clone_study(_small(studies), "NCT09999999", "2025-01-01")
    aliased["protocolSection"]["identificationModule"]["nctIdAliases"] = ["NCT08888888"]
    with ReplayServer(ctgov_studies=[*studies, aliased]) as srv:
        r = client.get(f"{srv.ctgov_url}/studies/NCT03475563")
        assert r.status_code == 200 and _nct(r.json()) == "NCT03475563"
        r = client.get(f"{srv.ctgov_url}/studies/NCT01234567")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/plain")
        r = client.get(f"{srv.ctgov_url}/studies/NCT08888888")
        assert r.status_code == 301
        assert r.headers["location"].endswith("/studies/NCT09999999")
        r = client.get(f"{srv.ctgov_url}/studies/NCT08888888", follow_redirects=True)
        assert _nct(r.json()) == "NCT09999999"
        assert client.get(f"{srv.ctgov_url}/version").json()["apiVersion"] == "2.0.5"


# ---------------------------------------------------------------------------------------------
# E-utilities
# ---------------------------------------------------------------------------------------------


def _esearch(client, srv, **params):
    base = {"db": "pubmed", "term": "mesenchymal", "retmode": "json"}
    return client.get(f"{srv.pubmed_url}/esearch.fcgi", params={**base, **params})


def test_esearch_efetch_history(articles, client):
    with ReplayServer(pubmed_articles=articles) as srv:
        r = _esearch(client, srv, usehistory="y", datetype="edat", mindate="2001/01/01",
                     maxdate="2020/12/31", retmax="0")
        res = r.json()["esearchresult"]
        assert res["count"] == "7" and isinstance(res["count"], str)
        assert res["idlist"] == [] and res["querykey"] == "1" and res["webenv"]
        got: list[str] = []
        for start in range(0, 7, 4):
            f = client.post(f"{srv.pubmed_url}/efetch.fcgi",
                            data={"db": "pubmed", "WebEnv": res["webenv"],
                                  "query_key": res["querykey"], "retstart": str(start),
                                  "retmax": "4", "retmode": "xml"})
            assert f.status_code == 200
            assert f.text.startswith("<?xml") and "<!DOCTYPE PubmedArticleSet" in f.text
            root = ET.fromstring(f.content)
            assert root.tag == "PubmedArticleSet"
            got += [e.findtext("MedlineCitation/PMID") for e in root]
        assert sorted(got) == sorted(["20412080", "22351513", "23121403", "11748933",
                                      "11700088", "28775130", "29963580"])
        # the bytes are the recorded ones
        assert articles[1] in client.get(f"{srv.pubmed_url}/efetch.fcgi", params={
            "db": "pubmed", "id": "22351513"}).content
        # id list efetch keeps order, skips unknown
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi",
                       params={"db": "pubmed", "id": "9997,123,12091962", "retmode": "xml"})
        assert [e.findtext("MedlineCitation/PMID") for e in ET.fromstring(f.content)] == [
            "9997", "12091962"]
        # unknown WebEnv -> HTTP 200 with ERROR
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi",
                       params={"db": "pubmed", "WebEnv": "MCID_nope", "query_key": "1"})
        assert f.status_code == 200
        assert ET.fromstring(f.content).findtext("ERROR") == "Unable to obtain query #1"
        # POST esearch, XML, other datetypes
        x = client.post(f"{srv.pubmed_url}/esearch.fcgi",
                        data={"db": "pubmed", "term": "x", "datetype": "mdat",
                              "mindate": "2018/01/01", "maxdate": "2020/01/01"})
        root = ET.fromstring(x.content)
        assert root.findtext("Count") == "3"
        assert sorted(i.text for i in root.iter("Id")) == ["28775130", "29963580", "9997"]
        p = _esearch(client, srv, datetype="pdat", mindate="2012", maxdate="2012").json()
        assert sorted(p["esearchresult"]["idlist"]) == ["22351513", "23121403"]
        e = _esearch(client, srv, datetype="edat", mindate="2012/01/01").json()
        assert "ERROR" in e["esearchresult"]
        assert srv.errors == []


def test_esearch_ceiling(articles, client):
    with ReplayServer(pubmed_articles=articles, esearch_ceiling=3) as srv:
        res = _esearch(client, srv, usehistory="y", retmax="100").json()["esearchresult"]
        assert res["count"] == "9"  # the true count
        assert len(res["idlist"]) == 3
        assert "Restrictions achieved" in res["warninglist"]["outputmessages"][0]
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={
            "db": "pubmed", "WebEnv": res["webenv"], "query_key": res["querykey"],
            "retstart": "0", "retmax": "500"})
        assert len(ET.fromstring(f.content)) == 3  # records beyond the ceiling are lost
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={
            "db": "pubmed", "WebEnv": res["webenv"], "query_key": res["querykey"],
            "retstart": "3", "retmax": "500"})
        assert len(ET.fromstring(f.content)) == 0
        err = _esearch(client, srv, retstart="3").json()["esearchresult"]["ERROR"]
        assert "'retstart' cannot be larger than 2" in err
        # splitting into windows below the ceiling recovers everything
        total: set[str] = set()
        windows = (("1900/01/01", "2000/12/31"), ("2001/01/01", "2011/12/31"),
                   ("2012/01/01", "2016/12/31"), ("2017/01/01", "2030/12/31"))
        for lo, hi in windows:
            r = _esearch(client, srv, usehistory="y", retmax="0", datetype="edat",
                         mindate=lo, maxdate=hi).json()["esearchresult"]
            assert int(r["count"]) <= 3
            f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={
                "db": "pubmed", "WebEnv": r["webenv"], "query_key": r["querykey"],
                "retmax": "500"})
            total |= {e.findtext("MedlineCitation/PMID") for e in ET.fromstring(f.content)}
        assert total == REAL_PMIDS
    with ReplayServer(pubmed_articles=articles) as srv:
        err = _esearch(client, srv, retstart="9999").json()["esearchresult"]["ERROR"]
        assert "'retstart' cannot be larger than 9998" in err


def test_ncbi_rate_enforcement_and_log(articles, client):
    with ReplayServer(pubmed_articles=articles, enforce_ncbi_rate=True) as srv:
        codes = [_esearch(client, srv).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = _esearch(client, srv)
        assert r.status_code == 429
        body = r.json()
        assert body["error"] == "API rate limit exceeded" and body["limit"] == "3"
        assert r.headers["x-ratelimit-limit"] == "3"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert _esearch(client, srv, api_key="k").status_code == 200  # 10/s with a key
        log = srv.requests_for("pubmed")
        assert len(log) == 6
        times = [x.time for x in log]
        assert times == sorted(times) and times[-1] - times[0] < 5
        assert log[0].method == "GET" and log[0].path == "/eutils/esearch.fcgi"
        assert log[0].params["term"] == ["mesenchymal"] and log[0].get("db") == "pubmed"
        assert log[-1].get("api_key") == "k"
        assert srv.max_requests_in_window("pubmed", 1.0) == 6
        time.sleep(1.05)
        assert _esearch(client, srv).status_code == 200
        srv.requests.clear()
        assert srv.requests == []


# ---------------------------------------------------------------------------------------------
# Europe PMC
# ---------------------------------------------------------------------------------------------


def _walk_epmc(client, srv, **params):
    """Walk the cursor chain; stop on a missing/echoed cursor. Returns (ids, responses)."""
    cursor = "*"
    ids: list[str] = []
    bodies = []
    for _ in range(50):
        r = client.get(f"{srv.europepmc_url}/search",
                       params={"query": "mesenchymal", "resultType": "core", "format": "json",
                               "cursorMark": cursor, **params})
        assert r.status_code == 200, r.text
        body = r.json()
        bodies.append(body)
        ids += [x["id"] for x in body["resultList"]["result"]]
        nxt = body.get("nextCursorMark")
        if nxt is None or nxt == cursor:
            return ids, bodies
        cursor = nxt
    raise AssertionError("cursor chain did not end")


@pytest.mark.parametrize("end", ["echo", "omit", "solr"])
def test_europepmc_cursor_chain(epmc, client, end):
    with ReplayServer(europepmc_results=epmc, europepmc_end=end) as srv:
        ids, bodies = _walk_epmc(client, srv, pageSize="10")
        assert sorted(ids) == sorted(x["id"] for x in epmc)
        assert len(bodies) == (4 if end == "solr" else 3)
        assert all(b["hitCount"] == 25 for b in bodies)
        first, last = bodies[0], bodies[-1]
        assert first["version"] and first["request"]["cursorMark"] == "%2A"
        nxt = first["nextCursorMark"]
        assert "=" in nxt and "+" in nxt and "/" in nxt
        if end == "omit":
            assert "nextCursorMark" not in last and "nextPageUrl" not in last
        else:
            assert last["nextCursorMark"] == bodies[-2]["nextCursorMark"]
        if end == "solr":
            assert last["resultList"]["result"] == []


def test_europepmc_next_page_url_filter_sort_and_bad_cursor(epmc, client):
    with ReplayServer(europepmc_results=epmc, europepmc_end="omit") as srv:
        r = client.get(f"{srv.europepmc_url}/search", params={
            "query": "msc AND FIRST_IDATE:[2025-06-15 TO 2025-06-18]", "format": "json",
            "resultType": "core", "pageSize": "3", "sort": "FIRST_IDATE_D asc"})
        body = r.json()
        expected = sorted(x["firstIndexDate"] for x in epmc
                          if "2025-06-15" <= x["firstIndexDate"] <= "2025-06-18")
        assert body["hitCount"] == len(expected) == 8
        dates = [x["firstIndexDate"] for x in body["resultList"]["result"]]
        url = body["nextPageUrl"]
        while url:  # follow nextPageUrl verbatim
            body = client.get(url).json()
            dates += [x["firstIndexDate"] for x in body["resultList"]["result"]]
            url = body.get("nextPageUrl")
        assert dates == expected
        nxt = client.get(f"{srv.europepmc_url}/search", params={
            "query": "x", "format": "json"}).json()
        assert "nextCursorMark" not in nxt  # 25 results fit the default page of 25
        first = client.get(f"{srv.europepmc_url}/search", params={
            "query": "x", "format": "json", "pageSize": "5"}).json()
        cursor = first["nextCursorMark"]
        from urllib.parse import quote

        double = client.get(f"{srv.europepmc_url}/search", params={
            "query": "x", "format": "json", "pageSize": "5",
            "cursorMark": quote(cursor, safe="")})
        assert double.status_code == 500
        raw_plus = client.get(
            f"{srv.europepmc_url}/search?query=x&format=json&cursorMark={cursor}")
        assert raw_plus.status_code == 500  # '+' sent unencoded decodes to ' '
        good = client.get(f"{srv.europepmc_url}/search", params={
            "query": "x", "format": "json", "pageSize": "5", "cursorMark": cursor})
        assert good.status_code == 200 and len(good.json()["resultList"]["result"]) == 5
        assert client.get(f"{srv.europepmc_url}/search", params={
            "query": "x", "format": "json", "sort": "NOPE desc"}).status_code == 500


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def full_srv(studies, articles, epmc):
    with ReplayServer(ctgov_studies=_many_studies(studies, 1), pubmed_articles=articles,
                      europepmc_results=epmc, timeout_sleep=1.0) as srv:
        yield srv
        assert srv.errors == []


def _ct(client, srv, **params):
    return client.get(f"{srv.ctgov_url}/studies", params={"pageSize": "2", **params})


@pytest.mark.parametrize("code", ["429", "500", "502", "503"])
def test_fault_status_codes(full_srv, client, code):
    srv = full_srv
    srv.add_fault("ctgov", code, on_request=2, times=2, retry_after="7")
    codes = [_ct(client, srv).status_code for _ in range(4)]
    assert codes == [200, int(code), int(code), 200]
    r = srv.add_fault("europepmc", code)
    e = client.get(f"{srv.europepmc_url}/search", params={"query": "x", "format": "json"})
    assert e.status_code == int(code) and r.fired == 1
    srv.add_fault("pubmed", code, retry_after="2")
    p = _esearch(client, srv)
    assert p.status_code == int(code)
    if code in ("429", "503"):
        assert p.headers["retry-after"] == "2"
    if code == "429":
        assert p.json() == {"error": "API rate limit exceeded", "api-key": "127.0.0.1",
                            "count": "4", "limit": "3"}
        assert p.headers["x-ratelimit-remaining"] == "0"
    assert [x.fault for x in srv.requests_for("ctgov")] == [None, code, code, None]


def test_fault_without_retry_after(full_srv, client):
    full_srv.add_fault("ctgov", "503")
    r = _ct(client, full_srv)
    assert r.status_code == 503 and "retry-after" not in r.headers


def test_fault_timeout(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "timeout")
    with httpx.Client(timeout=0.3) as short:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            _ct(short, srv)
        assert time.monotonic() - t0 < 1.0
        assert _ct(short, srv).status_code == 200  # next request is normal
    srv.add_fault("pubmed", "timeout")
    r = _esearch(client, srv)  # a patient client gets the real answer late
    assert r.status_code == 200 and r.json()["esearchresult"]["count"] == "9"


def test_stop_does_not_wait_for_sleeping_timeout(studies):
    srv = ReplayServer(ctgov_studies=studies[:2], timeout_sleep=30.0).start()
    srv.add_fault("ctgov", "timeout")
    with httpx.Client(timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.get(f"{srv.ctgov_url}/studies")
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_fault_broken_transfers(full_srv, client, kind):
    srv = full_srv
    srv.add_fault("ctgov", kind)
    srv.add_fault("pubmed", kind, path="efetch.fcgi")
    srv.add_fault("europepmc", kind)
    expected = (httpx.RemoteProtocolError, httpx.ReadError)
    with pytest.raises(expected):
        _ct(client, srv)
    assert _ct(client, srv).status_code == 200
    assert _esearch(client, srv).status_code == 200  # path filter: esearch not affected
    with pytest.raises(expected):
        client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed", "id": "9997"})
    with pytest.raises(expected):
        client.get(f"{srv.europepmc_url}/search", params={"query": "x", "format": "json"})


def test_fault_corrupt_bodies(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "invalid_json")
    r = _ct(client, srv)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    srv.add_fault("pubmed", "invalid_xml", path="efetch.fcgi")
    f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed", "id": "9997"})
    assert f.status_code == 200
    assert f.content.startswith(b"<?xml")
    with pytest.raises(ET.ParseError):
        ET.fromstring(f.content)
    srv.add_fault("europepmc", "invalid_json")
    e = client.get(f"{srv.europepmc_url}/search", params={"query": "x", "format": "json"})
    with pytest.raises(json.JSONDecodeError):
        e.json()


def test_fault_html_200(full_srv, client):
    srv = full_srv
    for src in ("ctgov", "pubmed", "europepmc"):
        srv.add_fault(src, "html_200")
    for r in (_ct(client, srv), _esearch(client, srv),
              client.get(f"{srv.europepmc_url}/search", params={"query": "x",
                                                                "format": "json"})):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text.lstrip().lower().startswith("<!doctype html")


def test_fault_ctgov_empty_page_keeps_paging(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "empty_page", on_request=2)
    total = len(srv.ctgov_studies)
    r = _ct(client, srv, countTotal="true").json()
    seen = [_nct(s) for s in r["studies"]]
    empty = _ct(client, srv, countTotal="true", pageToken=r["nextPageToken"]).json()
    assert empty["studies"] == [] and "nextPageToken" in empty and "totalCount" not in empty
    token = empty["nextPageToken"]
    while token:
        body = _ct(client, srv, countTotal="true", pageToken=token).json()
        seen += [_nct(s) for s in body["studies"]]
        token = body.get("nextPageToken")
    assert sorted(seen) == sorted(_nct(s) for s in srv.ctgov_studies) and len(seen) == total


def test_fault_epmc_and_pubmed_empty_page(full_srv, client):
    srv = full_srv
    srv.add_fault("europepmc", "empty_page")
    ids, bodies = _walk_epmc(client, srv, pageSize="10")
    assert bodies[0]["resultList"]["result"] == [] and bodies[0]["hitCount"] == 25
    assert len(ids) == 25
    srv.add_fault("pubmed", "empty_page", path="efetch.fcgi")
    f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed", "id": "9997"})
    assert len(ET.fromstring(f.content)) == 0


def test_fault_unknown_enum_and_missing_module(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "unknown_enum")
    s = _ct(client, srv).json()["studies"][0]
    assert s["protocolSection"]["statusModule"]["overallStatus"] == "FUTURE_STATUS"
    assert s["protocolSection"]["designModule"]["phases"] == ["PHASE5"]
    srv.add_fault("ctgov", "missing_module")
    s = _ct(client, srv).json()["studies"][0]
    assert "statusModule" not in s["protocolSection"]
    srv.add_fault("ctgov", "missing_module", module="identificationModule,designModule")
    s = client.get(f"{srv.ctgov_url}/studies/NCT03475563").json()
    assert "identificationModule" not in s["protocolSection"]
    assert "designModule" not in s["protocolSection"]
    # stored data untouched
    again = _ct(client, srv).json()["studies"][0]["protocolSection"]
    assert again["statusModule"]["overallStatus"] != "FUTURE_STATUS"
    assert "identificationModule" in again


def test_fault_bad_token(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "bad_token", on_request=2)
    tok = _ct(client, srv).json()["nextPageToken"]
    r = _ct(client, srv, pageToken=tok)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    assert _ct(client, srv, pageToken=tok).status_code == 200  # retry with the same token


def test_fault_eutils_error(full_srv, client):
    srv = full_srv
    srv.add_fault("pubmed", "eutils_error", times=2)
    r = _esearch(client, srv)
    assert r.status_code == 200
    assert r.json()["esearchresult"]["ERROR"].startswith("Search Backend failed")
    f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed", "id": "9997"})
    assert f.status_code == 200 and ET.fromstring(f.content).findtext("ERROR")
    x = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed", "id": "9997"})
    assert ET.fromstring(x.content).tag == "PubmedArticleSet"


def test_fault_count_mismatch(full_srv, client):
    srv = full_srv
    for src in ("ctgov", "pubmed", "europepmc"):
        srv.add_fault(src, "count_mismatch", extra=3)
    n = len(srv.ctgov_studies)
    assert _ct(client, srv, countTotal="true").json()["totalCount"] == n + 3
    assert _esearch(client, srv).json()["esearchresult"]["count"] == "12"
    srv.add_fault("pubmed", "count_mismatch", path="efetch.fcgi")
    f = client.get(f"{srv.pubmed_url}/efetch.fcgi",
                   params={"db": "pubmed", "id": "9997,12091962"})
    assert len(ET.fromstring(f.content)) == 1
    e = client.get(f"{srv.europepmc_url}/search", params={"query": "x", "format": "json"})
    assert e.json()["hitCount"] == 28


def test_fault_validation_and_reset(full_srv, client):
    srv = full_srv
    with pytest.raises(ValueError):
        srv.add_fault("europepmc", "unknown_enum")
    with pytest.raises(ValueError):
        srv.add_fault("ctgov", "nope")
    with pytest.raises(ValueError):
        srv.add_fault("ctgov", "500", on_request=0)
    srv.add_fault("ctgov", "500", times=5)
    srv.reset_faults()
    assert _ct(client, srv).status_code == 200


# ---------------------------------------------------------------------------------------------
# Issue 10 faults: repeated records, endless paging, trickling, wrong types, entities
# ---------------------------------------------------------------------------------------------


def test_fault_repeat_record_keeps_length_and_total(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "repeat_record", on_request=2)
    first = _ct(client, srv, countTotal="true").json()
    second = _ct(client, srv, countTotal="true", pageToken=first["nextPageToken"]).json()
    page1 = [_nct(s) for s in first["studies"]]
    page2 = [_nct(s) for s in second["studies"]]
    assert len(page2) == 2 and page2[-1] == page1[0]  # the window's first study, again
    assert second["studies"][-1] == first["studies"][0]
    srv.add_fault("europepmc", "repeat_record", on_request=2)
    ids, _ = _walk_epmc(client, srv, pageSize="10")
    assert len(ids) == 25 and len(set(ids)) == 24 and ids[19] == ids[0]
    r = _esearch(client, srv, usehistory="y", retmax="0").json()["esearchresult"]
    srv.add_fault("pubmed", "repeat_record", path="efetch.fcgi", on_request=2)
    got = []
    for start in (0, 3, 6):
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi",
                       params={"db": "pubmed", "WebEnv": r["webenv"], "query_key": r["querykey"],
                               "retstart": str(start), "retmax": "3"})
        got += [el.findtext("MedlineCitation/PMID") for el in ET.fromstring(f.content)]
    assert len(got) == 9 and len(set(got)) == 8 and got[5] == got[0]


def test_fault_endless_paging(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "empty_page", on_request=2, times=20)
    body = _ct(client, srv, countTotal="true").json()
    tokens = set()
    for _ in range(10):  # every page empty, every token fresh
        body = _ct(client, srv, countTotal="true", pageToken=body["nextPageToken"]).json()
        assert body["studies"] == [] and body["nextPageToken"] not in tokens
        tokens.add(body["nextPageToken"])
    srv.reset_faults()
    srv.add_fault("europepmc", "same_page", on_request=2, times=20)
    params = {"query": "x", "format": "json", "pageSize": "10"}
    body = client.get(f"{srv.europepmc_url}/search", params={**params, "cursorMark": "*"}).json()
    pages, cursors = [], set()
    for _ in range(5):  # the same (second) page again and again, each with a fresh cursor
        body = client.get(f"{srv.europepmc_url}/search",
                          params={**params, "cursorMark": body["nextCursorMark"]}).json()
        pages.append([x["id"] for x in body["resultList"]["result"]])
        assert body["nextCursorMark"] not in cursors
        cursors.add(body["nextCursorMark"])
    assert len(pages[0]) == 10 and all(p == pages[0] for p in pages)
    srv.add_fault("ctgov", "same_page", on_request=2, times=2)
    first = _ct(client, srv).json()
    a = _ct(client, srv, pageToken=first["nextPageToken"]).json()
    b = _ct(client, srv, pageToken=a["nextPageToken"]).json()
    assert a["studies"] == b["studies"] and a["nextPageToken"] != b["nextPageToken"]


def test_fault_trickle_is_slow_but_bounded(studies):
    with ReplayServer(ctgov_studies=studies, trickle_interval=0.05, trickle_for=0.6) as srv:
        srv.add_fault("ctgov", "trickle", times=2)
        with httpx.Client(timeout=0.5) as c:
            # Every read arrives within the read timeout; the server gives up by itself.
            t0 = time.monotonic()
            with c.stream("GET", f"{srv.ctgov_url}/studies") as r:
                assert r.status_code == 200
                sizes = []
                with pytest.raises(httpx.RemoteProtocolError):
                    for chunk in r.iter_raw():
                        sizes.append(len(chunk))
            assert 0.5 <= time.monotonic() - t0 < 3.0
            assert sizes and max(sizes) <= 64 and len(sizes) >= 5
            # A client that goes away ends the trickle (no error in the server).
            with c.stream("GET", f"{srv.ctgov_url}/studies") as r:
                next(r.iter_raw())
            assert _ct(c, srv).status_code == 200
        assert srv.errors == []


def test_wrong_typed_derivations(studies, epmc):
    s = studies[0]
    status = s["protocolSection"]["statusModule"]
    as_text = rs.wrong_typed(s, "protocolSection.statusModule:str")["protocolSection"]
    assert json.loads(as_text["statusModule"]) == status
    as_list = rs.wrong_typed(s, "protocolSection.designModule:list")["protocolSection"]
    assert as_list["designModule"] == [s["protocolSection"]["designModule"]]
    date = status["startDateStruct"]["date"]
    as_int = rs.wrong_typed(s, "protocolSection.statusModule.startDateStruct.date:int")
    assert as_int["protocolSection"]["statusModule"]["startDateStruct"]["date"] == \
        int(date.replace("-", ""))
    title = rs.wrong_typed(epmc[0], "title:int")["title"]
    assert title == len(epmc[0]["title"]) or str(title) in epmc[0]["title"].replace(" ", "")
    assert rs.wrong_typed(s, "no.such.path:str") == s  # nothing to change: an equal copy
    assert s["protocolSection"]["statusModule"] is status  # the original is untouched
    with pytest.raises(ValueError):
        rs.wrong_typed(s, "protocolSection.statusModule:float")


def test_fault_wrong_type_and_undeclared_entity(full_srv, client):
    srv = full_srv
    srv.add_fault("ctgov", "wrong_type", module="protocolSection.armsInterventionsModule:str")
    s = _ct(client, srv).json()["studies"][0]
    assert isinstance(s["protocolSection"]["armsInterventionsModule"], str)
    srv.add_fault("europepmc", "wrong_type", module="title:int")
    e = client.get(f"{srv.europepmc_url}/search", params={"query": "x", "format": "json"})
    assert isinstance(e.json()["resultList"]["result"][0]["title"], int)
    srv.add_fault("pubmed", "undeclared_entity", path="efetch.fcgi")
    f = client.get(f"{srv.pubmed_url}/efetch.fcgi", params={"db": "pubmed", "id": "9997"})
    assert b" &foo;</ArticleTitle>" in f.content and b"<!DOCTYPE PubmedArticleSet" in f.content


def test_one_record_per_pmid(articles, client):
    crafted = clone_pubmed_article(articles[0], rs._article_meta(articles[0]).pmid or "")
    crafted = crafted.replace(b"<ArticleTitle>", b"<ArticleTitle>Crafted: ", 1)
    with ReplayServer(pubmed_articles=[*articles, crafted]) as srv:
        r = _esearch(client, srv, usehistory="y", retmax="20").json()["esearchresult"]
        assert r["count"] == str(len(articles)) and len(set(r["idlist"])) == len(articles)
        f = client.get(f"{srv.pubmed_url}/efetch.fcgi",
                       params={"db": "pubmed", "WebEnv": r["webenv"],
                               "query_key": r["querykey"], "retmax": "20"})
        first = ET.fromstring(f.content)[0]
        assert first.findtext("MedlineCitation/Article/ArticleTitle").startswith("Crafted: ")
