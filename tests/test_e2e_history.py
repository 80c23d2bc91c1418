"""End to end: two nightly updates over the replay server with records changed in between,
then what editors and researchers read: `changes`, `show --timeline`, `studies --as-of`,
`report --last-run`, `digest` in every format and `feed`.

Real records: the 11 recorded CT.gov studies (tests/fixtures/ctgov) and five whole MSC records
(tests/fixtures/ctgov_full, converted from the classic API; see its README). Derived records,
said so where made in ``derive_changes``: the second night's versions of four MSC trials (one
starts recruiting, one completes with results and a later completion date, one is terminated
with a reason, one grows its enrollment), a new trial cloned from a real one under a new NCT
id, and a PubMed article cloned from the real crafted-databank record under a new PMID whose
DataBankList names the completed trial (a paper reporting its results).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import feedparser
import pytest
from dbsnapshot import only_sources
from replay_server import (
    ReplayServer,
    clone_pubmed_article,
    clone_study,
    fixture_dir,
    load_pubmed_articles,
    split_pubmed_articles,
)
from typer.testing import CliRunner

from tests.conftest import ctgov_studies, load_json
from tracker.cli import app
from tracker.feed import validate_atom

runner = CliRunner()
FULL = Path(__file__).parent / "fixtures" / "ctgov_full"
TODAY = dt.date.today().isoformat()
NEW_TRIAL = "NCT09999901"
HOSTILE = "NCT09999902"  # crafted: a real record whose title carries markup
RESULTS_PMID = "39999901"


def msc_studies() -> list[dict[str, Any]]:
    """The five whole MSC records, in file order."""
    return [load_json(p) for p in sorted(FULL.glob("NCT*.json"))]


def _status(study: dict[str, Any]) -> dict[str, Any]:
    return study["protocolSection"]["statusModule"]


def derive_changes(studies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The next night's versions (derived from the real records; every edit named here)."""
    by_id = {s["protocolSection"]["identificationModule"]["nctId"]: copy.deepcopy(s)
             for s in studies}
    out = {}
    # NCT05182034 (phase 2, knee OA): NOT_YET_RECRUITING -> RECRUITING.
    s = by_id["NCT05182034"]
    _status(s)["overallStatus"] = "RECRUITING"
    out["NCT05182034"] = s
    # NCT05167721 (phase 2, MSA): RECRUITING -> COMPLETED, completion moved 2025-12-30 ->
    # 2026-09-30 (9 months), results posted today.
    s = by_id["NCT05167721"]
    _status(s)["overallStatus"] = "COMPLETED"
    _status(s)["completionDateStruct"] = {"date": "2026-09-30", "type": "ACTUAL"}
    _status(s)["resultsFirstPostDateStruct"] = {"date": TODAY, "type": "ACTUAL"}
    s["hasResults"] = True
    out["NCT05167721"] = s
    # NCT05152160 (phase 1/2, GvHD): RECRUITING -> TERMINATED, with a reason.
    s = by_id["NCT05152160"]
    _status(s)["overallStatus"] = "TERMINATED"
    _status(s)["whyStopped"] = "Sponsor decision <b>funding</b>"
    out["NCT05152160"] = s
    # NCT05160831 (knee OA): enrollment 50 -> 80 (+60%).
    s = by_id["NCT05160831"]
    s["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = 80
    out["NCT05160831"] = s
    for s in out.values():
        _status(s)["lastUpdatePostDateStruct"] = {"date": TODAY, "type": "ACTUAL"}
    return out


def results_article() -> bytes:
    """A paper reporting NCT05167721: the real databank record under a new PMID, its
    accession replaced, indexed today."""
    base = split_pubmed_articles(
        (fixture_dir("pubmed") / "crafted_efetch_medline_date_databank.xml").read_bytes())[0]
    clone = clone_pubmed_article(base, RESULTS_PMID, entrez_date=TODAY)
    clone = clone.replace(b"NCT01234567", b"NCT05167721")
    # A different paper from the one it was cloned from: its own DOI, so it does not merge.
    clone = clone.replace(b"10.1111/j.1399-0004.2010.01436.x", b"10.9999/derived." +
                          RESULTS_PMID.encode())
    # A results paper, not a review/preprint: its publication types say a clinical trial.
    clone = clone.replace(b"<PublicationType>Review</PublicationType>",
                          b"<PublicationType>Clinical Trial</PublicationType>")
    return clone.replace(b'<PublicationType UI="D000076942">Preprint</PublicationType>', b"")


def _env(srv: ReplayServer, db: Path) -> dict[str, str]:
    return {
        "TRACKER_DB": str(db),
        "TRACKER_CTGOV_URL": srv.ctgov_url,
        "TRACKER_PUBMED_URL": srv.pubmed_url,
        "TRACKER_CTGOV_PAGE_SIZE": "5",
        "TRACKER_CTGOV_RATE_PER_SECOND": "100",
        **only_sources("ctgov", "pubmed"),
        "TRACKER_CONTACT_EMAIL": "tracker-tests@example.org",
        "COLUMNS": "80",
    }


def _run(args: list[str], env: dict[str, str]) -> str:
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 0, (args, res.output, res.stderr)
    return res.output


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The database after two updates, and the environment to query it."""
    db = tmp_path_factory.mktemp("history") / "history.sqlite"
    msc = msc_studies()
    articles = load_pubmed_articles(fixture_dir("pubmed"))
    with ReplayServer(ctgov_studies=[*ctgov_studies(), *msc], pubmed_articles=articles) as srv:
        env = _env(srv, db)
        first = _run(["update"], env)
        assert f"ctgov: {11 + len(msc)} new" in first
        for study in derive_changes(msc).values():
            srv.replace_study(study)
        bmac = next(s for s in msc if "NCT05193877" in json.dumps(s["protocolSection"][
            "identificationModule"]))
        srv.ctgov_studies.append(clone_study(bmac, NEW_TRIAL, TODAY, TODAY))
        # Crafted from the real NCT05160831: its brief title prefixed with a script element.
        hostile = clone_study(msc[1], HOSTILE, TODAY, TODAY)
        ident = hostile["protocolSection"]["identificationModule"]
        ident["briefTitle"] = "<script>alert(1)</script> " + ident["briefTitle"]
        srv.ctgov_studies.append(hostile)
        srv.pubmed_articles.append(results_article())
        second = _run(["update"], env)
        assert "ctgov: 2 new, 4 changed" in second, second
        assert "pubmed: 1 new" in second, second
        yield env


def _changes(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    return json.loads(_run(["changes", "--last-run", "-f", "json", *args], env))


def test_changes_lists_each_field_with_registry_date(two_nights: Any) -> None:
    rows = _changes(two_nights)
    got = {(r["registry_id"], r["field"], r["old_value"], r["new_value"]) for r in rows}
    assert got == {
        ("NCT05182034", "status", "NOT_YET_RECRUITING", "RECRUITING"),
        ("NCT05167721", "status", "RECRUITING", "COMPLETED"),
        ("NCT05167721", "completion_date", "2025-12-30", "2026-09-30"),
        ("NCT05167721", "has_results", "false", "true"),
        ("NCT05167721", "results_first_posted", None, TODAY),
        ("NCT05152160", "status", "RECRUITING", "TERMINATED"),
        ("NCT05152160", "why_stopped", None, "Sponsor decision <b>funding</b>"),
        ("NCT05160831", "enrollment", "50", "80"),
    }
    assert {r["registry_date"] for r in rows} == {TODAY}
    assert all(r["seen_at"].startswith(TODAY) for r in rows)
    assert len({r["update_id"] for r in rows}) == 1
    only_status = _changes(two_nights, "--field", "status")
    assert {r["registry_id"] for r in only_status} == {"NCT05182034", "NCT05167721",
                                                        "NCT05152160"}
    osteo = _changes(two_nights, "--condition", "osteoarthritis")
    assert {r["registry_id"] for r in osteo} == {"NCT05182034", "NCT05160831"}
    table = _run(["changes", "--last-run"], two_nights)
    assert "Not yet recruiting" in table and "Recruiting" in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_changes_rejects_an_unknown_field(two_nights: Any) -> None:
    res = runner.invoke(app, ["changes", "--field", "colour"], env=two_nights)
    assert res.exit_code != 0 and "--field 'colour' is not one of" in res.stderr


def test_timeline_shows_first_sight_then_each_change(two_nights: Any) -> None:
    data = json.loads(_run(["show", "NCT05167721", "--timeline", "-f", "json"], two_nights))
    events = data["events"]
    assert events[0]["event"] == "first seen" and events[0]["registry_date"] == "2021-12-22"
    assert [e["field"] for e in events[1:]] == ["status", "completion_date", "has_results",
                                                "results_first_posted"]
    assert all(e["registry_date"] == TODAY for e in events[1:])
    assert data["versions"] == 2
    text = _run(["show", "NCT05167721", "--timeline"], two_nights)
    assert "Completed" in text and "2026-09-30" in text


def test_as_of_rebuilds_the_earlier_version(two_nights: Any) -> None:
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    then = {s["registry_id"]: s for s in json.loads(_run(
        ["studies", "--as-of", yesterday, "-f", "json", "--include-irrelevant"], two_nights))}
    now = {s["registry_id"]: s for s in json.loads(_run(
        ["studies", "-f", "json", "--include-irrelevant"], two_nights))}
    assert NEW_TRIAL in now and NEW_TRIAL not in then  # first posted today
    assert HOSTILE in now and HOSTILE not in then
    assert then["NCT05182034"]["status"] == "NOT_YET_RECRUITING"
    assert now["NCT05182034"]["status"] == "RECRUITING"
    assert then["NCT05160831"]["enrollment"] == 50 and now["NCT05160831"]["enrollment"] == 80
    assert then["NCT05167721"]["has_results"] is False
    recruiting_then = json.loads(_run(["studies", "--as-of", yesterday, "--status",
                                       "RECRUITING", "-f", "json"], two_nights))
    assert {"NCT05167721", "NCT05152160"} <= {s["registry_id"] for s in recruiting_then}
    assert "NCT05182034" not in {s["registry_id"] for s in recruiting_then}


def test_report_last_run_counts_every_source_of_the_update(two_nights: Any) -> None:
    rep = json.loads(_run(["report", "--last-run", "-f", "json"], two_nights))
    assert sorted(s["registry_id"] for s in rep["studies"]) == [NEW_TRIAL, HOSTILE]
    every = json.loads(_run(["report", "--last-run", "-f", "json", "--include-irrelevant"],
                            two_nights))
    assert {p["pmid"] for p in every["papers"]} == {RESULTS_PMID}  # pubmed ran after ctgov
    assert {s["registry_id"] for s in rep["changed"]} == {
        "NCT05182034", "NCT05167721", "NCT05152160", "NCT05160831"}
    listed = json.loads(_run(["studies", "--last-run", "-f", "json"], two_nights))
    assert {s["registry_id"] for s in listed} == {
        NEW_TRIAL, HOSTILE, "NCT05182034", "NCT05167721", "NCT05152160", "NCT05160831"}


def test_status_shows_the_update_and_its_sources(two_nights: Any) -> None:
    data = json.loads(_run(["status", "-f", "json"], two_nights))
    last = data["last_update"]
    assert last["outcome"] == "ok" and [s["source"] for s in last["sources"]] == [
        "ctgov", "pubmed"]
    assert last["sources"][0]["new"] == 2 and last["sources"][0]["changed"] == 4


def test_digest_ranks_what_matters(two_nights: Any) -> None:
    data = json.loads(_run(["digest", "--last-run", "-f", "json"], two_nights))
    kinds = [(c["id"], c["change_kinds"]) for c in data["changes"]]
    assert kinds == [  # one item per study version, ranked by its most important change
        ("NCT05167721", ["results_posted", "completed", "completion_moved"]),
        ("NCT05152160", ["stopped"]),
        ("NCT05182034", ["started_recruiting"]),
        ("NCT05160831", ["enrollment_changed"]),
    ]
    assert data["changes"][0]["why"].startswith("Results posted")
    assert "moved from 2025-12-30 to 2026-09-30" in data["changes"][0]["why"]
    stopped = next(c for c in data["changes"] if c["change_kind"] == "stopped")
    assert "Sponsor decision <b>funding</b>" in stopped["why"]
    trials = [i["id"] for g in data["new_trials"] for i in g["items"]]
    assert sorted(trials) == [NEW_TRIAL, HOSTILE]
    assert data["new_trials"][0]["group"] == "osteoarthritis"
    assert [p["id"] for p in data["results_papers"]] == [f"PMID:{RESULTS_PMID}"]
    assert data["results_papers"][0]["trials"] == ["NCT05167721"]
    unreported = {i["id"] for i in data["unreported"]}
    assert "NCT05193877" in unreported and "NCT05167721" not in unreported
    assert data["charts"]["status_changes"]["counts"]


def test_digest_markdown_and_html(two_nights: Any, tmp_path: Path) -> None:
    md = _run(["digest", "--last-run"], two_nights)
    assert "NCT05167721" in md and "Sponsor decision \\<b\\>funding\\</b\\>" in md
    out = tmp_path / "digest.html"
    _run(["digest", "--last-run", "-f", "html", "-o", str(out)], two_nights)
    html = out.read_text(encoding="utf-8")
    assert "<b>funding</b>" not in html and "&lt;b&gt;funding&lt;/b&gt;" in html
    assert "data:image/png;base64," in html


def test_feed_is_valid_and_stable(two_nights: Any, tmp_path: Path) -> None:
    one, two = tmp_path / "a.xml", tmp_path / "b.xml"
    _run(["feed", "--last-run", "-o", str(one)], two_nights)
    _run(["feed", "--last-run", "-o", str(two)], two_nights)
    parsed = feedparser.parse(one.read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    assert validate_atom(one.read_bytes()) == []
    ids = [e.id for e in parsed.entries]
    assert ids == [e.id for e in feedparser.parse(two.read_bytes()).entries]
    assert len(ids) == len(set(ids)) == 2 + 4 + 1  # new trials, changed trials, results paper
    assert all(e.updated.startswith(TODAY) for e in parsed.entries)
    osteo = feedparser.parse(_run(["feed", "--last-run", "--condition", "osteoarthritis"],
                                  two_nights).encode())
    assert {e.id for e in osteo.entries} < set(ids)


def test_digest_html_in_a_real_browser(two_nights: Any, tmp_path: Path) -> None:
    """The HTML the CLI wrote, in headless Chromium at phone and desktop widths: charts drawn,
    nothing fetched, no console error, the crafted <script> title shown as text."""
    from browser import browser, open_page

    out = tmp_path / "digest.html"
    _run(["digest", "--last-run", "-f", "html", "-o", str(out)], two_nights)
    with browser() as chromium:
        for width, height in ((390, 844), (1280, 900)):
            with open_page(chromium, out, width, height) as (page, log):
                page.screenshot(path=str(tmp_path / f"digest-{width}.png"), full_page=True)
                sizes = page.eval_on_selector_all(
                    "img", "els => els.map(e => [e.naturalWidth, e.getBoundingClientRect()"
                    ".width, e.getBoundingClientRect().height])")
                assert len(sizes) == 3 and all(n > 0 and w > 0 and h > 0 for n, w, h in sizes)
                assert page.eval_on_selector_all("script", "els => els.length") == 0
                assert "<script>alert(1)</script>" in page.inner_text("body")
                assert log.requests == [out.resolve().as_uri()] or all(
                    u == out.resolve().as_uri() or u.startswith("data:") for u in log.requests)
                assert log.console_errors == [] and log.page_errors == [] and log.dialogs == []
                if width == 390:
                    assert page.evaluate(
                        "document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_output_file_is_written_whole_and_devices_are_left_alone(
    two_nights: Any, tmp_path: Path
) -> None:
    import os
    import stat

    _run(["digest", "--last-run", "-o", os.devnull], two_nights)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # written to, not replaced by a file
    res = runner.invoke(app, ["digest", "-o", str(tmp_path)], env=two_nights)
    assert res.exit_code == 1 and "is a directory" in res.stderr
    target = tmp_path / "d.md"
    _run(["digest", "--last-run", "-o", str(target)], two_nights)
    assert target.read_text(encoding="utf-8").startswith("# MSC therapy")
    assert [p.name for p in tmp_path.iterdir()] == ["d.md"]  # no temporary file left
