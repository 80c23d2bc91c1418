"""Renderers: data from ``tracker.reports`` to text in table, markdown, CSV or JSON form.

Each function returns a string; only the CLI prints. Registry text is never interpreted as
markup: rich tables get ``Text`` objects, markdown cells are escaped.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracker.reports import Report

FORMATS = ("table", "markdown", "csv", "json")


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    width = max(shutil.get_terminal_size((120, 40)).columns, 80)
    return Console(file=buf, width=width, force_terminal=False, color_system=None), buf


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _md(value: Any) -> str:
    text = _cell(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    for ch in "*_`[]<>":
        text = text.replace(ch, "\\" + ch)
    return text


def to_json(data: Any) -> str:
    """Pretty JSON (UTF-8 text, ISO dates)."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header row; list values joined with "; "."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False, expand=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*[Text(_cell(row.get(c))) for c in columns])
    return table


def _md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


STUDY_TABLE_COLUMNS = ("registry_id", "first_posted", "phase", "status", "title")


def render_list(
    rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str],
    short: Sequence[str] = STUDY_TABLE_COLUMNS, noun: str = "studies",
) -> str:
    """A list of records in ``fmt``: JSON and CSV carry ``columns``; the terminal table and
    markdown show the ``short`` set."""
    if fmt == "json":
        return to_json(list(rows))
    if fmt == "csv":
        return to_csv(rows, columns)
    if fmt == "markdown":
        return _md_table(rows, short)
    console, buf = _console()
    console.print(_table(rows, short))
    console.print(f"{len(rows)} {noun}")
    return buf.getvalue()


def render_studies(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> str:
    """A list of studies in ``fmt``."""
    return render_list(rows, fmt, columns)


def _crosstab_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for g in report.groups:
        row: dict[str, Any] = {"condition": g}
        for p in report.phases:
            row[p] = report.counts.get((g, p), 0) or ""
        row["total"] = report.group_totals[g]
        rows.append(row)
    return rows


def render_report(report: Report, fmt: str, columns: Sequence[str]) -> str:
    """The condition-by-phase table and the list of studies under it."""
    cross_cols = ["condition", *report.phases, "total"]
    cross = _crosstab_rows(report)
    if fmt == "json":
        return to_json({
            "title": report.title,
            "total": len(report.studies),
            "by_condition_phase": {
                g: {p: report.counts[(g, p)] for p in report.phases if (g, p) in report.counts}
                for g in report.groups
            },
            "studies": report.studies,
            "papers": report.papers,
        })
    if fmt == "csv":
        return to_csv(report.studies, columns)
    if fmt == "markdown":
        parts = [f"## {report.title}: {len(report.studies)} studies, {len(report.papers)} papers",
                 ""]
        if report.studies:
            parts += [_md_table(cross, cross_cols), ""]
            parts += [
                f"- [{s['registry_id']}]({s['url']}) {_md(s['title'])} "
                f"({s['phase']}, {s['status']}, first posted {s['first_posted'] or '?'})"
                for s in report.studies
            ]
        if report.papers:
            parts += ["", "### Papers", ""]
            parts += [
                f"- [{_md(p['title'])}]({p['url']}) {_md(p['journal'] or '')} {p['pub_date'] or ''}"
                + (" (preprint)" if p["is_preprint"] else "")
                + (f"; trials: {', '.join(p['trial_ids'])}" if p["trial_ids"] else "")
                for p in report.papers
            ]
        return "\n".join(parts) + "\n"
    console, buf = _console()
    console.print(Text(f"{report.title}: {len(report.studies)} studies, "
                       f"{len(report.papers)} papers", style="bold"))
    if report.studies:
        console.print(_table(cross, cross_cols, title="Studies by condition and phase"))
        console.print(_table(report.studies, STUDY_TABLE_COLUMNS, title="Studies"))
    if report.papers:
        console.print(_table(report.papers, PAPER_TABLE_COLUMNS, title="Papers"))
    return buf.getvalue()


PAPER_TABLE_COLUMNS = ("pmid", "index_date", "phase", "trial_ids", "title")


def render_papers(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> str:
    """A list of papers in ``fmt``."""
    return render_list(rows, fmt, columns, PAPER_TABLE_COLUMNS, "papers")


def render_detail(detail: dict[str, Any], fmt: str) -> str:
    """One study's fields, ids, references and change history."""
    if fmt == "json":
        return to_json(detail)
    console, buf = _console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for key, value in detail.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            continue
        head.add_row(key, Text(_cell(value)))
    console.print(head)
    for key, value in detail.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            cols = list(value[0].keys())
            console.print(_table(value, cols, title=key.replace("_", " ")))
    return buf.getvalue()


def render_status(data: dict[str, Any], fmt: str) -> str:
    """``tracker status`` output: one row per source, then the counts."""
    if fmt == "json":
        return to_json(data)
    console, buf = _console()
    health = "OK" if data["healthy"] else "FAILING"
    console.print(Text(f"{data['database']}: {health}", style="bold"))
    rows = [{
        "source": s["source"] + ("" if s["enabled"] else " (disabled)"),
        "last run": f"{s['last_run_outcome'] or 'never'} {s['last_run_started'] or ''}".strip(),
        "last success": s["last_success"] or "never",
        "watermark": s["watermark"] or "-",
        "quarantined": s["quarantined"],
        "last error": s["last_error"] or "",
    } for s in data["sources"]]
    console.print(_table(rows, list(rows[0]) if rows else []))
    console.print(f"next scheduled run: {data['next_scheduled_run'] or 'no scheduler set up'}")
    console.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in data["counts"].items()))
    return buf.getvalue()
