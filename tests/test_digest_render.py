"""The digest renderers (tracker/digest_render.py, tracker/charts.py) on a digest dict built
from real recorded records.

Studies are the real ClinicalTrials.gov v2 recordings (tests/fixtures/ctgov, none about MSCs)
and papers the real Europe PMC "core" recording (tests/fixtures/europepmc); titles, ids, URLs,
summaries, phases, statuses and dates are theirs. What the digest would add around them (which
group a trial is listed under, why it is listed, which change happened) is assigned here. The
charts count the real classic-site export of 1,265 "mesenchymal" registrations
(tests/fixtures/ctgov_msc), by phase and, with a keyword match on their conditions, by group.

Records named ``crafted`` are NOT recordings: each is a real record whose title, snippet,
labels or URL were replaced by hostile text, as said where it is made.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
import re
import time
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, ctgov_studies
from markdown_it import MarkdownIt

from tracker import charts as charts_mod
from tracker.digest_render import clean, md, md_link, render_html, render_markdown, safe_url
from tracker.words import GROUP_WORDS, phase_words, status_words

HOSTILE_TITLE = "<script>alert(1)</script>](javascript:x) ![x](http://evil/)"
# ESC and BEL as a terminal would see them, plus NUL, DEL, a C1 control and a bidi override.
CONTROL_SNIPPET = "\x1b[31mred\x1b[0m \x07bell\x00 nul\x7f del\x9b csi \u202eevil"

# What each empty section says instead of disappearing.
EMPTY_LINES = (
    "No new trials in this period.",
    "No notable changes in this period.",
    "No papers reporting results of tracked trials in this period.",
    "No other new MSC papers in this period.",
    "No tracked trial is more than 12 months past its primary completion without results.",
)

# ------------------------------------------------------------------ building the digest -----


def _phase_slug(phases: list[str] | None) -> str:
    phases = phases or []
    if phases == ["NA"]:
        return "NOT_APPLICABLE"
    if len(phases) == 2:
        return f"{phases[0]}_{phases[1][-1]}"
    return phases[0] if phases else "UNKNOWN"


def _first_sentence(text: str | None, limit: int = 220) -> str:
    """The first sentence of a summary or abstract, markup tags dropped (as the digest's
    snippets are one line of text)."""
    text = re.sub(r"<[^>]+>", " ", text or "")
    text = " ".join(text.split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    text = m.group(1) if m else text
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def study_item(study: dict[str, Any], why: str, **extra: Any) -> dict[str, Any]:
    """A digest ITEM from a real CT.gov v2 study."""
    proto = study["protocolSection"]
    nct = proto["identificationModule"]["nctId"]
    status = proto["statusModule"]
    return {
        "kind": "study",
        "id": nct,
        "url": f"https://clinicaltrials.gov/study/{nct}",
        "title": proto["identificationModule"]["briefTitle"],
        "snippet": _first_sentence(proto.get("descriptionModule", {}).get("briefSummary")),
        "labels": "",
        "phase_label": phase_words(_phase_slug(proto.get("designModule", {}).get("phases"))),
        "status_label": status_words(status.get("overallStatus")),
        "date": status.get("studyFirstPostDateStruct", {}).get("date"),
        "why": why,
        **extra,
    }


def europepmc_papers() -> list[dict[str, Any]]:
    """The real Europe PMC core recording (25 cancer papers)."""
    data = json.loads((FIXTURES / "europepmc" / "search_cancer_core.json").read_text("utf-8"))
    return data["resultList"]["result"]


def paper_item(rec: dict[str, Any], why: str) -> dict[str, Any]:
    """A digest ITEM from a real Europe PMC record."""
    return {
        "kind": "paper",
        "id": f"PMID:{rec['pmid']}",
        "url": f"https://pubmed.ncbi.nlm.nih.gov/{rec['pmid']}/",
        "title": rec["title"],
        "snippet": _first_sentence(rec.get("abstractText")),
        "labels": "",
        "phase_label": "",
        "status_label": "",
        "date": rec.get("firstPublicationDate"),
        "journal": rec.get("journalInfo", {}).get("journal", {}).get("title", ""),
        "why": why,
    }


def msc_export() -> list[dict[str, str]]:
    path = FIXTURES / "ctgov_msc" / "ctgov_classic_export_mesenchymal_1265.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


_CSV_PHASES = {"Early Phase 1": "Early phase 1", "Phase 1": "Phase 1",
               "Phase 1|Phase 2": "Phase 1/2", "Phase 2": "Phase 2",
               "Phase 2|Phase 3": "Phase 2/3", "Phase 3": "Phase 3", "Phase 4": "Phase 4",
               "Not Applicable": "Not applicable", "": "Phase unknown"}
# A keyword match on the export's conditions, for the chart only (not the classifier).
_CSV_GROUPS = [("osteoarthritis", ("osteoarthritis",)), ("disc_degeneration", ("disc",)),
               ("respiratory", ("covid", "ards", "respiratory", "lung", "pulmonary")),
               ("gvhd", ("graft vs host", "graft-versus-host", "gvhd")),
               ("neurological", ("spinal cord", "stroke", "sclerosis", "parkinson")),
               ("cardiovascular", ("heart", "myocard", "cardi", "ischemi")),
               ("digestive", ("liver", "crohn", "cirrhosis", "colitis", "fistula")),
               ("kidney", ("kidney", "renal", "nephr")),
               ("metabolic", ("diabet",))]


def _quarter(posted: str) -> str:
    day = dt.datetime.strptime(posted, "%B %d, %Y").date()
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def registration_charts() -> dict[str, Any]:
    """Registrations per quarter of the real MSC export, the last 20 quarters it covers."""
    rows = msc_export()
    last = max(_quarter(r["First Posted"]) for r in rows)
    year, q = int(last[:4]), int(last[-1])
    x = []
    for _ in range(20):
        x.append(f"{year}Q{q}")
        year, q = (year, q - 1) if q > 1 else (year - 1, 4)
    x.reverse()
    by_phase: dict[str, Counter[str]] = defaultdict(Counter)
    by_group: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        quarter = _quarter(r["First Posted"])
        by_phase[_CSV_PHASES[r["Phases"]]][quarter] += 1
        conditions = r["Conditions"].lower()
        group = next((g for g, words in _CSV_GROUPS if any(w in conditions for w in words)),
                     "other")
        by_group[GROUP_WORDS[group]][quarter] += 1
    return {
        "registrations_by_phase": {
            "title": "New MSC registrations per quarter, by phase", "x": x,
            "series": {p: [by_phase[p][q] for q in x] for p in _CSV_PHASES.values()}},
        "registrations_by_group": {
            "title": "New MSC registrations per quarter, by condition group", "x": x,
            "series": {GROUP_WORDS[g]: [by_group[GROUP_WORDS[g]][q] for q in x]
                       for g in [*(g for g, _ in _CSV_GROUPS), "other"]}},
    }


def by_id() -> dict[str, dict[str, Any]]:
    return {s["protocolSection"]["identificationModule"]["nctId"]: s for s in ctgov_studies()}


def crafted_hostile_study() -> dict[str, Any]:
    """CRAFTED: the real NCT02210780 with its title replaced by markup and a javascript: link
    pattern, and its brief summary by text with terminal controls (ESC, BEL), NUL, DEL, a C1
    control and a right-to-left override."""
    study = copy.deepcopy(by_id()["NCT02210780"])
    proto = study["protocolSection"]
    proto["identificationModule"]["briefTitle"] = HOSTILE_TITLE
    proto["descriptionModule"]["briefSummary"] = CONTROL_SNIPPET
    return study


def sample_digest() -> dict[str, Any]:
    """A full digest: every section filled from real records, plus the crafted ones."""
    studies = by_id()
    papers = europepmc_papers()
    hostile = study_item(crafted_hostile_study(), "New trial, first posted 2014-08-06",
                         labels="<b>umbilical cord</b> | allogeneic # *extracellular* _vesicles_")
    # CRAFTED: the real NCT05594173 with its URL replaced by a javascript: URL.
    js_link = study_item(studies["NCT05594173"], "Completed this period",
                         change_kind="completed", old="Recruiting", new="Completed",
                         url="javascript:alert(document.cookie)")
    # CRAFTED: the real NCT03064438 with spaces, parentheses and angle brackets in its URL.
    odd_url = study_item(studies["NCT03064438"], "Primary completion moved",
                         change_kind="completion_moved", old="2018-03", new="2018-06-05",
                         url="https://clinicaltrials.gov/study/NCT03064438?x=(a) b<c>")
    results_paper = paper_item(papers[2], "Reports results of NCT02552212")
    # CRAFTED: the real PMID 40464630 record with its title replaced by an image link to an
    # outside host and a javascript: URL.
    evil_paper = paper_item(papers[3], "New MSC paper")
    evil_paper["title"] = ("![x](http://evil/) [click](javascript:alert(1)) "
                           "<img src=x onerror=alert(1)>")
    return {
        "title": "MSC therapy: latest advancements",
        "period": {"since": "2026-11-24", "until": "2026-12-01", "label": "since 2026-11-24"},
        "generated_at": "2026-12-01T08:00:00Z",
        # new_papers counts the results papers too (as tracker.digest does); unreported counts
        # every overdue trial, of which the list shows the first (unreported_more: the rest).
        "counts": {"new_trials": 4, "changes": 4, "new_papers": 5, "results_papers": 1,
                   "unreported": 3},
        "unreported_more": 2,
        "new_trials": [
            {"group": "osteoarthritis", "group_label": "Osteoarthritis", "phase": "PHASE1",
             "phase_label": "Phase 1",
             "items": [study_item(studies["NCT04523987"], "New trial, first posted 2020-08-24",
                                  labels="umbilical cord, allogeneic, cells")]},
            {"group": "osteoarthritis", "group_label": "Osteoarthritis", "phase": "PHASE2",
             "phase_label": "Phase 2",
             "items": [study_item(studies["NCT06388018"], "New trial, first posted 2024-04-30"),
                       hostile]},
            {"group": "respiratory", "group_label": "Respiratory", "phase": "PHASE2_3",
             "phase_label": "Phase 2/3",
             "items": [study_item(studies["NCT04431453"], "New trial, first posted 2020-06-16")]},
        ],
        "changes": [
            study_item(studies["NCT00763412"], "Results first posted this period",
                       change_kind="results_posted", old="", new="Results posted"),
            study_item(studies["NCT02513394"], "Phase 3 trial now active",
                       change_kind="phase3_started", old="Recruiting",
                       new="Active, not recruiting"),
            js_link, odd_url,
        ],
        "results_papers": [results_paper],
        "papers": [
            {"group": "other", "group_label": "Other conditions",
             "items": [paper_item(papers[4], "New MSC paper"),
                       paper_item(papers[5], "New MSC paper"), evil_paper]},
            {"group": "osteoarthritis", "group_label": "Osteoarthritis",
             "items": [paper_item(papers[7], "New MSC paper")]},
        ],
        "unreported": [study_item(studies["NCT03630471"],
                                  "Primary completion 2019-01 passed, no results posted",
                                  primary_completion="2019-01")],
        "charts": {
            **registration_charts(),
            "status_changes": {"title": "Status changes in this period",
                               "labels": ["Recruiting → Completed",
                                          "Recruiting → Active, not recruiting",
                                          "Not yet recruiting → Recruiting"],
                               "counts": [2, 1, 1]},
        },
    }


def empty_digest() -> dict[str, Any]:
    """A digest of a quiet week: every list empty, every chart without data."""
    return {
        "title": "MSC therapy: latest advancements",
        "period": {"since": "2026-11-24", "until": "2026-12-01", "label": "since 2026-11-24"},
        "generated_at": "2026-12-01T08:00:00Z",
        "counts": {"new_trials": 0, "changes": 0, "new_papers": 0, "results_papers": 0,
                   "unreported": 0},
        "new_trials": [], "changes": [], "results_papers": [], "papers": [], "unreported": [],
        "charts": {
            "registrations_by_phase": {"title": "New MSC registrations per quarter, by phase",
                                       "x": [], "series": {}},
            "registrations_by_group": {"title": "By condition group",
                                       "x": ["2026Q3", "2026Q4"],
                                       "series": {"Osteoarthritis": [0, 0]}},
            "status_changes": {"title": "Status changes in this period", "labels": [],
                               "counts": []},
        },
    }


def big_digest(n: int = 500) -> dict[str, Any]:
    """``n`` items spread over the sections: the real records repeated under new ids."""
    studies = list(by_id().values())
    papers = europepmc_papers()
    data = sample_digest()
    per = n // 5
    items = [study_item(studies[i % len(studies)], "New trial") for i in range(per)]
    for i, it in enumerate(items):
        it["id"] = f"NCT09{i:06d}"  # cloned under new ids
    data["new_trials"] = [{"group": "osteoarthritis", "group_label": "Osteoarthritis",
                           "phase": "PHASE2", "phase_label": "Phase 2", "items": items}]
    data["changes"] = [study_item(studies[i % len(studies)], "Changed", change_kind="other",
                                  old="a", new="b") for i in range(per)]
    data["results_papers"] = [paper_item(papers[i % 25], "Results") for i in range(per)]
    groups = ("osteoarthritis", "tendinopathy", "bone", "other")  # <= PAPERS_SHOWN a group
    data["papers"] = [{"group": g, "group_label": g.capitalize(),
                       "items": [paper_item(papers[i % 25], "New")
                                 for i in range(k, per, len(groups))]}
                      for k, g in enumerate(groups)]
    data["unreported"] = [study_item(studies[i % len(studies)], "Unreported",
                                     primary_completion="2020-01") for i in range(per)]
    return data


# ------------------------------------------------------------------ HTML inspection ---------


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    p.close()
    return p


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return sample_digest()


@pytest.fixture(scope="module")
def html(sample: dict[str, Any]) -> str:
    return render_html(sample)


@pytest.fixture(scope="module")
def markdown(sample: dict[str, Any]) -> str:
    return render_markdown(sample)


# ------------------------------------------------------------------ helpers -----------------


def test_clean_strips_controls_and_collapses_whitespace() -> None:
    # Whole escape sequences go (a terminal would act on "\x1b[31m" or "\x9b c", not show it).
    assert clean(CONTROL_SNIPPET) == "red bell nul delsi evil"
    assert clean("a\n\tb\r\n c") == "a b c"
    assert clean(None) == ""
    assert clean("lone \udc80 surrogate") == "lone \ufffd surrogate"


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)",
                                 "java\nscript:alert(1)", "data:text/html,<b>x</b>",
                                 "//evil.example/", "/study/NCT1", "vbscript:x", "https://",
                                 "http://[::1"])
def test_safe_url_refuses_non_http(url: str) -> None:
    assert safe_url(url) is None
    assert md_link("t", url) == "t"


def test_safe_url_percent_encodes() -> None:
    url = "https://clinicaltrials.gov/study/NCT03064438?x=(a) b<c>\"'`"
    assert safe_url(url) == ("https://clinicaltrials.gov/study/NCT03064438"
                             "?x=%28a%29%20b%3Cc%3E%22%27%60")
    assert md_link("T", "https://pubmed.ncbi.nlm.nih.gov/1/ (x)") == (
        "[T](https://pubmed.ncbi.nlm.nih.gov/1/%20%28x%29)")
    assert safe_url("HTTPS://ClinicalTrials.gov/study/NCT1") == (
        "HTTPS://ClinicalTrials.gov/study/NCT1")


def test_md_escapes_every_markdown_character() -> None:
    assert md(r"a\b*c_d`e[f]g<h>i|j#k") == r"a\\b\*c\_d\`e\[f\]g\<h\>i\|j\#k"
    assert md("- item") == r"\- item"
    assert md("1. item") == r"1\. item"
    assert md("see https://evil.example or www.evil.example") == (
        r"see https:\/\/evil.example or www\.evil.example")


# ------------------------------------------------------------------ markdown ----------------


def test_markdown_sections_in_order(markdown: str) -> None:
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## New MSC trials", "## Notable changes",
                        "## Papers reporting results of tracked trials",
                        "## Other new MSC papers", "## Completed but unreported", "## Charts"]
    assert markdown.startswith("# MSC therapy: latest advancements\n")
    new = markdown.split("## New MSC trials")[1].split("## Notable changes")[0]
    assert new.index("### Osteoarthritis") < new.index("#### Phase 1") < new.index(
        "#### Phase 2") < new.index("### Respiratory") < new.index("#### Phase 2/3")
    assert new.count("### Osteoarthritis") == 1


def test_markdown_summary_counts_with_plurals(markdown: str) -> None:
    assert ("**4 new trials · 4 notable changes · 5 new papers · 1 reporting results of a "
            "tracked trial · 3 trials completed but unreported**") in markdown


def test_markdown_items_link_real_records(markdown: str, sample: dict[str, Any]) -> None:
    first = sample["new_trials"][0]["items"][0]
    assert f"**[{md(first['title'])}](https://clinicaltrials.gov/study/NCT04523987)**" in markdown
    assert "NCT04523987 · Phase 1 · Recruiting · 2020-08-24" in markdown
    assert "umbilical cord, allogeneic, cells" in markdown
    assert "*Why:* New trial, first posted 2020-08-24" in markdown
    assert "**Results posted:**" in markdown and "**Phase 3 started:**" in markdown
    assert "Recruiting → Active, not recruiting" in markdown
    assert "Primary completion 2019\\-01" not in markdown  # "-" mid-line is not escaped
    assert "Primary completion 2019-01" in markdown


def test_markdown_escapes_hostile_text(markdown: str) -> None:
    assert md(HOSTILE_TITLE) in markdown
    assert "<script>" not in markdown
    assert not re.search(r"(?<!\\)\]\((?!https://)", markdown)  # every live link is https
    assert "javascript:alert(document.cookie)" not in markdown  # crafted URL: no link
    assert "\x1b" not in markdown and "\x07" not in markdown and "\x00" not in markdown
    assert "\u202e" not in markdown
    assert r"\<b\>umbilical cord\</b\> \| allogeneic \# \*extracellular\* \_vesicles\_" in markdown
    # The crafted odd URL: parentheses, space and angle brackets percent-encoded.
    assert "(https://clinicaltrials.gov/study/NCT03064438?x=%28a%29%20b%3Cc%3E)" in markdown


def test_markdown_renders_to_harmless_html(markdown: str) -> None:
    """Rendered by a CommonMark parser (markdown-it, with tables), the digest has no raw HTML,
    no image and no link other than the registry's."""
    out = MarkdownIt("commonmark").enable("table").render(markdown)
    tags = parse(out)
    assert not [t for t, _ in tags.tags if t in ("script", "img", "iframe", "b", "style")]
    hrefs = [a.get("href") or "" for t, a in tags.tags if t == "a"]
    assert hrefs and all(h.startswith(("https://clinicaltrials.gov/study/NCT",
                                       "https://pubmed.ncbi.nlm.nih.gov/")) for h in hrefs)
    text = "".join(tags.text)
    assert HOSTILE_TITLE in text  # shown literally
    assert "<b>umbilical cord</b> | allogeneic # *extracellular* _vesicles_" in text
    assert "4 new trials" in text
    assert "<table>" in out  # the charts' tables


def test_markdown_charts_as_tables(markdown: str) -> None:
    charts = markdown.split("## Charts")[1]
    assert "### New MSC registrations per quarter, by phase" in charts
    assert "| Recruiting → Completed | 2 |" in charts
    assert re.search(r"^\| phase \| 2017 \| 2018 \| 2019 \| 2020 \| 2021 \| total \|$", charts,
                     re.MULTILINE)


def test_markdown_empty_sections_say_so() -> None:
    out = render_markdown(empty_digest())
    for line in EMPTY_LINES:
        assert f"\n{line}\n" in out
    assert out.count("No data for this chart.") == 3
    assert ("**0 new trials · 0 notable changes · 0 new papers · 0 reporting results of a "
            "tracked trial · 0 trials completed but unreported**") in out
    assert "more trial" not in out
    assert "\n\n\n" not in out


# ------------------------------------------------------------------ HTML --------------------


def test_html_sections_in_order(html: str) -> None:
    assert re.findall(r"<h2>(.*?)</h2>", html) == [
        "New MSC trials", "Notable changes", "Papers reporting results of tracked trials",
        "Other new MSC papers", "Completed but unreported", "Charts"]
    assert html.index('<p class="summary">') < html.index("<h2>")
    text = "".join(parse(html).text)
    assert ("4 new trials 4 notable changes 5 new papers 1 reporting results of a tracked "
            "trial 3 trials completed but unreported") in text
    new = html.split("<h2>New MSC trials</h2>")[1].split("<h2>")[0]
    assert re.findall(r"<h[34]>(.*?)</h[34]>", new) == [
        "Osteoarthritis", "Phase 1", "Phase 2", "Respiratory", "Phase 2/3"]


def test_html_escapes_hostile_text(html: str) -> None:
    tags = parse(html)
    assert not [t for t, _ in tags.tags if t in ("script", "iframe", "object", "embed", "b")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;](javascript:x) ![x](http://evil/)" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not any(k.startswith("on") for _, attrs in tags.tags for k in attrs)
    text = "".join(tags.text)
    assert HOSTILE_TITLE in text
    assert "<b>umbilical cord</b> | allogeneic" in text
    for ch in ("\x1b", "\x07", "\x00", "\x7f", "\x9b", "\u202e"):
        assert ch not in html
    assert "red bell nul delsi evil" in text


def test_html_fetches_nothing(html: str) -> None:
    """No http(s) URL in the src/href of link, script, img or style tags (nor any script or
    iframe at all), only data: images; http(s) only in the registry links."""
    tags = parse(html)
    for tag, attrs in tags.tags:
        for key in ("src", "href", "srcset", "data", "poster", "action"):
            value = (attrs.get(key) or "").strip().lower()
            if tag in ("link", "script", "img", "style", "iframe", "source", "object",
                       "video", "audio", "embed", "form"):
                assert not value.startswith(("http:", "https:", "//")), (tag, attrs)
    imgs = [a for t, a in tags.tags if t == "img"]
    assert imgs and all((a["src"] or "").startswith("data:image/png;base64,") for a in imgs)
    hrefs = [a.get("href") or "" for t, a in tags.tags if t == "a"]
    external = [h for h in hrefs if not h.startswith("#")]
    assert external and all(h.startswith(("https://clinicaltrials.gov/study/NCT",
                                          "https://pubmed.ncbi.nlm.nih.gov/"))
                            for h in external)
    assert "javascript:" not in " ".join(hrefs).lower()
    assert "@import" not in html and "url(" not in html  # nothing fetched from the CSS either
    csp = next(a["content"] for t, a in tags.tags
               if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy")
    assert "default-src 'none'" in csp and "img-src data:" in csp


def test_html_links_and_items(html: str) -> None:
    assert ('<a href="https://clinicaltrials.gov/study/NCT04523987" rel="noreferrer">'
            in html)
    assert ('href="https://clinicaltrials.gov/study/NCT03064438?x=%28a%29%20b%3Cc%3E"' in html)
    # The crafted javascript: URL: its title is shown without a link.
    title = by_id()["NCT05594173"]["protocolSection"]["identificationModule"]["briefTitle"]
    assert f"</span> {title}</p>" in html
    text = "".join(parse(html).text)
    assert "Why: New trial, first posted 2020-08-24" in text
    assert "Recruiting → Active, not recruiting" in text
    assert "Primary completion 2019-01" in text
    assert "PMID:40468710" in text  # the results paper
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_more_unreported_and_journal(html: str, markdown: str) -> None:
    text = "".join(parse(html).text)
    assert "And 2 more trials (tracker studies --unreported lists them all)." in text
    assert "And 2 more trials (`tracker studies --unreported` lists them all)." in markdown
    assert "PMID:40468710 · British journal of health psychology · 2025-09-01" in text
    assert "PMID:40468710 · British journal of health psychology · 2025-09-01" in markdown


def test_old_and_new_only_where_the_why_does_not_say_them() -> None:
    study = by_id()["NCT00763412"]
    data = empty_digest()
    data["changes"] = [
        study_item(study, "Results posted (registry update 2026-11-27)",
                   change_kind="results_posted", old="No", new="Yes"),
        study_item(study, "Completed (was recruiting; registry update 2026-11-28)",
                   change_kind="completed", old="Recruiting", new="Completed"),
        study_item(study, "Status changed", change_kind="other", old="Suspended",
                   new="Recruiting"),
    ]
    out = render_markdown(data)
    assert "No → Yes" not in out and "Recruiting → Completed" not in out
    assert "Suspended → Recruiting" in out
    html = render_html(data)
    assert 'class="old"' in html and html.count('<p class="change">') == 1


def test_html_charts_are_data_uris(html: str) -> None:
    imgs = [a for t, a in parse(html).tags if t == "img"]
    assert len(imgs) == 3
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,iVBORw0KGgo")  # PNG signature
        assert int(a["width"]) > 0 and int(a["height"]) > 0
        assert a["alt"]
    assert "Stacked bar chart: New MSC registrations per quarter, by phase, 2017Q1 to 2021Q4" \
        in imgs[0]["alt"]


def test_html_print_and_phone_css(html: str) -> None:
    assert "@media print" in html
    assert 'a[href^="http"]::after { content: " <" attr(href) ">"' in html
    assert "break-inside: avoid" in html and "overflow-wrap: anywhere" in html
    assert "max-width: 100%; height: auto" in html


def test_html_empty_sections_say_so() -> None:
    html = render_html(empty_digest())
    tags = parse(html)
    text = "".join(tags.text)
    for line in EMPTY_LINES:
        assert line in text
    assert text.count("No data for this chart in this period.") == 3
    assert not [t for t, _ in tags.tags if t == "img"]
    assert "0 new trials" in text and "0 reporting results of a tracked trial" in text
    assert "more trial" not in text


def test_singular_counts() -> None:
    data = empty_digest()
    data["counts"] = {"new_trials": 1, "changes": 1, "new_papers": 1, "results_papers": 1,
                      "unreported": 1}
    text = "".join(parse(render_html(data)).text)
    assert ("1 new trial 1 notable change 1 new paper 1 reporting results of a tracked trial "
            "1 trial completed but unreported") in text
    assert "1 new trial · 1 notable change · 1 new paper" in render_markdown(data)
    data["counts"] = {"new_trials": 2, "changes": 2, "new_papers": 2, "results_papers": 2,
                      "unreported": 2}
    assert ("**2 new trials · 2 notable changes · 2 new papers · 2 reporting results of a "
            "tracked trial · 2 trials completed but unreported**") in render_markdown(data)


def test_generated_at_in_words(markdown: str) -> None:
    assert "(generated 2026-12-01 08:00 UTC)." in markdown
    data = dict(empty_digest(), generated_at="2026-12-01T09:42:28.776029+01:00")
    assert "generated 2026-12-01 08:42 UTC" in render_html(data)
    assert "generated not a date" in render_html(dict(data, generated_at="not a date"))


def test_missing_counts_fall_back_to_the_lists(sample: dict[str, Any]) -> None:
    data = dict(sample, counts={})
    assert "**4 new trials · 4 notable changes · 5 new papers" in render_markdown(data)


# ------------------------------------------------------------------ charts ------------------


def test_charts_are_stable_and_need_data() -> None:
    data = registration_charts()["registrations_by_phase"]
    one = charts_mod.stacked_bar_chart("p", data)
    two = charts_mod.stacked_bar_chart("p", copy.deepcopy(data))
    assert one is not None and two is not None
    assert one.png == two.png  # no date or version metadata
    assert one.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert charts_mod.stacked_bar_chart("p", {"x": [], "series": {"a": []}}) is None
    assert charts_mod.stacked_bar_chart("p", {"x": ["2026Q1"], "series": {"a": [0]}}) is None
    assert charts_mod.horizontal_bar_chart("s", {"labels": ["a"], "counts": [0]}) is None
    # A "$" in a label is text, not mathematics (matplotlib would fail on "$x").
    assert charts_mod.horizontal_bar_chart("s", {"labels": ["costs $5", "a$b$"],
                                                 "counts": [1, 2]}) is not None


def test_charts_keep_the_last_five_years_and_fold_small_series() -> None:
    x = [f"{y}Q{q}" for y in range(2015, 2027) for q in range(1, 5)]
    series = {f"Group {i}": [i + 1] * len(x) for i in range(12)}
    image = charts_mod.stacked_bar_chart("g", {"title": "t", "x": x, "series": series})
    assert image is not None
    assert "2022Q1 to 2026Q4" in image.alt
    assert "All others (5) 300" in image.alt  # groups 0-4 folded: (1+2+3+4+5) x 20 quarters


def test_render_html_500_items_is_fast() -> None:
    data = big_digest(500)
    start = time.process_time()  # CPU time: a busy machine's waits do not count
    html = render_html(data)
    elapsed = time.process_time() - start
    assert html.count('<li class="item">') == 500
    assert elapsed < 5, f"render_html took {elapsed:.2f} s for 500 items"


def test_templates_ship_with_the_package() -> None:
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text("utf-8")
    assert '"templates/*.j2"' in pyproject


def test_long_paper_groups_are_capped_on_the_page() -> None:
    """Each group's newest PAPERS_SHOWN papers are on the page, with how many more; the data
    (JSON, feed) keeps them all. The papers are one real recorded title repeated under new
    ids (derived here)."""
    from tests.conftest import ctgov_studies
    from tracker.digest_render import PAPERS_SHOWN, render_html, render_markdown

    title = ctgov_studies()[0]["protocolSection"]["identificationModule"]["briefTitle"]
    items = [{"kind": "paper", "id": f"PMID:{41000000 + i}", "title": title,
              "url": f"https://pubmed.ncbi.nlm.nih.gov/{41000000 + i}/", "why": "New paper"}
             for i in range(PAPERS_SHOWN + 3)]
    data = {"title": "Digest", "period": {"label": "since 2026-11-24"},
            "papers": [{"group": "osteoarthritis", "group_label": "Osteoarthritis",
                        "items": items}]}
    html = render_html(data)
    md = render_markdown(data)
    for out in (html, md):
        assert f"PMID:{41000000 + PAPERS_SHOWN - 1}" in out
        assert f"PMID:{41000000 + PAPERS_SHOWN}" not in out
        assert "3 more papers in this group" in out
