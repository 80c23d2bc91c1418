"""The editor's digest as markdown or as one self-contained HTML page.

Both renderers take the plain dict that ``tracker.digest`` builds (what ``tracker digest -f
json`` prints) and lay it out with the Jinja2 templates in ``tracker/templates``. Every string
in that dict is raw registry or journal text: it is cleaned here (control characters, ESC and
BEL included, and Unicode direction overrides removed, whitespace collapsed to one line) and
then escaped for the output format: by Jinja2's autoescaping in HTML, by backslash escapes in
markdown. Links are made only to http(s) URLs, with the characters that could end a markdown
link destination percent-encoded.

The HTML page fetches nothing: its CSS is inline, its charts (``tracker.charts``) are PNG
``data:`` URIs, it has no script, and a Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracker.text import md_escape, one_line_text, safe_url
from tracker.words import plural

TEMPLATES = Path(__file__).parent / "templates"

CHANGE_WORDS: dict[str, str] = {
    "results_posted": "Results posted",
    "phase3_started": "Phase 3 started",
    "completed": "Completed",
    "stopped": "Stopped",
    "started_recruiting": "Started recruiting",
    "completion_moved": "Completion date moved",
    "enrollment_changed": "Enrollment changed",
    "other": "Changed",
}

def clean(value: Any) -> str:
    """Registry text as one line of plain text (``tracker.text``: escape sequences, control
    characters and bidi overrides removed, whitespace collapsed, lone surrogates replaced)."""
    return one_line_text(value)


md = md_escape  # one markdown escaper for every renderer (tracker.text)


def md_link(text: Any, url: Any) -> str:
    """``[text](url)`` when ``url`` is an http(s) URL, else the escaped text alone."""
    label = md(text)
    href = safe_url(url)
    if href is None:
        return label
    return f"[{label}]({href.replace('(', '%28').replace(')', '%29')})"


# ------------------------------------------------------------------ the view ----------------


def _item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One item with every field the templates read, cleaned (escaping is the template's)."""
    item_id = clean(raw.get("id"))
    change_kind = clean(raw.get("change_kind"))
    why, old, new = clean(raw.get("why")), clean(raw.get("old")), clean(raw.get("new"))
    # "old -> new" only where the why does not say it already (digest.py's whys mostly do;
    # a results flag going from "no" to "yes" says nothing the badge does not).
    if change_kind == "results_posted" or (new and new.lower() in why.lower()):
        old = new = ""
    return {
        "kind": clean(raw.get("kind")),
        "id": item_id,
        "url": safe_url(raw.get("url")),
        "title": clean(raw.get("title")) or item_id or "(untitled)",
        "snippet": clean(raw.get("snippet")),
        "labels": clean(raw.get("labels")),
        "phase": clean(raw.get("phase_label")),
        "status": clean(raw.get("status_label")),
        "date": clean(raw.get("date")),
        "journal": clean(raw.get("journal")),
        "why": why,
        "change": (CHANGE_WORDS.get(change_kind, change_kind.replace("_", " ").capitalize())
                   if change_kind else ""),
        "old": old,
        "new": new,
        "primary_completion": clean(raw.get("primary_completion")),
    }


def _items(raw: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [_item(r) for r in raw or () if isinstance(r, Mapping)]


def _trial_groups(raw: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The group x phase entries, in their order, nested as group -> phases -> entries (a
    group's heading once, however many phases follow it). ("entries", not "items": Jinja2
    would find a dict's ``items`` method first.)"""
    out: list[dict[str, Any]] = []
    for entry in raw or ():
        items = _items(entry.get("items")) if isinstance(entry, Mapping) else []
        if not items:
            continue
        key = clean(entry.get("group")) or clean(entry.get("group_label"))
        label = clean(entry.get("group_label")) or key or "Not classified"
        if not out or out[-1]["key"] != key:
            out.append({"key": key, "label": label, "phases": []})
        out[-1]["phases"].append({"label": clean(entry.get("phase_label")) or "Phase unknown",
                                  "entries": items})
    return out


PAPERS_SHOWN = 25  # per condition group on the page; the JSON and the feed carry them all


def _paper_groups(raw: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Other new papers by group: the newest ``PAPERS_SHOWN`` of each, and how many more."""
    out = []
    for entry in raw or ():
        entries = entry.get("items") if isinstance(entry, Mapping) else None
        items = _items((entries or [])[:PAPERS_SHOWN]) if isinstance(entries, list) else []
        if items:
            label = clean(entry.get("group_label")) or clean(entry.get("group")) or "Not classified"
            more = max(0, len(entries) - PAPERS_SHOWN)
            out.append({"label": label, "entries": items, "more": more,
                        "more_line": (f"And {plural(more, 'more paper')} in this group "
                                      "(`tracker papers --since …` or `tracker digest -f json` "
                                      "lists them all).") if more else ""})
    return out


def _count(counts: Mapping[str, Any], key: str, fallback: int) -> int:
    try:
        return int(counts[key])
    except (KeyError, TypeError, ValueError):
        return fallback


def _period_line(data: Mapping[str, Any]) -> str:
    period = data.get("period") or {}
    label = clean(period.get("label"))
    since, until = clean(period.get("since")), clean(period.get("until"))
    if not label:
        label = f"since {since}" if since else "everything so far"
    line = label[:1].upper() + label[1:]
    if until and until not in label:
        line += f", until {until}"
    return line


def _when(value: Any) -> str:
    """An ISO timestamp as ``2026-12-01 08:00 UTC``; anything else as it is."""
    import datetime as dt

    text = clean(value)
    try:
        when = dt.datetime.fromisoformat(text)  # Python 3.11 reads a "Z"
    except ValueError:
        return text
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _view(data: Mapping[str, Any]) -> dict[str, Any]:
    counts = data.get("counts") or {}
    trials = _trial_groups(data.get("new_trials"))
    changes = _items(data.get("changes"))
    results = _items(data.get("results_papers"))
    papers = _paper_groups(data.get("papers"))
    unreported = _items(data.get("unreported"))
    n_trials = sum(len(p["entries"]) for g in trials for p in g["phases"])
    n_papers = sum(len(g["entries"]) for g in papers) + len(results)
    summary = [
        plural(_count(counts, "new_trials", n_trials), "new trial"),
        plural(_count(counts, "changes", len(changes)), "notable change"),
        plural(_count(counts, "new_papers", n_papers), "new paper"),
        # a subset of the new papers
        f"{_count(counts, 'results_papers', len(results)):,} reporting results of a tracked trial",
        plural(_count(counts, "unreported", len(unreported)), "trial")
        + " completed but unreported",
    ]
    more = _count(data, "unreported_more", 0)
    return {
        "title": clean(data.get("title")) or "MSC therapy: latest advancements",
        "period": _period_line(data),
        "generated_at": _when(data.get("generated_at")),
        "summary": summary,
        "trial_groups": trials,
        "changes": changes,
        "results_papers": results,
        "paper_groups": papers,
        "unreported": unreported,
        "unreported_more": plural(more, "more trial") if more > 0 else "",
    }


# ------------------------------------------------------------------ markdown charts ---------

_QUARTER = re.compile(r"^(\d{4})\s*-?\s*Q[1-4]$")


def _number(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _md_chart(key: str, chart: Mapping[str, Any]) -> dict[str, Any]:
    """A chart as a small markdown table: registrations summed per year (the last five),
    status changes one row each. ``rows`` is empty when there is nothing to show."""
    title = clean(chart.get("title")) or key.replace("_", " ").capitalize()
    if "labels" in chart or key == "status_changes":
        rows = [[clean(lab), str(_number(c))]
                for lab, c in zip(list(chart.get("labels") or []),
                                  list(chart.get("counts") or []), strict=False)
                if _number(c)]
        return {"title": title, "header": ["change", "studies"], "rows": rows}
    x = [clean(v) for v in list(chart.get("x") or [])][-20:]
    years = [m.group(1) if (m := _QUARTER.match(q)) else None for q in x]
    columns = list(dict.fromkeys(years)) if x and all(years) else x[-8:]
    rows = []
    for name, values in (chart.get("series") or {}).items():
        vals = [_number(v) for v in list(values or [])][-len(x):] if x else []
        vals = [0] * (len(x) - len(vals)) + vals
        if all(years):
            cells = [sum(v for v, y in zip(vals, years, strict=True) if y == col)
                     for col in columns]
        else:
            cells = vals[-8:]
        if any(cells):
            rows.append([clean(name), *map(str, cells), str(sum(cells))])
    first = key.rsplit("_by_", 1)[1].replace("_", " ") if "_by_" in key else ""
    return {"title": title, "header": [first, *columns, "total"], "rows": rows}


# ------------------------------------------------------------------ rendering ---------------


@functools.lru_cache(maxsize=2)
def _environment(kind: str) -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=(kind == "html"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md
    env.globals["md_link"] = md_link
    return env


def render_markdown(data: Mapping[str, Any]) -> str:
    """The digest as markdown (charts as small tables: markdown has no inline images that
    every viewer shows)."""
    view = _view(data)
    charts = data.get("charts") or {}
    from tracker.charts import CHART_ORDER

    keys = [*CHART_ORDER, *(k for k in charts if k not in CHART_ORDER)]
    view["charts"] = [_md_chart(k, charts.get(k) if isinstance(charts.get(k), Mapping) else {})
                      for k in keys]
    text = _environment("markdown").get_template("digest.md.j2").render(**view)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def render_html(data: Mapping[str, Any]) -> str:
    """The digest as one self-contained HTML page (inline CSS, charts as data: URIs)."""
    from tracker.charts import digest_charts

    view = _view(data)
    view["charts"] = [{"key": key, "title": title, "image": image}
                      for key, title, image in digest_charts(data.get("charts"))]
    return _environment("html").get_template("digest.html.j2").render(**view)
