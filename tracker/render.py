"""Renderers: data from ``tracker.reports`` to text in table, markdown, CSV or JSON form.

Each function returns a string; only the CLI prints. Every string in the data is raw registry
or journal text and is treated as hostile:

* cleaned before it reaches a terminal table, markdown or CSV (``clean_text``): complete
  escape sequences (OSC, CSI, DCS, ...) removed, then every remaining C0 control (ESC, BEL,
  NUL, ...), DEL, C1 control (0x80-0x9f) and Unicode direction override removed; line breaks
  become spaces except in multi-line fields; lone surrogates become U+FFFD;
* never interpreted as markup: rich gets ``Text`` objects (the console parses no markup, no
  emoji), markdown is backslash-escaped and links are made only to http(s) URLs, with the
  characters that could end a link destination percent-encoded;
* in CSV, a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading ``'``
  (OWASP's advice against formula injection; a negative number is prefixed too);
* in JSON, values are kept (orjson escapes C0 controls as ``\\u001b``); DEL, C1 controls and
  direction overrides are written as ``\\u`` escapes too, so no raw control byte is printed.

People read plain words in tables and markdown ("Phase 2/3", "Active, not recruiting",
"1 study"); JSON and CSV keep the canonical codes and slugs that scripts filter on.

Terminal tables fit the console width (the terminal's, ``$COLUMNS``, else 80; never less than
60): identifiers and dates never wrap or split, phase and status wrap only between words
when the title would otherwise get too narrow, and titles take the rest and wrap.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracker.reports import PAPER_COLUMNS, Report
from tracker.text import _fix_surrogates, _plain, clean_text, md_escape, safe_url
from tracker.words import (
    group_words,
    groups_line,
    label_words,
    labels_line,
    phase_words,
    plural,
    status_words,
)

FORMATS = ("table", "markdown", "csv", "json")
MIN_WIDTH = 60  # narrowest console the tables are laid out for

def _cell(value: Any) -> str:
    """One table cell: a value as cleaned, single-line text."""
    return clean_text(value).strip()


# ------------------------------------------------------------------ JSON and CSV ------------

# orjson escapes C0 controls itself; these it writes raw (legal JSON, but not for a terminal).
_JSON_RAW = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _json_safe(data: Any) -> Any:
    """``data`` with every string's surrogates fixed (orjson refuses lone surrogates)."""
    if isinstance(data, str):
        return _fix_surrogates(data)
    if isinstance(data, Mapping):
        return {(_fix_surrogates(k) if isinstance(k, str) else k): _json_safe(v)
                for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    return data


def to_json(data: Any) -> str:
    """Pretty JSON (UTF-8 text, ISO dates); values as stored, no raw control characters."""
    text = orjson.dumps(_json_safe(data),
                        option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    # These characters occur only inside JSON strings, so escaping them keeps the values.
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# OWASP CSV injection: cells starting with these are read as formulas by spreadsheets
# (fullwidth forms included: some spreadsheets normalise them).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _csv_cell(value: Any) -> str:
    text = clean_text(value, multiline=True)
    if text.lstrip(" \n").startswith(_FORMULA_START) or text.startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header row; list values joined with "; ", booleans as yes/no; cells
    cleaned, and prefixed with ``'`` where a spreadsheet would read a formula."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([_csv_cell(c) for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue()


# ------------------------------------------------------------------ markdown ----------------



_md = md_escape  # one markdown escaper for every renderer (tracker.text)




def _md_link(label: str, url: Any) -> str:
    """``[label](url)`` for an http(s) ``url``; else ``label`` alone. ``label`` is markdown."""
    href = safe_url(url)
    return f"[{label}]({href})" if href and label else label


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]],
              right: Sequence[bool] = ()) -> str:
    """A markdown table from cells that are already escaped."""
    align = [("---:" if (right[i] if i < len(right) else False) else "---")
             for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ terminal tables ---------


def _console() -> tuple[Console, io.StringIO]:
    """A console writing to a buffer, as wide as the terminal (``$COLUMNS`` first; 80 when
    not a terminal) but never narrower than ``MIN_WIDTH``."""
    buf = io.StringIO()
    width = max(shutil.get_terminal_size((80, 24)).columns, MIN_WIDTH)
    console = Console(file=buf, width=width, force_terminal=False, color_system=None,
                      markup=False, emoji=False, highlight=False)
    return console, buf


def _output(buf: io.StringIO) -> str:
    """The console's text without the trailing spaces rich pads table lines with."""
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    return "\n".join(lines) + "\n" if lines else ""


@dataclass(frozen=True)
class _Col:
    """A table column. ``kind``: "code" never wraps or splits (ids, dates, numbers);
    "words" wraps between words only when space runs short (phase, status); "text" takes
    the remaining width and wraps, folding a word longer than the column (titles)."""

    header: str
    kind: str = "text"
    right: bool = False


GAP = 2  # spaces between columns


def _longest(values: Sequence[str], split: Callable[[str], list[str]]) -> int:
    return max((cell_len(part) for v in values for part in split(v)), default=0)


def _widths(cols: Sequence[_Col], cells: Sequence[Sequence[str]], avail: int) -> list[int]:
    """Column content widths whose sum fits ``avail`` if the codes allow it.

    Starting from each column's natural width, in this order until the table fits: titles
    down to 40, code headers wrapped, titles down to 30, words columns wrapped between
    words, titles down to 12, then (last resort) words columns and titles folded. Codes
    themselves never shrink.
    """
    natural: list[int] = []
    floor_code: list[int] = []
    floor_words: list[int] = []
    for i, col in enumerate(cols):
        values = [row[i] for row in cells]
        lines = _longest(values, lambda v: v.split("\n"))
        words = _longest(values, str.split)
        head_word = _longest([col.header], str.split)
        natural.append(max(lines, cell_len(col.header), 1))
        floor_code.append(max(lines, head_word, 1))
        floor_words.append(max(words, head_word, 1))
    widths = list(natural)

    def shrink(kinds: tuple[str, ...], floor: Callable[[int], int]) -> None:
        excess = sum(widths) - avail
        while excess > 0:
            candidates = [i for i, c in enumerate(cols)
                          if c.kind in kinds and widths[i] > floor(i)]
            if not candidates:
                return
            i = max(candidates, key=lambda j: widths[j] - floor(j))
            widths[i] -= 1
            excess -= 1

    shrink(("text",), lambda i: min(natural[i], 40))
    shrink(("code",), lambda i: floor_code[i])
    shrink(("text",), lambda i: min(natural[i], 30))
    shrink(("words",), lambda i: min(natural[i], floor_words[i]))
    shrink(("text",), lambda i: min(natural[i], 12))
    shrink(("words",), lambda i: min(natural[i], 4))
    shrink(("text",), lambda i: min(natural[i], 4))
    return widths


def _hang(cell: str, width: int) -> str:
    """Wrap the indented lines of a cell (a title's labels line) with a hanging indent."""
    if "\n  " not in cell:
        return cell
    lines = []
    for line in cell.split("\n"):
        if line.startswith("  ") and cell_len(line) > width > 4:
            lines += textwrap.wrap(line.strip(), width, initial_indent="  ",
                                   subsequent_indent="  ", break_on_hyphens=False) or [line]
        else:
            lines.append(line)
    return "\n".join(lines)


def _table(cols: Sequence[_Col], cells: Sequence[Sequence[str]], width: int,
           title: str | None = None, *, header: bool = True) -> Table:
    """A rich table of cleaned cell strings, laid out to fit ``width`` characters."""
    widths = _widths(cols, cells, width - GAP * (len(cols) - 1))
    cells = [[_hang(v, w) if col.kind == "text" else v
              for col, v, w in zip(cols, row, widths, strict=True)] for row in cells]
    table = Table(
        title=Text(title) if title else None, title_justify="left",
        box=box.SIMPLE_HEAD if header else None, show_header=header, show_edge=False,
        pad_edge=False, padding=(0, GAP - 1 if header else GAP, 0, 0), expand=False,
    )
    for col, w in zip(cols, widths, strict=True):
        table.add_column(Text(col.header, no_wrap=False, overflow="fold"), width=w,
                         no_wrap=col.kind == "code", overflow="fold",
                         justify="right" if col.right else "left")
    for row in cells:
        table.add_row(*[Text(v, no_wrap=col.kind == "code",
                             overflow="ellipsis" if col.kind == "code" else "fold")
                        for col, v in zip(cols, row, strict=True)])
    return table


def _print_table(console: Console, cols: Sequence[_Col], cells: Sequence[Sequence[str]],
                 title: str | None = None, *, header: bool = True) -> None:
    console.print(_table(cols, cells, console.width, title, header=header))


def _line(console: Console, text: str, style: str | None = None) -> None:
    """One paragraph of (already cleaned) text, wrapped to the console."""
    console.print(Text(text, style=style or ""), overflow="fold")


# ------------------------------------------------------------------ records in words --------

NOT_MSC = "[not MSC]"
ROLE_WORDS = {
    "therapy": "therapy: MSCs or an MSC-derived product are given",
    "laboratory": "laboratory: isolated MSCs are studied, none given",
    "manufacturing": "manufacturing: MSCs used to make another product",
    "endogenous": "endogenous: the patient's own MSCs measured or mobilised",
    "mention": "mention: MSCs only mentioned",
    "none": "none: MSCs do not figure",
}
NOT_MSC_LEGEND = f"{NOT_MSC}: judged by the classifier not to be about MSCs"


def _irrelevant(row: Mapping[str, Any]) -> bool:
    return row.get("msc_relevant") is False


def _legend_needed(*row_lists: Sequence[Mapping[str, Any]]) -> bool:
    return any(_irrelevant(r) for rows in row_lists for r in rows)


def _title(row: Mapping[str, Any]) -> str:
    """The title as shown to people: cleaned, marked when not about MSCs."""
    title = _cell(row.get("title")) or "(untitled)"
    return f"{NOT_MSC} {title}" if _irrelevant(row) else title


def _labels_of(row: Mapping[str, Any]) -> str:
    """Condition groups, then cell source, origin and product, in words; how MSCs figure when
    they are not given (laboratory, mention, ...)."""
    parts = [groups_line(_str_list(row.get("condition_groups"))),
             labels_line({k: _str_list(row.get(k))
                          for k in ("cell_sources", "origins", "products")})]
    if row.get("minimally_manipulated"):
        parts.append("minimally manipulated")
    role = row.get("msc_role")
    if role and role != "therapy":
        parts.append(f"MSC role: {role}")
    return _cell("; ".join(p for p in parts if p))


def _str_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _paper_source(row: Mapping[str, Any]) -> str:
    parts = [_cell(row.get("journal")), _cell(row.get("pub_date"))]
    if row.get("is_preprint"):
        parts.append("preprint")
    return ", ".join(p for p in parts if p)


def _paper_id(row: Mapping[str, Any]) -> str:
    return _cell(row.get("pmid") or row.get("pmcid"))


def _title_cell(row: Mapping[str, Any], shown: Sequence[str],
                moved: Sequence[str] = ()) -> str:
    """The title, and under it (indented) what no other column shows: the columns ``moved``
    here to make room, a paper's journal and date, the record's condition groups and labels
    in words."""
    lines = [_title(row)]
    lines += ["  " + c for c in _change_lines(row)]
    for key in moved:
        header, _, fn = _spec(key, [], shown)
        value = fn(row).replace("\n", ", ")
        if value:
            lines.append("  " + (value if key == "phase+status" else f"{header}: {value}"))
    if "journal" in row and "journal" not in shown:
        source = _paper_source(row)
        if not _paper_id(row) and row.get("doi"):
            source = ", ".join(p for p in (source, "doi:" + _cell(row.get("doi"))) if p)
        if source:
            lines.append("  " + source)
    if "condition_groups" not in shown and "labels" not in shown:
        labels = _labels_of(row)
        if labels:
            lines.append("  " + labels)
    return "\n".join(lines)


def _date_only(value: Any) -> str:
    return _cell(value)[:10]


def _when(value: Any) -> str:
    """An ISO timestamp as "YYYY-MM-DD HH:MM" (UTC, as stored); a date as it is."""
    text = _cell(value)
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]00:?00)?",
                     text)
    return f"{m.group(1)} {m.group(2)}" if m else text


# Terminal-table and markdown columns by row key: header, kind, cell.
_SPECS: dict[str, tuple[str, str, Callable[[Mapping[str, Any]], str]]] = {
    "registry_id": ("ID", "code", lambda r: _cell(r.get("registry_id"))),
    "pmid": ("PMID", "code", _paper_id),
    "first_posted": ("First posted", "code", lambda r: _cell(r.get("first_posted"))),
    "index_date": ("Indexed", "code", lambda r: _cell(r.get("index_date"))),
    "pub_date": ("Published", "code", lambda r: _cell(r.get("pub_date"))),
    "phase": ("Phase", "words", lambda r: phase_words(r.get("phase"))),
    "status": ("Status", "words", lambda r: status_words(r.get("status"))),
    "trial_ids": ("Trials", "code",
                  lambda r: "\n".join(_cell(t) for t in _str_list(r.get("trial_ids")))),
    "condition_groups": ("Conditions", "words",
                         lambda r: _cell(groups_line(_str_list(r.get("condition_groups"))))),
    "labels": ("Labels", "words", lambda r: _cell(labels_line(
        {k: _str_list(r.get(k)) for k in ("cell_sources", "origins", "products")}))),
    "journal": ("Journal", "text", lambda r: _cell(r.get("journal"))),
    "msc_relevant": ("MSC?", "code", lambda r: {True: "yes", False: "no"}.get(
        r.get("msc_relevant"), "")),
}


def _spec(key: str, rows: Sequence[Mapping[str, Any]], shown: Sequence[str],
          moved: Sequence[str] = ()) -> tuple[str, str, Callable[[Mapping[str, Any]], str]]:
    if key == "title":
        return "Title", "text", lambda r: _title_cell(r, shown, moved)
    if key == "phase+status":
        return "Phase, status", "words", lambda r: "\n".join(
            p for p in (phase_words(r.get("phase")), status_words(r.get("status"))) if p)
    if key in _SPECS:
        return _SPECS[key]
    values = [_cell(r.get(key)) for r in rows]
    kind = "code" if all(len(v) <= 24 and " " not in v for v in values) else "text"
    return key.replace("_", " ").capitalize(), kind, lambda r: _cell(r.get(key))


TITLE_MIN = 26  # a title column narrower than this is hard to read: move columns under it


def _fitting(console: Console, layouts: Sequence[tuple[list[_Col], list[list[str]]]]
             ) -> tuple[list[_Col], list[list[str]]]:
    """The first layout whose text columns all get ``TITLE_MIN`` (or their natural width),
    else the last one."""
    for cols, cells in layouts:
        widths = _widths(cols, cells, console.width - GAP * (len(cols) - 1))
        if all(w >= min(TITLE_MIN, _longest([r[i] for r in cells], lambda v: v.split("\n")))
               for i, (c, w) in enumerate(zip(cols, widths, strict=True)) if c.kind == "text"):
            return cols, cells
    return layouts[-1]


def _row_layouts(short: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """(columns shown, columns moved under the title), widest first: as asked; phase and
    status in one column; then columns moved under the title one by one from the right."""
    keys = list(short)
    layouts = [(keys, [])]
    if "phase" in keys and "status" in keys:
        keys = [("phase+status" if k == "phase" else k) for k in keys if k != "status"]
        layouts.append((keys, []))
    moved: list[str] = []
    for key in reversed(keys[1:]):
        if key == "title" or "title" not in keys:
            continue
        moved.append(key)
        layouts.append(([k for k in keys if k not in moved], list(moved)))
    return layouts


def _row_table(console: Console, rows: Sequence[Mapping[str, Any]], short: Sequence[str],
               title: str | None = None) -> None:
    layouts = []
    for shown, moved in _row_layouts(short):
        specs = [_spec(k, rows, shown, moved) for k in shown]
        cols = [_Col(h, kind) for h, kind, _ in specs]
        layouts.append((cols, [[fn(r) for _, _, fn in specs] for r in rows]))
    cols, cells = _fitting(console, layouts)
    _print_table(console, cols, cells, title)


def _md_rows(rows: Sequence[Mapping[str, Any]], short: Sequence[str]) -> str:
    """A markdown table of records: the id linked to the record, the rest in words."""
    specs = [_spec(k, rows, short) for k in short]
    header = [_md(h) for h, _, _ in specs]
    body = []
    for r in rows:
        cells = []
        for key, (_, _, fn) in zip(short, specs, strict=True):
            if key == "title":
                cells.append(_md(_title(r)))
                continue
            cell = _md(fn(r).replace("\n", ", "))
            if key in ("registry_id", "pmid") and cell:
                cell = _md_link(cell, r.get("url"))
            cells.append(cell)
        body.append(cells)
    return _md_table(header, body)


# ------------------------------------------------------------------ lists -------------------

STUDY_TABLE_COLUMNS = ("registry_id", "first_posted", "phase", "status", "title")
PAPER_TABLE_COLUMNS = ("pmid", "index_date", "phase", "trial_ids", "title")
# Markdown has no width limit: the labels get their own columns there.
STUDY_MARKDOWN_COLUMNS = ("registry_id", "first_posted", "phase", "status",
                          "condition_groups", "labels", "title")
PAPER_MARKDOWN_COLUMNS = ("pmid", "index_date", "journal", "phase", "trial_ids",
                          "condition_groups", "labels", "title")
_MARKDOWN_COLUMNS = {STUDY_TABLE_COLUMNS: STUDY_MARKDOWN_COLUMNS,
                     PAPER_TABLE_COLUMNS: PAPER_MARKDOWN_COLUMNS}
_SINGULAR = {"studies": "study", "papers": "paper", "changes": "change"}


def _singular(noun: str) -> str:
    return _SINGULAR.get(noun, noun)


def render_list(
    rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str],
    short: Sequence[str] = STUDY_TABLE_COLUMNS, noun: str = "studies",
) -> str:
    """A list of records in ``fmt``: JSON and CSV carry ``columns``; the terminal table and
    markdown show the ``short`` set (in words), then a count ("1 study", "3 papers")."""
    if fmt == "json":
        return to_json(list(rows))
    if fmt == "csv":
        return to_csv(rows, columns)
    count = plural(len(rows), _singular(noun))
    if fmt == "markdown":
        parts = [_md_rows(rows, _MARKDOWN_COLUMNS.get(tuple(short), short)), "", _md(count)]
        if _legend_needed(rows):
            parts += ["", _md(NOT_MSC_LEGEND)]
        return "\n".join(parts) + "\n"
    console, buf = _console()
    if rows:
        _row_table(console, rows, short)
    _line(console, count)
    if _legend_needed(rows):
        _line(console, NOT_MSC_LEGEND)
    return _output(buf)


def render_studies(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> str:
    """A list of studies in ``fmt``."""
    return render_list(rows, fmt, columns)


def render_papers(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> str:
    """A list of papers in ``fmt``."""
    return render_list(rows, fmt, columns, PAPER_TABLE_COLUMNS, "papers")


# ------------------------------------------------------------------ report ------------------


def _crosstab(report: Report) -> tuple[list[_Col], list[list[str]]]:
    """The condition-by-phase counts in words (empty where none)."""
    cols = [_Col("Condition", "words")]
    cols += [_Col(phase_words(p), "code", right=True) for p in report.phases]
    cols.append(_Col("Total", "code", right=True))
    cells = []
    for g in report.groups:
        row = [_cell(group_words(g))]
        row += [str(report.counts.get((g, p), 0) or "") for p in report.phases]
        row.append(str(report.group_totals[g]))
        cells.append(row)
    return cols, cells


def _changed(report: Report) -> list[dict[str, Any]]:
    """Studies the last update changed (``--last-run`` reports; older reports have none)."""
    return list(getattr(report, "changed", None) or [])


def _report_heading(report: Report) -> str:
    heading = (f"{_cell(report.title)}: {plural(len(report.studies), 'study')}, "
               f"{plural(len(report.papers), 'paper')}")
    changed = _changed(report)
    if changed:
        heading += f"; {plural(len(changed), 'study')} changed"
    return heading


def _change_lines(row: Mapping[str, Any]) -> list[str]:
    """A changed study's change events in words: "Status: Recruiting → Completed"."""
    out = []
    for ev in row.get("changes") or []:
        if not isinstance(ev, Mapping):
            continue
        label = _cell(ev.get("field_label") or ev.get("field"))
        change = _change_words(
            ev.get("old_words") if ev.get("old_words") is not None else ev.get("old_value"),
            ev.get("new_words") if ev.get("new_words") is not None else ev.get("new_value"))
        out.append(f"{label}: {change}" if label else change)
    return out


REPORT_CSV_KINDS = ("study", "paper")


def report_csv_columns(columns: Sequence[str]) -> list[str]:
    """The report's CSV header: ``kind``, the study ``columns``, then the paper columns the
    studies do not have."""
    return ["kind", *columns, *[c for c in PAPER_COLUMNS if c not in columns]]


REPORT_SHOWN = 100  # rows of each list a terminal or markdown report shows; CSV/JSON: all


def _capped(rows: Sequence[Any]) -> tuple[Sequence[Any], int]:
    """The first ``REPORT_SHOWN`` rows and how many more there are."""
    return rows[:REPORT_SHOWN], max(0, len(rows) - REPORT_SHOWN)


def _more_line(more: int, noun: str, command: str) -> str:
    nouns = plural(more, noun).split(" ", 1)[1]
    return (f"... and {more:,} more {nouns} (the newest are above): `-f csv` or `-f json` "
            f"gives them all, `{command}` lists them")


def render_report(report: Report, fmt: str, columns: Sequence[str]) -> str:
    """The condition-by-phase table, the list of studies under it, and the new papers.

    CSV: one header (``report_csv_columns``), study rows (``kind`` = ``study``) then paper
    rows (``kind`` = ``paper``), each empty in the other kind's columns; then, in a
    ``--last-run`` report, the studies the update changed (``kind`` = ``changed``).
    """
    changed = _changed(report)
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
            "changed": changed,
        })
    if fmt == "csv":
        header = report_csv_columns(columns)
        rows = [{**s, "kind": "study"} for s in report.studies]
        rows += [{**p, "kind": "paper"} for p in report.papers]
        rows += [{**c, "kind": "changed"} for c in changed]
        return to_csv(rows, header)
    legend = _legend_needed(report.studies, report.papers, changed)
    if fmt == "markdown":
        return _report_markdown(report, legend)
    console, buf = _console()
    _line(console, _report_heading(report), "bold")
    if report.studies:
        console.print()
        cols, cells = _crosstab(report)
        _print_table(console, cols, cells, "Studies by condition and phase")
        console.print()
        shown, more = _capped(report.studies)
        _row_table(console, shown, STUDY_TABLE_COLUMNS, "Studies")
        if more:
            _line(console, _more_line(more, "study", "tracker studies"))
    if report.papers:
        console.print()
        shown, more = _capped(report.papers)
        _row_table(console, shown, PAPER_TABLE_COLUMNS, "Papers")
        if more:
            _line(console, _more_line(more, "paper", "tracker papers"))
    if changed:
        console.print()
        _row_table(console, changed, STUDY_TABLE_COLUMNS, "Changed in the last update")
    if legend:
        _line(console, NOT_MSC_LEGEND)
    return _output(buf)


def _report_markdown(report: Report, legend: bool) -> str:
    parts = [f"## {_md(_report_heading(report))}", ""]
    if report.studies:
        cols, cells = _crosstab(report)
        parts += [_md_table([_md(c.header) for c in cols],
                            [[_md(v) for v in row] for row in cells],
                            [c.right for c in cols]), ""]
        shown, more = _capped(report.studies)
        for s in shown:
            details = [phase_words(s.get("phase")), status_words(s.get("status")),
                       "first posted " + (_cell(s.get("first_posted")) or "?")]
            labels = _labels_of(s)
            parts.append(
                f"- {_md_link(_md(s.get('registry_id')), s.get('url'))} {_md(_title(s))} "
                f"({_md(', '.join(details))})" + (f"; {_md(labels)}" if labels else ""))
        if more:
            parts += ["", _md(_more_line(more, "study", "tracker studies"))]
    if report.papers:
        parts += ["", "### Papers", ""]
        shown, more = _capped(report.papers)
        for p in shown:
            ids = [f"PMID {_cell(p['pmid'])}" if p.get("pmid") else "",
                   _cell(p.get("pmcid")), ("doi:" + _cell(p["doi"])) if p.get("doi") else ""]
            line = f"- {_md_link(_md(_title(p)), p.get('url'))}"
            source = _paper_source(p)
            if source:
                line += f" {_md(source)}"
            ids_text = ", ".join(i for i in ids if i)
            if ids_text:
                line += f" ({_md(ids_text)})"
            trials = [_cell(t) for t in _str_list(p.get("trial_ids"))]
            if trials:
                line += f"; trials: {_md(', '.join(trials))}"
            labels = _labels_of(p)
            if labels:
                line += f"; {_md(labels)}"
            parts.append(line)
        if more:
            parts += ["", _md(_more_line(more, "paper", "tracker papers"))]
    changed = _changed(report)
    if changed:
        parts += ["", "### Changed in the last update", ""]
        for s in changed:
            line = f"- {_md_link(_md(s.get('registry_id')), s.get('url'))} {_md(_title(s))}"
            changes = _change_lines(s)
            if changes:
                line += ": " + _md("; ".join(changes))
            parts.append(line)
    if legend:
        parts += ["", _md(NOT_MSC_LEGEND)]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ changes and timeline ----

CHANGE_ARROW = "\u2192"


def _change_words(old: Any, new: Any) -> str:
    return f"{_cell(old) or '(none)'} {CHANGE_ARROW} {_cell(new) or '(none)'}"


def _change_date(row: Mapping[str, Any]) -> str:
    """The registry's date of the change, else the day the tracker saw it."""
    if row.get("registry_date"):
        return _date_only(row["registry_date"])
    seen = _date_only(row.get("seen_at"))
    return f"seen {seen}" if seen else ""


def _columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of the rows, in the order they first appear."""
    return list(dict.fromkeys(k for r in rows for k in r))


def render_changes(rows: list[dict[str, Any]], fmt: str) -> str:
    """``tracker changes``: one line per changed field (id, registry date, field, old → new
    in words, title), then "3 changes in 2 studies". CSV and JSON carry every key."""
    if fmt == "json":
        return to_json(list(rows))
    if fmt == "csv":
        return to_csv(rows, _columns_of(rows))
    studies = len({(r.get("registry"), r.get("registry_id")) for r in rows})
    count = f"{plural(len(rows), 'change')} in {plural(studies, 'study')}"
    legend = _legend_needed(rows)
    if fmt == "markdown":
        header = ["ID", "Registry date", "Seen", "Field", "Old", "New", "Title"]
        body = [[
            _md_link(_md(r.get("registry_id")), r.get("url")),
            _md(_date_only(r.get("registry_date"))), _md(_when(r.get("seen_at"))),
            _md(r.get("field_label") or r.get("field")),
            _md(r.get("old_words") if r.get("old_words") is not None else r.get("old_value")),
            _md(r.get("new_words") if r.get("new_words") is not None else r.get("new_value")),
            _md(_title(r)),
        ] for r in rows]
        parts = [_md_table(header, body), "", _md(count)]
        if legend:
            parts += ["", _md(NOT_MSC_LEGEND)]
        return "\n".join(parts) + "\n"
    console, buf = _console()
    if rows:
        any_seen = any(not r.get("registry_date") for r in rows)
        date_col = _Col("Registry date", "words" if any_seen else "code")
        base = [[_cell(r.get("registry_id")), _change_date(r)] for r in rows]
        fields = [_cell(r.get("field_label") or r.get("field")) for r in rows]
        change = [_change_words(
            r.get("old_words") if r.get("old_words") is not None else r.get("old_value"),
            r.get("new_words") if r.get("new_words") is not None else r.get("new_value"))
            for r in rows]
        titles = [_title(r) for r in rows]
        layouts = [  # narrower terminals: the title, then the field, move into one column
            ([_Col("ID", "code"), date_col, _Col("Field", "words"), _Col("Change", "text"),
              _Col("Title", "text")],
             [[*b, f, c, t] for b, f, c, t in zip(base, fields, change, titles, strict=True)]),
            ([_Col("ID", "code"), date_col, _Col("Field", "words"), _Col("Change", "text")],
             [[*b, f, f"{c}\n  {t}"]
              for b, f, c, t in zip(base, fields, change, titles, strict=True)]),
            ([_Col("ID", "code"), date_col, _Col("Change", "text")],
             [[*b, f"{f}: {c}\n  {t}"]
              for b, f, c, t in zip(base, fields, change, titles, strict=True)]),
        ]
        cols, cells = _fitting(console, layouts)
        _print_table(console, cols, cells)
    _line(console, count)
    if legend:
        _line(console, NOT_MSC_LEGEND)
    return _output(buf)


def _event_words(ev: Mapping[str, Any]) -> str:
    if ev.get("event") == "changed" or ev.get("field_label"):
        change = _change_words(ev.get("old_words"), ev.get("new_words"))
        label = _cell(ev.get("field_label"))
        return f"{label}: {change}" if label else change
    return _cell(ev.get("new_words"))


def render_timeline(data: dict[str, Any], fmt: str) -> str:
    """``tracker show ID --timeline``: one line per event, oldest first, the registry's date
    beside the day the tracker saw it (table, markdown, csv or json)."""
    if fmt == "json":
        return to_json(data)
    events = sorted(data.get("events") or [], key=lambda e: _cell(e.get("seen_at")))
    if fmt == "csv":
        rows = [{"registry_id": data.get("registry_id"), **e} for e in events]
        return to_csv(rows, _columns_of(rows) or ["registry_id"])
    heading = f"{_cell(data.get('registry_id'))}: {_cell(data.get('title'))}"
    count = plural(len(events), "event")
    if fmt == "markdown":
        body = [[_md(_date_only(e.get("registry_date"))), _md(_when(e.get("seen_at"))),
                 _md(e.get("event")), _md(_event_words(e))] for e in events]
        heading_md = (f"## {_md_link(_md(data.get('registry_id')), data.get('url'))}: "
                      f"{_md(data.get('title'))}")
        parts = [heading_md, "",
                 _md_table(["Registry date", "Seen (UTC)", "Event", "Change"], body), "",
                 _md(count)]
        return "\n".join(parts) + "\n"
    console, buf = _console()
    _line(console, heading, "bold")
    if data.get("url"):
        _line(console, _cell(data["url"]))
    if events:
        base = [[_date_only(e.get("registry_date")) or "-", _when(e.get("seen_at"))]
                for e in events]
        kinds = [_cell(e.get("event")) for e in events]
        words = [_event_words(e) for e in events]
        head = [_Col("Registry date", "code"), _Col("Seen (UTC)", "words")]
        layouts = [
            ([*head, _Col("Event", "words"), _Col("Change", "text")],
             [[*b, k, w] for b, k, w in zip(base, kinds, words, strict=True)]),
            ([*head, _Col("Event", "text")],
             [[*b, f"{k}: {w}" if w else k] for b, k, w in zip(base, kinds, words, strict=True)]),
        ]
        cols, cells = _fitting(console, layouts)
        _print_table(console, cols, cells)
    _line(console, count)
    return _output(buf)


# ------------------------------------------------------------------ one record --------------

_WORD_FIELDS: dict[str, Callable[[Any], str]] = {
    "phase": lambda v: f"{phase_words(v)} ({_cell(v)})" if v else "",
    "status": lambda v: f"{status_words(v)} ({_cell(v)})" if v else "",
    "condition_groups": lambda v: groups_line(_str_list(v)),
    "cell_sources": lambda v: ", ".join(label_words("cell_source", s) for s in _str_list(v)),
    "origins": lambda v: ", ".join(label_words("origin", s) for s in _str_list(v)),
    "products": lambda v: ", ".join(label_words("product", s) for s in _str_list(v)),
    "msc_relevant": lambda v: {True: "yes", False: "no"}.get(v, "not classified"),
    "msc_role": lambda v: ROLE_WORDS.get(v, "not classified (run tracker classify)"),
    "minimally_manipulated": lambda v: {True: "yes", False: "no"}.get(v, ""),
}
_MULTILINE_FIELDS = ("brief_summary", "abstract", "detailed_description")


def _detail_value(key: str, value: Any) -> str:
    if key in _WORD_FIELDS:
        return _cell(_WORD_FIELDS[key](value))
    if isinstance(value, Mapping):
        return _cell(", ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in value.items()))
    if key in _MULTILINE_FIELDS:
        return clean_text(value, multiline=True).strip()
    return _cell(value)


def _unreported_line(info: Mapping[str, Any]) -> str:
    parts = []
    if info.get("primary_completion"):
        parts.append(f"primary completion {_cell(info['primary_completion'])}")
    months = info.get("months_since_primary_completion")
    if isinstance(months, int):
        parts.append(f"{plural(months, 'month')} ago")
    parts.append("no results posted and no linked results paper")
    return "Completed but unreported: " + ", ".join(parts)


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def render_detail(detail: dict[str, Any], fmt: str) -> str:
    """One study's (or paper's) fields, ids, references, labels and change history."""
    if fmt == "json":
        return to_json(detail)
    console, buf = _console()
    noun = "study" if "registry_id" in detail else "paper"
    ident = _cell(detail.get("registry_id") or detail.get("pmid") or detail.get("pmcid")
                  or detail.get("doi"))
    _line(console, f"{ident}: {_cell(detail.get('title')) or '(untitled)'}", "bold")
    if detail.get("msc_relevant") is False:
        reason = _cell(detail.get("relevance_reason"))
        _line(console, f"Not about MSCs: the classifier judged this {noun} not to be about "
                       "mesenchymal stem/stromal cells" + (f" ({reason})" if reason else ""))
    unreported = detail.get("unreported")
    if isinstance(unreported, Mapping) and unreported.get("unreported", True):
        _line(console, _unreported_line(unreported))
    console.print()
    keys = [k for k, v in detail.items() if not _is_table(v) and k != "unreported"]
    cells = [[k.replace("_", " "), _detail_value(k, detail[k])] for k in keys]
    _print_table(console, [_Col("field", "words"), _Col("value", "text")], cells,
                 header=False)
    for key, value in detail.items():
        if _is_table(value):
            cols_keys = list(dict.fromkeys(k for row in value for k in row))
            console.print()
            specs = []
            for k in cols_keys:
                values = [_detail_value(k, row.get(k)) for row in value]
                kind = "code" if all(len(v) <= 24 and " " not in v for v in values) else "text"
                specs.append(_Col(k.replace("_", " "), kind))
            rows = [[_detail_value(k, row.get(k)) for k in cols_keys] for row in value]
            _print_table(console, specs, rows, key.replace("_", " "))
    return _output(buf)


# ------------------------------------------------------------------ status ------------------


def _update_lines(last: Mapping[str, Any]) -> list[str]:
    """"Last update #7 (ok), started ..., finished ..." and one indented line per source."""
    head = f"Last update #{_cell(last.get('id'))} ({_cell(last.get('outcome')) or '?'})"
    if last.get("started_at"):
        head += f", started {_when(last['started_at'])} UTC"
    head += (f", finished {_when(last['finished_at'])} UTC" if last.get("finished_at")
             else ", not finished")
    lines = [head]
    for s in last.get("sources") or []:
        counts = ", ".join(f"{int(s.get(k) or 0):,} {word}" for k, word in (
            ("new", "new"), ("changed", "changed"), ("unchanged", "unchanged"),
            ("rejected", "failed")))
        line = f"  {_cell(s.get('source'))}: {_cell(s.get('outcome')) or '?'}, {counts}"
        if s.get("error"):
            line += f"; error: {_cell(s['error'])}"
        lines.append(line)
    return lines


_COUNT_WORDS = {
    "studies": ("studies_msc_relevant", "study"),
    "papers": ("papers_msc_relevant", "paper"),
}


def _counts_line(counts: Mapping[str, Any]) -> str:
    parts, done = [], set()
    for key, (relevant, noun) in _COUNT_WORDS.items():
        if isinstance(counts.get(key), int):
            text = plural(counts[key], noun)
            if key == "studies" and isinstance(counts.get("trials"), int):
                text += f" in {plural(counts['trials'], 'trial')}"  # registrations grouped
                done.add("trials")
            if isinstance(counts.get(relevant), int):
                text += f" ({counts[relevant]:,} about MSCs)"
                done.add(relevant)
            parts.append(text)
            done.add(key)
    if isinstance(counts.get("quarantined"), int):
        parts.append(f"{counts['quarantined']:,} quarantined")
        done.add("quarantined")
    parts += [f"{_cell(k).replace('_', ' ')}: {_cell(v)}" for k, v in counts.items()
              if k not in done]
    return "Database: " + ", ".join(parts)


def render_status(data: dict[str, Any], fmt: str) -> str:
    """``tracker status``: health, the last update with one line per source, the per-source
    table, the next scheduled run and the database counts."""
    if fmt == "json":
        return to_json(data)
    console, buf = _console()
    health = "OK" if data.get("healthy") else "FAILING"
    _line(console, f"{_cell(data.get('database'))}: {health}", "bold")
    last = data.get("last_update")
    if isinstance(last, Mapping):
        for line in _update_lines(last):
            _line(console, line)
    elif "last_update" in data:
        _line(console, "No update has run yet")
    sources = data.get("sources") or []
    if sources:
        cols = [_Col("Source", "words"), _Col("Last run (UTC)", "words"),
                _Col("Last success (UTC)", "words"), _Col("Watermark", "words"),
                _Col("Quarantined", "code", right=True)]
        cells = [[
            _cell(s.get("source")) + ("" if s.get("enabled", True) else " (disabled)"),
            f"{_cell(s.get('last_run_outcome')) or 'never'} {_when(s.get('last_run_started'))}"
            .strip(),
            _when(s.get("last_success")) or "never",
            _when(s.get("watermark")) or "-",
            _cell(s.get("quarantined")),
        ] for s in sources]
        console.print()
        _print_table(console, cols, cells)
        for s in sources:  # errors are long: one paragraph each, under the table
            if s.get("last_error"):
                when = _when(s.get("last_error_at"))
                _line(console, f"{_cell(s.get('source'))} last error"
                      + (f" ({when} UTC)" if when else "") + f": {_cell(s['last_error'])}")
    _line(console, "Next scheduled run: " + (_when(data.get("next_scheduled_run"))
                                             or "no scheduler set up"))
    if isinstance(data.get("counts"), Mapping):
        _line(console, _counts_line(data["counts"]))
    return _output(buf)


def render_rows(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str],
                empty: str = "nothing to list") -> str:
    """A plain list of rows (``tracker duplicates``) in the four formats; every cell made
    safe for where it goes."""
    if fmt == "json":
        return to_json(list(rows))
    if fmt == "csv":
        return to_csv(rows, columns)
    header = [c.replace("_", " ") for c in columns]
    if fmt == "markdown":
        if not rows:
            return f"_{_md(empty)}_\n"
        return _md_table(header, [[_md(_cell(r.get(c))) for c in columns] for r in rows]) + "\n"
    console, buf = _console()
    if not rows:
        _line(console, empty)
        return _output(buf)
    cols = [_Col(h, "code" if i < len(columns) - 1 else "text") for i, h in enumerate(header)]
    _print_table(console, cols, [[_cell(r.get(c)) for c in columns] for r in rows])
    return _output(buf)
