"""The ``tracker`` command line. Thin: parse options, call the library, render, map errors.

Every command takes ``--db`` (a file path or an SQLAlchemy URL; default ``$TRACKER_DB`` or the
config file's ``db``, else a file in the user data dir). Errors the tracker anticipates print one
line to stderr and exit 1; a bad option exits 2 (Typer's usage error).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from tracker import __version__
from tracker.config import Settings, load_settings
from tracker.errors import ConfigError, StorageError, TrackerError, one_line, register_secret

_INTERRUPT_SAID = False  # errors() has already said "interrupted"


class TrackerApp(typer.Typer):
    """The Typer app, with Ctrl-C turned into one line and exit code 130 wherever it lands
    (a long-running command records its own interruption before this sees it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)  # see tracker/__init__.py
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            sys.exit(130)
        except SystemExit as exc:  # Typer turns Ctrl-C into a silent exit 130
            if exc.code == 130 and not _INTERRUPT_SAID:
                sys.stderr.write("error: interrupted\n")
            raise


app = TrackerApp(
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
                       "not to be about MSCs (the same as --role all).")
]
RoleOpt = Annotated[
    list[str] | None,
    typer.Option("--role", metavar="ROLE", help="How MSCs figure: therapy (given in an arm), laboratory "
                 "(isolated MSCs studied), manufacturing, endogenous (the patient's own, "
                 "measured or mobilised), mention, none, or all (repeatable or comma-"
                 "separated). Default: the MSC-relevant ones, therapy and laboratory.",
                 show_default=False),
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


QueryOpt = Annotated[
    str | None,
    typer.Option("--query", "-q", help='Full-text search of titles, summaries and '
                 'descriptions, conditions, interventions (and other names), keywords, MeSH '
                 'terms and abstracts: words (all must match), "a phrase", OR, NOT, prefix*, '
                 '( ). Ranked by relevance unless --sort is given.', show_default=False),
]
RegistryOpt = Annotated[
    str | None,
    typer.Option("--registry", help="Only registrations of this registry: ctgov, isrctn, "
                 "euctr, ctis, chictr, irct, jprn, ctri, cris, anzctr, drks, ... (trials are "
                 "still counted once).", show_default=False),
]
CountryOpt = Annotated[
    list[str] | None,
    typer.Option("--country", help="Trials with a location in this country (repeatable), "
                 "e.g. Spain, 'Korea, Republic of', USA.", show_default=False),
]
LimitOpt = Annotated[
    str | None,
    typer.Option("--limit", "-n", metavar="N", help="At most N records (N >= 1), after "
                 "sorting.", show_default=False),
]
SortOpt = Annotated[
    str | None,
    typer.Option("--sort", help="first_posted, last_update, phase, enrollment or relevance "
                 "(default: relevance with --query, else newest first).", show_default=False),
]
DescOpt = Annotated[
    bool, typer.Option("--desc", help="Reverse --sort: newest, latest phase, largest first "
                       "(relevance: worst match first).")
]


@dataclass(frozen=True)
class LabelOptions:
    """The filters and query controls every listing shares (``label_options``), as given on
    the line."""

    condition: list[str] | None = None
    phase: list[str] | None = None
    status: list[str] | None = None
    cell_source: list[str] | None = None
    origin: list[str] | None = None
    product: list[str] | None = None
    include_irrelevant: bool = False
    role: list[str] | None = None
    query: str | None = None
    country: list[str] | None = None
    registry: str | None = None
    limit: str | None = None
    sort: str | None = None
    desc: bool = False

    def filter(self, **window: Any) -> Any:
        """A validated ``StudyFilter`` for these options plus ``window`` (since, last_run, ...)."""
        from tracker.reports import make_filter

        return make_filter(conditions=self.condition or (), phases=self.phase or (),
                           statuses=self.status or (), cell_sources=self.cell_source or (),
                           origins=self.origin or (), products=self.product or (),
                           include_irrelevant=self.include_irrelevant,
                           roles=self.role or (), query=self.query, registry=self.registry,
                           countries=self.country or (), limit=self.limit, sort=self.sort,
                           desc=self.desc, **window)


_LABEL_OPTIONS: dict[str, Any] = {
    "condition": ConditionOpt, "phase": PhaseOpt, "status": StatusOpt,
    "cell_source": CellSourceOpt, "origin": OriginOpt, "product": ProductOpt,
    "include_irrelevant": IrrelevantOpt, "role": RoleOpt,
}
QUERY_CONTROLS: dict[str, Any] = {
    "query": QueryOpt, "country": CountryOpt, "registry": RegistryOpt, "limit": LimitOpt,
    "sort": SortOpt, "desc": DescOpt,
}
_FLAGS = ("include_irrelevant", "desc")


def label_options(func: Callable[..., Any] | None = None, *,
                  controls: tuple[str, ...] = tuple(QUERY_CONTROLS)) -> Any:
    """Give a command the shared label filters and the query ``controls`` (as sqlite-utils
    shares ``output_options``): the command declares one ``labels: LabelOptions`` parameter
    and receives them all in it. ``@label_options`` gives every control;
    ``@label_options(controls=("query", "country"))`` only those."""
    if func is None:
        return functools.partial(label_options, controls=controls)
    options = {**_LABEL_OPTIONS, **{name: QUERY_CONTROLS[name] for name in controls}}
    hints = typing.get_type_hints(func, include_extras=True)
    sig = inspect.signature(func)
    sig = sig.replace(parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                                  for p in sig.parameters.values()])
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                               default=False if name in _FLAGS else None,
                               annotation=annotation)
             for name, annotation in options.items()]
    params = [p for p in sig.parameters.values() if p.name != "labels"]
    at = next((i for i, p in enumerate(params) if p.name in ("fmt", "db", "output")),
              len(params))
    params[at:at] = extra
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        kwargs["labels"] = LabelOptions(**{name: kwargs.pop(name) for name in options})
        return func(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer reads the signature above, not the wrapped function's
    return wrapper


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
    """Turn anticipated errors into one line on stderr and exit code 1 (a usage error, such
    as a bad ``--query``: 2; Ctrl-C: 130)."""
    try:
        yield
    except TrackerError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(getattr(exc, "exit_code", 1)) from None
    except KeyboardInterrupt:
        global _INTERRUPT_SAID
        _INTERRUPT_SAID = True
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except OperationalError as exc:
        first = one_line(str(exc.orig).splitlines()[0])
        typer.echo(f"error: database: {first}; check --db / TRACKER_DB and that the server "
                   "is running", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        typer.echo(f"error: database: {one_line(str(cause).splitlines()[0])}; check --db / "
                   "TRACKER_DB points at a tracker database", err=True)
        raise typer.Exit(1) from None


def settings_for(db: str | None, **overrides: Any) -> Settings:
    """Settings with CLI flags applied on top of file and environment; the API key's value is
    registered as a secret, so no message, log line or stored error can show it."""
    settings = load_settings({"db": db, **overrides})
    register_secret(settings.pubmed_api_key)
    return settings


def _sqlite_path(settings: Settings) -> Path | None:
    """The database file, when the database is an SQLite file."""
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _db_exists(settings: Settings) -> bool:
    path = _sqlite_path(settings)
    return path is None or path.exists()


def open_db(settings: Settings, *, create: bool = False, migrate: bool = True) -> Engine:
    """The engine for ``settings.db``, upgraded to the current schema (unless not ``migrate``:
    a writer upgrades it once it holds the update lock).

    A missing SQLite file is created only when ``create``; otherwise the user is told to run
    ``tracker update`` first.
    """
    from db.engine import make_engine
    from db.migrate import ensure_schema

    if not create and not _db_exists(settings):
        raise StorageError(f"no database at {settings.db}; run `tracker update` first "
                           "(or pass --db / set TRACKER_DB)")
    path = _sqlite_path(settings)
    if not create and path is not None and path.is_file() and path.stat().st_size == 0:
        raise StorageError(f"{settings.db} is an empty file, not a tracker database; check "
                           "--db / TRACKER_DB, or run `tracker update` to create one there")
    try:
        engine = make_engine(settings.db_url)
    except ValueError as exc:
        raise ConfigError(f"--db: {exc}") from None
    if migrate:
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


def _dry_run(settings: Settings, names: list[str] | None, full: bool,
             since: dt.date | None) -> None:
    """``update --dry-run``: each source's count and the run's estimate; nothing stored."""
    from db.engine import make_engine
    from tracker.dryrun import plan_update, total_line

    engine = None
    if _db_exists(settings) and _sqlite_path(settings) is not None:
        engine = make_engine(settings.db_url)  # read the watermarks only; never migrated
    elif _sqlite_path(settings) is None:
        engine = open_db(settings, migrate=False)
    try:
        plans = plan_update(settings, engine, names=names, full=full, since=since)
    finally:
        if engine is not None:
            engine.dispose()
    for plan in plans:
        typer.echo(plan.line())
    typer.echo(total_line(plans))
    failed = [p for p in plans if p.error]
    for plan in failed:
        typer.echo(f"error: {plan.error}", err=True)
    if failed:
        raise typer.Exit(1)


WaitOpt = Annotated[
    float | None, typer.Option(
        "--wait", help="If an update (or classify) is running, wait up to this many seconds "
        "for it (default: lock_wait from config, 0 = exit at once).", show_default=False),
]


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
    wait: WaitOpt = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bars with the time left (default when "
        "stderr is a terminal; otherwise one line per source every 30 s); --no-progress: "
        "neither.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Ask each source only how many records the run would load, and "
        "print the window, records, requests and an estimate of the time; stores nothing.")]
    = False,
    save_raw: Annotated[str | None, typer.Option(
        "--save-raw", metavar="DIR", help="Also keep every page each source sent in DIR "
        "(DIR/<source>/...); tracker import DIR reads them back, e.g. on an air-gapped "
        "mirror or after a parser fix.", show_default=False)] = None,
    db: DbOpt = None,
) -> None:
    """Fetch new and changed records from the public sources into the database.

    The first run loads everything; later runs ask only for records updated since the last
    successful run (minus a few days of overlap). Prints one summary line per source.
    --dry-run says beforehand how much that is.
    """
    from db.migrate import ensure_schema
    from tracker.lock import update_lock
    from tracker.progress import progress_display
    from tracker.update import run_update

    with errors():
        settings = settings_for(db, lock_wait=wait)
        since_date = parse_date(since, "--since")
        if full and since_date:
            raise ConfigError("use either --full or --since, not both")
        names = [s.strip() for s in source.split(",") if s.strip()] if source else None
        if dry_run:
            _dry_run(settings, names, full, since_date)
            return
        # The lock first, then the schema: two first-ever updates must not both migrate.
        engine = open_db(settings, create=True, migrate=False)
        terminal = sys.stderr.isatty() if progress is None else progress
        with update_lock(engine, wait=settings.lock_wait), \
                progress_display(terminal, log=progress is None) as bars:
            ensure_schema(engine)
            summaries = run_update(settings, engine, names=names, full=full, since=since_date,
                                   progress=bars,
                                   save_raw=Path(save_raw) if save_raw else None)
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
@label_options
def report(
    labels: LabelOptions,
    since: SinceOpt = None,
    last_run: LastRunOpt = False,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """What is new: studies by condition and phase, the list under it, then the papers.

    With --last-run: what the last update stored, the studies it changed included.

    Without --since or --last-run, covers studies first posted in the last 30 days.
    """
    from tracker.render import FORMATS, render_report
    from tracker.reports import LIST_COLUMNS, build_report

    with errors():
        fmt = check_format(fmt, FORMATS)
        since_date = parse_date(since, "--since")
        if since_date is None and not last_run:
            since_date = dt.date.today() - dt.timedelta(days=30)
        flt = labels.filter(since=since_date, last_run=last_run)
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            rep = build_report(conn, flt)
        typer.echo(render_report(rep, fmt, LIST_COLUMNS), nl=False)


@app.command()
@label_options
def studies(
    labels: LabelOptions,
    since: SinceOpt = None,
    last_run: Annotated[bool, typer.Option(
        "--last-run", help="Only studies the last update stored as new or changed.")] = False,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The studies as the registry showed them on this date (YYYY-MM-DD), "
        "rebuilt from the versions kept.", show_default=False)] = None,
    unreported: Annotated[bool, typer.Option(
        "--unreported", help="Only trials completed but unreported: primary completion more "
        "than `unreported_months` (default 12) ago, no results posted, no results paper.")]
    = False,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """List every study matching the filters (all studies when none are given)."""
    from tracker.render import FORMATS, render_studies
    from tracker.reports import LIST_COLUMNS, unreported_cutoff

    with errors():
        fmt = check_format(fmt, FORMATS)
        as_of_date = parse_date(as_of, "--as-of")
        if as_of_date and (last_run or unreported):
            raise ConfigError("--as-of goes with the label filters and --since only")
        settings = settings_for(db)
        cutoff = unreported_cutoff(dt.date.today(), settings.unreported_months) \
            if unreported else None
        flt = labels.filter(since=parse_date(since, "--since"), last_run=last_run,
                            last_run_changed=last_run, unreported_before=cutoff)
        engine = open_db(settings)
        with engine.connect() as conn:
            if as_of_date:
                from tracker.classify import load_rules
                from tracker.history import studies_as_of

                rows = studies_as_of(conn, flt, as_of_date, load_rules(settings.rules))
                if flt.since:
                    rows = [r for r in rows if (r["first_posted"] or "") >= flt.since.isoformat()]
            else:
                from tracker.reports import query_studies

                rows = query_studies(conn, flt)
        typer.echo(render_studies(rows, fmt, LIST_COLUMNS), nl=False)


@app.command()
@label_options
def changes(
    labels: LabelOptions,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only changes the tracker saw on or after this date (YYYY-MM-DD).",
        show_default=False)] = None,
    last_run: Annotated[bool, typer.Option(
        "--last-run", help="Only changes the last update stored.")] = False,
    field: Annotated[list[str] | None, typer.Option(
        "--field", help="Only these fields (repeatable or comma-separated): status, "
        "why_stopped, phase, enrollment, enrollment_type, start_date, primary_completion_date, "
        "completion_date, has_results, results_first_posted, conditions, interventions, arms, "
        "primary_outcomes, sponsor, countries, title.", show_default=False)] = None,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """What changed in the stored studies, field by field, newest first.

    Each change: old and new value, the registry's update date and when the tracker saw it.

    Without --since or --last-run, covers the last 30 days.
    """
    from tracker.history import ChangeFilter, check_fields, query_changes
    from tracker.render import FORMATS, render_changes

    with errors():
        fmt = check_format(fmt, FORMATS)
        since_date = parse_date(since, "--since")
        if since_date and last_run:
            raise ConfigError("use either --since or --last-run, not both")
        if since_date is None and not last_run:
            since_date = dt.date.today() - dt.timedelta(days=30)
        flt = ChangeFilter(since=since_date, last_run=last_run,
                           fields=check_fields(field or []), labels=labels.filter())
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            rows = query_changes(conn, flt)
        typer.echo(render_changes(rows, fmt), nl=False)


OutputOpt = Annotated[
    str | None, typer.Option("--output", "-o", help="Write to this file instead of standard "
                             "output (written whole, then moved into place).",
                             show_default=False),
]


def _write_output(text: str | bytes, output: str | None) -> None:
    """Print ``text``, or write it to ``output`` atomically (a reader never sees half)."""
    if output is None:
        if isinstance(text, bytes):
            sys.stdout.buffer.write(text)
            sys.stdout.flush()
        else:
            typer.echo(text, nl=False)
        return
    target = Path(output).expanduser()
    if target.is_dir():
        raise ConfigError(f"--output {output} is a directory; give a file name")
    if not target.parent.exists():
        raise ConfigError(f"--output {output}: folder {target.parent} does not exist")
    data = text.encode() if isinstance(text, str) else text
    if target.exists() and not target.is_file():  # /dev/null, a FIFO: write, never replace
        try:
            with target.open("wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise ConfigError(f"--output {output}: {exc.strerror or exc}") from None
        return
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"--output {output}: {exc.strerror or exc}") from None


def _digest_data(conn: Any, labels: LabelOptions, since: str | None, last_run: bool,
                 settings: Settings) -> dict[str, Any]:
    from tracker.digest import build_digest

    since_date = parse_date(since, "--since")
    if since_date and last_run:
        raise ConfigError("use either --since or --last-run, not both")
    return build_digest(conn, since=since_date, last_run=last_run, labels=labels.filter(),
                        unreported_months=settings.unreported_months)


@app.command()
@label_options
def digest(
    labels: LabelOptions,
    since: Annotated[str | None, typer.Option(
        "--since", help="The period starts on this date (YYYY-MM-DD; default: 7 days ago).",
        show_default=False)] = None,
    last_run: Annotated[bool, typer.Option(
        "--last-run", help="The period is the last update.")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, html or json.")]
    = "markdown",
    output: OutputOpt = None,
    db: DbOpt = None,
) -> None:
    """The editor's "latest advancements" page: what is new and what changed, ranked.

    New MSC trials by condition and phase, notable changes ranked by importance, papers
    reporting results of tracked trials, other new papers, trials completed but unreported,
    and charts. HTML is one self-contained file.
    """
    with errors():
        fmt = check_format(fmt, ("markdown", "html", "json"))
        settings = settings_for(db)
        engine = open_db(settings)
        with engine.connect() as conn:
            data = _digest_data(conn, labels, since, last_run, settings)
        if fmt == "json":
            from tracker.render import to_json

            text = to_json(data) + "\n"
        else:
            from tracker.digest_render import render_html, render_markdown

            text = render_html(data) if fmt == "html" else render_markdown(data)
        _write_output(text, output)


@app.command()
@label_options(controls=("query", "country"))
def feed(
    labels: LabelOptions,
    since: Annotated[str | None, typer.Option(
        "--since", help="Entries from this date on (YYYY-MM-DD; default: 7 days ago, as the "
        "digest).",
        show_default=False)] = None,
    last_run: Annotated[bool, typer.Option(
        "--last-run", help="Entries of the last update only.")] = False,
    feed_url: Annotated[str | None, typer.Option(
        "--feed-url", help="The URL the feed will be published at (its rel=self link).",
        show_default=False)] = None,
    output: OutputOpt = None,
    db: DbOpt = None,
) -> None:
    """An Atom feed of new MSC trials, notable changes and new papers, for feed readers.

    One entry each, with ids that stay the same across runs; the filters make a feed per
    condition, phase, cell source...
    """
    from tracker.feed import build_feed

    with errors():
        settings = settings_for(db)
        engine = open_db(settings)
        with engine.connect() as conn:  # the digest's period: the last 7 days by default
            data = _digest_data(conn, labels, since, last_run, settings)
        try:
            xml = build_feed(data, feed_url=feed_url)
        except ValueError as exc:
            raise ConfigError(f"--feed-url: {exc}") from None
        _write_output(xml, output)


@app.command()
@label_options
def papers(
    labels: LabelOptions,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only papers first indexed on or after this date (YYYY-MM-DD).",
        show_default=False)] = None,
    last_run: Annotated[bool, typer.Option(
        "--last-run", help="Only papers new to this database in its last update.")] = False,
    include_deleted: Annotated[bool, typer.Option(
        "--include-deleted", help="Include citations PubMed has deleted (they are not in "
        "the full-text index: --query does not find them).")] = False,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """List papers (PubMed, Europe PMC) with their labels and the trial ids they name."""
    from tracker.render import FORMATS, render_papers
    from tracker.reports import PAPER_COLUMNS, PaperFilter, query_papers
    from tracker.search import UsageError

    with errors():
        fmt = check_format(fmt, FORMATS)
        since_date = parse_date(since, "--since")
        if since_date and last_run:
            raise ConfigError("use either --since or --last-run, not both")
        for name, value in (("--status", labels.status), ("--country", labels.country)):
            if value:
                raise UsageError(f"{name} is for trials; papers have no "
                                 f"{'status' if name == '--status' else 'locations'}")
        flt = labels.filter()
        if flt.conditions:
            raise ConfigError(f"--condition {flt.conditions[0]!r} is not a condition "
                              "group; papers are filtered by group only")
        if flt.sort == "enrollment":
            raise UsageError("--sort enrollment is for trials; papers sort by first_posted "
                             "(first indexed), last_update (revised), phase or relevance")
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            rows = query_papers(conn, PaperFilter(since=since_date, last_run=last_run,
                                                  include_deleted=include_deleted,
                                                  labels=flt))
        typer.echo(render_papers(rows, fmt, PAPER_COLUMNS), nl=False)


@app.command("search")
@label_options(controls=("country", "limit", "sort", "desc"))
def search_command(
    labels: LabelOptions,
    text: Annotated[str, typer.Argument(
        help='What to look for: words (all must match), "a phrase", OR, NOT, prefix*, ( ).',
        show_default=False)],
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """Trials and papers together, best match first (the 20 best unless --limit).

    The same full-text search as --query, over both: titles, summaries, descriptions,
    conditions, interventions, keywords, MeSH terms, abstracts. --status and --country
    apply to trials (papers are then left out).
    """
    from dataclasses import replace

    from tracker.render import FORMATS
    from tracker.search import render_search, search_all

    with errors():
        fmt = check_format(fmt, FORMATS)
        flt = replace(labels, query=text).filter()
        if flt.limit is None:
            flt = replace(flt, limit=20)
        engine = open_db(settings_for(db))
        with engine.connect() as conn:
            rows = search_all(conn, flt)
        typer.echo(render_search(rows, fmt), nl=False)


def _sqlite_file(settings: Settings, command: str) -> Path:
    """The SQLite file ``command`` works on; ConfigError for another engine or no file."""
    path = _sqlite_path(settings)
    if path is None:
        raise ConfigError(f"tracker {command} works on an SQLite file, and --db / TRACKER_DB "
                          "is not one; `tracker export` writes any database's tables to "
                          "files")
    if not path.exists():
        raise StorageError(f"no database at {settings.db}; run `tracker update` first "
                           "(or pass --db / set TRACKER_DB)")
    return path


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535,
                                      help="Port on 127.0.0.1 (0: any free port).")] = 8001,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the page in a web browser.")] = False,
    db: DbOpt = None,
) -> None:
    """Browse the database in Datasette on http://127.0.0.1 (needs the optional web extra).

    Readable views (studies, papers, changes, labels, links), facets by phase, status and
    label, and full-text search. Install it with pip install 'msc-trial-tracker[web]'.
    """
    from tracker.datasette import INSTALL, installed
    from tracker.datasette import serve as run_datasette

    with errors():
        if not installed():
            raise ConfigError(INSTALL)
        settings = settings_for(db)
        path = _sqlite_file(settings, "serve")
        open_db(settings)  # the schema current: views and the index exist
        code = run_datasette(path, port=port, open_browser=open_browser)
        if code:
            raise typer.Exit(code)


@app.command("datasette-metadata")
def datasette_metadata(
    output: OutputOpt = None,
    db: DbOpt = None,
) -> None:
    """Write Datasette's metadata.json for this database: tables, columns, facets, search.

    Use it with `datasette serve tracker.sqlite --metadata metadata.json` (tracker serve
    does this for you).
    """
    from tracker.datasette import metadata
    from tracker.render import to_json

    with errors():
        settings = settings_for(db)
        path = _sqlite_path(settings)
        name = path.stem if path is not None else "tracker"
        _write_output(to_json(metadata(name)) + "\n", output)


@app.command()
def export(
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Folder to write the files into (created if missing).",
        show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl or parquet "
                                     "(parquet needs the optional parquet extra).")] = "csv",
    db: DbOpt = None,
) -> None:
    """Write studies, papers, changes, labels, links and countries to one file each.

    For R, pandas, DuckDB or a spreadsheet: studies.csv, papers.csv, ... (or .jsonl,
    .parquet), from the database's readable views; lists stay lists in JSON lines and
    Parquet. Each file is written whole, then moved into place.
    """
    from tracker.export import check_format as check_export_format
    from tracker.export import export as run_export

    with errors():
        fmt = check_export_format(fmt)
        folder = Path(output).expanduser()
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--output {output} is a file; give a folder")
        if not folder.parent.exists():
            raise ConfigError(f"--output {output}: folder {folder.parent} does not exist")
        engine = open_db(settings_for(db))
        folder.mkdir(exist_ok=True)
        with engine.connect() as conn:
            for name, count in run_export(conn, fmt, folder):
                typer.echo(f"{folder / name}: {count:,} rows")


@app.command()
def show(
    record_id: Annotated[str, typer.Argument(
        help="A study id (NCT01234567) or a paper (PMID:12345, PMC1234567, DOI:10.x/y).",
        show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    raw: Annotated[bool, typer.Option("--raw", help="Print the registry's own record "
                                      "as stored.")] = False,
    timeline: Annotated[bool, typer.Option("--timeline", help="A study's history from first "
                                           "sight to now, field by field.")] = False,
    db: DbOpt = None,
) -> None:
    """Show one study or one paper, with everything stored about it.

    A study: fields, secondary ids, linked papers, labels and evidence, change history
    (--timeline: its whole history). A paper: fields, listings, linked trials.
    """
    from tracker.render import render_detail, render_timeline, to_json
    from tracker.reports import paper_detail, raw_record, study_detail

    with errors():
        fmt = check_format(fmt, ("table", "json"))
        settings = settings_for(db)
        engine = open_db(settings)
        is_study = record_id.strip().upper().startswith("NCT")
        if timeline and not is_study:
            raise ConfigError("--timeline is for studies (e.g. NCT01234567)")
        with engine.connect() as conn:
            if raw and is_study:
                typer.echo(to_json(raw_record(conn, record_id)))
                return
            if timeline:
                from tracker.history import timeline as study_timeline

                typer.echo(render_timeline(study_timeline(conn, record_id), fmt), nl=False)
                return
            detail = study_detail(conn, record_id,
                                  unreported_months=settings.unreported_months) \
                if is_study else paper_detail(conn, record_id)
        typer.echo(render_detail(detail, fmt), nl=False)


@app.command()
def status(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    db: DbOpt = None,
) -> None:
    """The last update and each source's runs, watermarks, errors and quarantine.

    Also the next scheduled run and the database's counts.

    Exits 1 when the last run of any enabled source failed (or its process died), for
    monitoring checks; an update still running is not a failure.
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
    wait: WaitOpt = None,
    db: DbOpt = None,
) -> None:
    """Re-label every stored study and paper from its stored record, without refetching.

    Run it after editing the rules file. Records waiting in quarantine are parsed again too,
    and stored if they now parse.
    """
    from db.migrate import ensure_schema
    from tracker.lock import update_lock
    from tracker.relabel import relabel_all

    with errors():
        settings = settings_for(db, rules=rules, lock_wait=wait)
        engine = open_db(settings, migrate=False)
        # classify writes every row: it takes the update lock like an update does.
        with update_lock(engine, wait=settings.lock_wait):
            ensure_schema(engine)
            result = relabel_all(engine, settings)
        typer.echo(result.line())


@app.command("import")
def import_file(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE_OR_DIR",
        help="ictrp (a WHO ICTRP search-portal XML export, given as FILE), or a folder "
             "written by tracker update --save-raw (then no FILE).", show_default=False)],
    path: Annotated[str | None, typer.Argument(metavar="FILE",
                                               help="The export file to read.",
                                               show_default=False)] = None,
    wait: WaitOpt = None,
    db: DbOpt = None,
) -> None:
    """Read an export file, or the pages an update saved (--save-raw), through the same
    pipeline as an update: parsed, classified, stored a page at a time, broken records
    quarantined, history kept. Importing again updates the same registrations."""
    from db.migrate import ensure_schema
    from tracker.importing import run_archive, run_import
    from tracker.lock import update_lock

    with errors():
        settings = settings_for(db, lock_wait=wait)
        if path is None and not Path(source).is_dir():
            raise ConfigError(f"{source!r} is not a folder of saved pages; to import an "
                              "export give its source and file: tracker import ictrp FILE.xml")
        engine = open_db(settings, create=True, migrate=False)
        with update_lock(engine, wait=settings.lock_wait):
            ensure_schema(engine)
            summaries = (run_archive(engine, settings, source) if path is None
                         else [run_import(engine, settings, source.strip().lower(), path)])
        for summary in summaries:
            typer.echo(summary.line())
        failed = [s for s in summaries if s.error]
        for summary in failed:
            typer.echo(f"error: {summary.error}", err=True)
        if any(s.outcome == "failed" for s in summaries):
            raise typer.Exit(1)


RegistrationArg = Annotated[str, typer.Argument(
    help="A registration: its registry id (NCT01234567, ISRCTN12345678, 2015-000590-12), or "
         "registry:id when several registries hold the id.", show_default=False)]


@app.command()
def merge(
    first: RegistrationArg,
    second: RegistrationArg,
    note: Annotated[str | None, typer.Option("--note", help="Why (kept with the decision).",
                                             show_default=False)] = None,
    wait: WaitOpt = None,
    db: DbOpt = None,
) -> None:
    """Record that two registrations are one trial (an editor's decision, kept through every
    later update and import); their trials become one."""
    from db.migrate import ensure_schema
    from db.trials import merge as merge_registrations
    from db.trials import registrations
    from tracker.lock import update_lock
    from tracker.text import one_line_text
    from tracker.words import plural

    with errors():
        settings = settings_for(db, lock_wait=wait)
        engine = open_db(settings, migrate=False)
        with update_lock(engine, wait=settings.lock_wait):
            ensure_schema(engine)
            with engine.begin() as conn:
                trial = merge_registrations(conn, first, second, note)
                regs = registrations(conn, trial)
        typer.echo(f"merged: one trial of {plural(len(regs), 'registration')}: " + ", ".join(
            one_line_text(f"{r['registry']}:{r['registry_id']}") for r in regs))


@app.command()
def unmerge(
    registration: RegistrationArg,
    note: Annotated[str | None, typer.Option("--note", help="Why (kept with the decision).",
                                             show_default=False)] = None,
    wait: WaitOpt = None,
    db: DbOpt = None,
) -> None:
    """Take a registration out of its trial (an editor's decision, kept through every later
    update and import, until a later merge)."""
    from db.migrate import ensure_schema
    from db.trials import unmerge as unmerge_registration
    from tracker.lock import update_lock
    from tracker.text import one_line_text

    with errors():
        settings = settings_for(db, lock_wait=wait)
        engine = open_db(settings, migrate=False)
        with update_lock(engine, wait=settings.lock_wait):
            ensure_schema(engine)
            with engine.begin() as conn:
                unmerge_registration(conn, registration, note)
        typer.echo(f"unmerged: {one_line_text(registration)} is a trial of its own")


@app.command()
def duplicates(
    min_score: Annotated[float, typer.Option(
        "--min-score", min=0.0, max=1.0, help="Lowest score listed (0-1).")] = 0.6,
    fmt: FormatOpt = "table",
    db: DbOpt = None,
) -> None:
    """Registrations that look like one trial but do not declare each other (similar titles,
    the same sponsor, close start dates), with a score. Never merged by themselves: merge
    the right ones with `tracker merge A B`."""
    from db.trials import suggestions
    from tracker.render import render_rows

    with errors():
        settings = settings_for(db)
        engine = open_db(settings)
        with engine.connect() as conn:
            found = suggestions(conn, min_score=min_score)
        rows = [{"first": s.a, "second": s.b, "score": s.score, "why": s.why} for s in found]
        typer.echo(render_rows(rows, fmt, ["first", "second", "score", "why"]), nl=False)


@app.command()
def evaluate(
    path: Annotated[str | None, typer.Argument(
        help="A labelled JSONL set: evaluation records, whole registry records "
             "(raw_record) or held-out label lines (default: both shipped sets, the "
             "classic-export records and the whole ClinicalTrials.gov records).",
        show_default=False)] = None,
    rules: Annotated[str | None, typer.Option(
        "--rules", help="A rules file to evaluate instead of the shipped one.",
        show_default=False)] = None,
) -> None:
    """Measure the classifier on a hand-labelled set: precision, recall, F1, phase confusion.

    Exits 1 when a figure falls below its bar.
    """
    from tracker.classify import load_rules
    from tracker.evaluation import DEFAULT_SETS, render_report
    from tracker.evaluation import evaluate as run_evaluation

    with errors():
        loaded = load_rules(rules)
        failed = False
        for i, one in enumerate([Path(path)] if path else DEFAULT_SETS):
            report = run_evaluation(one, loaded)
            typer.echo(("\n" if i else "") + render_report(report))
            failed = failed or bool(report.failures())
        if failed:
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
    """Print the effective configuration (API keys hidden) and where each value came from."""
    from tracker.config import describe_settings
    from tracker.render import to_json

    with errors():
        typer.echo(to_json(describe_settings(settings_for(db))))
