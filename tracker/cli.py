"""The ``tracker`` command line. Thin: parse options, call the library, render, map errors.

Every command takes ``--db`` (a file path or an SQLAlchemy URL; default ``$TRACKER_DB`` or the
config file's ``db``, else a file in the user data dir). Errors the tracker anticipates print one
line to stderr and exit 1; a bad option exits 2 (Typer's usage error).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from tracker import __version__
from tracker.config import Settings, load_settings
from tracker.errors import ConfigError, StorageError, TrackerError, one_line

app = typer.Typer(
    name="tracker",
    help="Track new and changed mesenchymal stem cell (MSC) trials from public registries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Inspect and upgrade the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database file path or SQLAlchemy URL (default: $TRACKER_DB, "
                 "the config file, else a file in the user data dir).", show_default=False),
]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output format: table, markdown, csv or json.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Only studies first posted on or after this date (YYYY-MM-DD).",
                 show_default=False),
]
LastRunOpt = Annotated[
    bool, typer.Option("--last-run", help="Only studies new to this database in its last update.")
]
ConditionOpt = Annotated[
    list[str] | None,
    typer.Option("--condition", "-c", help="Condition group (osteoarthritis, "
                 "rheumatoid_arthritis, tendinopathy, disc_degeneration, sports_injury, bone, "
                 "neurological, ...), or text a registry condition name contains (repeatable).",
                 show_default=False),
]
CellSourceOpt = Annotated[
    list[str] | None,
    typer.Option("--cell-source", help="bone_marrow, adipose, umbilical_cord, placenta, "
                 "dental_pulp, menstrual_blood, ipsc_derived, other, unspecified (repeatable).",
                 show_default=False),
]
OriginOpt = Annotated[
    list[str] | None,
    typer.Option("--origin", help="autologous, allogeneic or unspecified (repeatable).",
                 show_default=False),
]
ProductOpt = Annotated[
    list[str] | None,
    typer.Option("--product", help="cells, extracellular_vesicles, secretome or unspecified "
                 "(repeatable).", show_default=False),
]
IrrelevantOpt = Annotated[
    bool, typer.Option("--include-irrelevant", help="Also list records the classifier judged "
                       "not to be about MSCs.")
]
PhaseOpt = Annotated[
    list[str] | None,
    typer.Option("--phase", "-p", help="Canonical phase, e.g. PHASE2 or PHASE1_2 (repeatable).",
                 show_default=False),
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option("--status", "-s", help="Canonical status, e.g. RECRUITING (repeatable).",
                 show_default=False),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tracker {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each request and retry.")]
    = False,
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Show the version and exit.")] = None,
) -> None:
    """Track new and changed mesenchymal stem cell (MSC) trials from public registries."""
    from tracker.http import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler],
                        force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)


@contextmanager
def errors() -> Iterator[None]:
    """Turn anticipated errors into one line on stderr and exit code 1."""
    try:
        yield
    except TrackerError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(1) from None
    except OperationalError as exc:
        typer.echo(f"error: database: {str(exc.orig).splitlines()[0]}; check --db / TRACKER_DB "
                   "and that the server is running", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        typer.echo(f"error: database: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None


def settings_for(db: str | None, **overrides: Any) -> Settings:
    """Settings with CLI flags applied on top of file and environment."""
    return load_settings({"db": db, **overrides})


def _db_exists(settings: Settings) -> bool:
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return True
    return Path(url.database).exists()


def open_db(settings: Settings, *, create: bool = False) -> Engine:
    """The engine for ``settings.db``, upgraded to the current schema.

    A missing SQLite file is created only when ``create``; otherwise the user is told to run
    ``tracker update`` first.
    """
    from db.engine import make_engine
    from db.migrate import ensure_schema

    if not create and not _db_exists(settings):
        raise StorageError(f"no database at {settings.db}; run `tracker update` first "
                           "(or pass --db / set TRACKER_DB)")
    try:
        engine = make_engine(settings.db_url)
    except ValueError as exc:
        raise ConfigError(f"--db: {exc}") from None
    ensure_schema(engine)
    return engine


def parse_date(value: str | None, option: str) -> dt.date | None:
    """A YYYY-MM-DD option value; raises ConfigError naming the option otherwise."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from None


def check_format(fmt: str, allowed: tuple[str, ...]) -> str:
    """Validate ``--format``."""
    fmt = fmt.strip().lower()
    if fmt not in allowed:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(allowed)}")
    return fmt


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[Any]:
    """A factory of per-source progress callbacks drawing rich bars on stderr (or None)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=False) as bar:

        def factory(name: str) -> Any:
            task = bar.add_task(name, total=None)

            def advance(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            return advance

        yield factory


@app.command()
def update(
    source: Annotated[str | None, typer.Option(
        "--source", help="Comma-separated sources to run (default: every enabled source).",
        show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-pull everything, ignoring the "
                                       "watermark.")] = False,
    since: Annotated[str | None, typer.Option(
        "--since", help="Ask for records updated on or after this date (YYYY-MM-DD) instead "
        "of the watermark.", show_default=False)] = None,
    wait: Annotated[float | None, typer.Option(
        "--wait", help="If another update is running, wait up to this many seconds for it "
        "(default: lock_wait from config, 0 = exit at once).", show_default=False)] = None,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show a progress bar (default: when stderr is a "
        "terminal).")] = sys.stderr.isatty(),
    db: DbOpt = None,
) -> None:
    """Fetch new and changed records from the public sources into the database.

    The first run loads everything; later runs ask only for records updated since the last
    successful run (minus a few days of overlap). Prints one summary line per source.
    """
    from tracker.lock import update_lock
    from tracker.update import run_update

    with errors():
        settings = settings_for(db, lock_wait=wait)
        since_date = parse_date(since, "--since")
        if full and since_date:
            raise ConfigError("use either --full or --since, not both")
        names = [s.strip() for s in source.split(",") if s.strip()] if source else None
        engine = open_db(settings, create=True)
        with update_lock(engine, wait=settings.lock_wait), _progress_bars(progress) as bars:
            summaries = run_update(settings, engine, names=names, full=full, since=since_date,
                                   progress=bars)
        for s in summaries:
            typer.echo(s.line())
        failed = [s for s in summaries if s.error]
        for s in failed:
            typer.echo(f"error: {s.error}", err=True)
        if failed:
            raise typer.Exit(1)


@app.command()
def schedule(db: DbOpt = None) -> None:
    """Run in the foreground and update every enabled source on the configured schedule.

    The schedule is a cron expression in local time (config `schedule`, default "30 2 * * *":
    02:30 every night). The job lives in the tracker's own database; missed runs (the machine
    was asleep or off) run once when it is back; two runs never overlap. Ctrl-C or SIGTERM
    stops it after the page being stored.
    """
    from tracker.scheduler import run_scheduler

    with errors():
        settings = settings_for(db)
        open_db(settings, create=True)
        run_scheduler(settings, on_event=typer.echo)


@app.command()
def report(
    since: SinceOpt = None,
    last_run: LastRunOpt = False,
    condition: ConditionOpt = None,
    phase: PhaseOpt = None,
    status: StatusOpt = None,
    cell_source: CellSourceOpt = None,
    origin: OriginOpt = None,
    product: ProductOpt = None,
    include_irrelevant: IrrelevantOpt = False,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """What is new: a condition-by-phase table and the list of new studies under it.

    Without --since or --last-run, covers studies first posted in the last 30 days.
    """
    from tracker.render import FORMATS, render_report
    from tracker.reports import LIST_COLUMNS, build_report, make_filter

    with errors():
        fmt = check_format(fmt, FORMATS)
        since_date = parse_date(since, "--since")
        if since_date is None and not last_run:
            since_date = dt.date.today() - dt.timedelta(days=30)
        flt = make_filter(since=since_date, last_run=last_run, conditions=condition or (),
                          phases=phase or (), statuses=status or (),
                          cell_sources=cell_source or (), origins=origin or (),
                          products=product or (), include_irrelevant=include_irrelevant)
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            rep = build_report(conn, flt)
        typer.echo(render_report(rep, fmt, LIST_COLUMNS), nl=False)


@app.command()
def studies(
    since: SinceOpt = None,
    last_run: LastRunOpt = False,
    condition: ConditionOpt = None,
    phase: PhaseOpt = None,
    status: StatusOpt = None,
    cell_source: CellSourceOpt = None,
    origin: OriginOpt = None,
    product: ProductOpt = None,
    include_irrelevant: IrrelevantOpt = False,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """List every study matching the filters (all studies when none are given)."""
    from tracker.render import FORMATS, render_studies
    from tracker.reports import LIST_COLUMNS, make_filter, query_studies

    with errors():
        fmt = check_format(fmt, FORMATS)
        flt = make_filter(since=parse_date(since, "--since"), last_run=last_run,
                          conditions=condition or (), phases=phase or (),
                          statuses=status or (), cell_sources=cell_source or (),
                          origins=origin or (), products=product or (),
                          include_irrelevant=include_irrelevant)
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            rows = query_studies(conn, flt)
        typer.echo(render_studies(rows, fmt, LIST_COLUMNS), nl=False)


@app.command()
def papers(
    since: Annotated[str | None, typer.Option(
        "--since", help="Only papers first indexed on or after this date (YYYY-MM-DD).",
        show_default=False)] = None,
    last_run: Annotated[bool, typer.Option(
        "--last-run", help="Only papers new to this database in its last update.")] = False,
    include_deleted: Annotated[bool, typer.Option(
        "--include-deleted", help="Include citations PubMed has deleted.")] = False,
    condition: ConditionOpt = None,
    phase: PhaseOpt = None,
    cell_source: CellSourceOpt = None,
    origin: OriginOpt = None,
    product: ProductOpt = None,
    include_irrelevant: IrrelevantOpt = False,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """List papers (PubMed, Europe PMC) with their labels and the trial ids they name."""
    from tracker.render import FORMATS, render_papers
    from tracker.reports import PAPER_COLUMNS, PaperFilter, make_filter, query_papers

    with errors():
        fmt = check_format(fmt, FORMATS)
        since_date = parse_date(since, "--since")
        if since_date and last_run:
            raise ConfigError("use either --since or --last-run, not both")
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            labels = make_filter(conditions=condition or (), phases=phase or (),
                                 cell_sources=cell_source or (), origins=origin or (),
                                 products=product or (), include_irrelevant=include_irrelevant)
            if labels.conditions:
                raise ConfigError(f"--condition {labels.conditions[0]!r} is not a condition "
                                  "group; papers are filtered by group only")
            rows = query_papers(conn, PaperFilter(since=since_date, last_run=last_run,
                                                  include_deleted=include_deleted,
                                                  labels=labels))
        typer.echo(render_papers(rows, fmt, PAPER_COLUMNS), nl=False)


@app.command()
def show(
    record_id: Annotated[str, typer.Argument(
        help="A study id (NCT01234567) or a paper (PMID:12345, PMC1234567, DOI:10.x/y).",
        show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    raw: Annotated[bool, typer.Option("--raw", help="Print the registry's own record "
                                      "as stored.")] = False,
    db: DbOpt = None,
) -> None:
    """Show one study (fields, secondary ids, linked papers, change history) or one paper
    (fields, listings, linked trials)."""
    from tracker.render import render_detail, to_json
    from tracker.reports import paper_detail, raw_record, study_detail

    with errors():
        fmt = check_format(fmt, ("table", "json"))
        engine = open_db(settings_for(db))
        is_study = record_id.strip().upper().startswith("NCT")
        with engine.connect() as conn:
            if raw and is_study:
                typer.echo(to_json(raw_record(conn, record_id)))
                return
            detail = study_detail(conn, record_id) if is_study else paper_detail(conn, record_id)
        typer.echo(render_detail(detail, fmt), nl=False)


@app.command()
def status(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    db: DbOpt = None,
) -> None:
    """Per source: last run and its outcome, last success, watermark, last error, quarantine;
    the next scheduled run; database counts.

    Exits 1 when the last run of any enabled source failed, for monitoring checks.
    """
    from tracker.render import render_status
    from tracker.status import collect_status

    with errors():
        fmt = check_format(fmt, ("table", "json"))
        settings = settings_for(db)
        engine = open_db(settings)
        data = collect_status(engine, settings, _next_run(settings, engine))
        typer.echo(render_status(data, fmt), nl=False)
        if not data["healthy"]:
            raise typer.Exit(1)


def _next_run(settings: Settings, engine: Engine) -> Any:
    """The scheduler's next run, when a scheduler has stored its job in this database."""
    try:
        from tracker.scheduler import next_run_time
    except ImportError:  # pragma: no cover - the scheduler module is part of the package
        return None
    return next_run_time(settings, engine)


@app.command()
def classify(
    rules: Annotated[str | None, typer.Option(
        "--rules", help="A rules file to use instead of the configured one.",
        show_default=False)] = None,
    db: DbOpt = None,
) -> None:
    """Re-label every stored study and paper from its stored record, without refetching.

    Run it after editing the rules file. Records waiting in quarantine are parsed again too,
    and stored if they now parse.
    """
    from tracker.relabel import relabel_all

    with errors():
        settings = settings_for(db, rules=rules)
        engine = open_db(settings)
        result = relabel_all(engine, settings)
        typer.echo(result.line())


@app.command()
def evaluate(
    path: Annotated[str | None, typer.Argument(
        help="A labelled JSONL set (default: the shipped evaluation set).",
        show_default=False)] = None,
    rules: Annotated[str | None, typer.Option(
        "--rules", help="A rules file to evaluate instead of the shipped one.",
        show_default=False)] = None,
) -> None:
    """Measure the classifier on a hand-labelled set: precision, recall, F1, phase confusion.

    Exits 1 when a figure falls below its bar.
    """
    from tracker.classify import load_rules
    from tracker.evaluation import evaluate as run_evaluation
    from tracker.evaluation import render_report

    with errors():
        try:
            report = run_evaluation(Path(path) if path else None, load_rules(rules))
        except FileNotFoundError as exc:
            raise ConfigError(f"{exc}; the shipped set lives in tests/eval of a source "
                              "checkout, or pass a JSONL path") from None
        typer.echo(render_report(report))
        if report.failures():
            raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Create the database or bring it to the current schema (never drops data)."""
    from db.engine import make_engine
    from db.migrate import upgrade

    with errors():
        settings = settings_for(db)
        try:
            engine = make_engine(settings.db_url)
        except ValueError as exc:
            raise ConfigError(f"--db: {exc}") from None
        applied = upgrade(engine)
        for rev, msg in applied:
            typer.echo(f"applied {rev}: {msg}")
        typer.echo(f"{settings.db}: schema is current" if not applied
                   else f"{settings.db}: upgraded ({len(applied)} migrations)")


@db_app.command("history")
def db_history(db: DbOpt = None) -> None:
    """List the schema migrations, marking those applied to this database."""
    from db.engine import make_engine
    from db.migrate import history, pending

    with errors():
        settings = settings_for(db)
        todo = {rev for rev, _ in pending(make_engine(settings.db_url))} if _db_exists(
            settings) else {rev for rev, _ in history()}
        for rev, msg in history():
            typer.echo(f"{'pending' if rev in todo else 'applied'}  {rev}  {msg}")


@app.command("config")
def show_config(db: DbOpt = None) -> None:
    """Print the effective configuration (API keys hidden) and where it came from."""
    from tracker.config import default_config_path
    from tracker.render import to_json

    with errors():
        s = settings_for(db)
        data = {
            "config_file": s.config_file or f"{default_config_path()} (not present)",
            "db": s.db,
            "contact_email": s.contact_email,
            "pubmed_api_key": "***" if s.pubmed_api_key else None,
            "overlap_days": s.overlap_days,
            "timeout": s.timeout,
            "max_retries": s.max_retries,
            "schedule": s.schedule,
            "sources": {n: vars(src) | {"rate_per_second": s.source(n).rate_per_second}
                        for n, src in s.sources.items()},
        }
        typer.echo(to_json(data))
