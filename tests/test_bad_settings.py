"""Bad settings and bad evaluation files, through the real ``tracker`` console script.

One row per bad input of issue 10's audit (and a few neighbours): each runs ``tracker update``
(or ``tracker evaluate``) as a separate process and must end with exit code 1, exactly one line
on stderr starting ``error:`` that names the setting and the layer it came from (the config
file's path, the environment variable, the option), no traceback, and nothing written: the
database file is not created and no file appears beside it. Good inputs that must keep working
run ``tracker config`` and check the value and where it came from.

Exit code: 1, as for every error the tracker anticipates (a bad option Typer itself rejects,
such as ``--wait abc``, stays Typer's 2). The table of cases is printed at the end of the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dbsnapshot import base_env, tracker

from tracker.config import describe_settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEAD = "http://127.0.0.1:9"  # discard port: if a bad value slipped through, fetching fails fast
KEY = "c0ffee0123456789abcdef0123456789ab"


@dataclass(frozen=True)
class Bad:
    """A bad input: how to make it and what the one error line must say.

    ``{tmp}`` and ``{cfg}`` in any string stand for the case's folder and its config file."""

    id: str
    layer: str  # "environment", "config file", "option", "evaluate"
    expect: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    config: str | bytes | None = None
    args: tuple[str, ...] = ("update",)
    mkdir: str | None = None
    evalfile: bytes | None = None
    absent: tuple[str, ...] = ()  # must not appear in the output (secrets)


def _cfg(text: str | bytes, *expect: str, id: str) -> Bad:
    return Bad(id, "config file", ("config file {cfg}", *expect), config=text)


def _env(var: str, value: str, *expect: str, id: str | None = None) -> Bad:
    return Bad(id or f"{var}={value}", "environment", (f"environment {var}", *expect),
               env={var: value})


BAD: list[Bad] = [
    # ---- the audit's list (issue 10) --------------------------------------------------------
    _env("TRACKER_TIMEOUT", "nan", "is not a finite number", "at most 3600"),
    _env("TRACKER_TIMEOUT", "inf", "is not a finite number"),
    _env("TRACKER_TIMEOUT", "0", "is not more than 0", "e.g. TRACKER_TIMEOUT=60"),
    *[_env(f"TRACKER_{s}_RATE_PER_SECOND", "nan", "is not a finite number")
      for s in ("CTGOV", "PUBMED", "EUROPEPMC")],
    _env("TRACKER_OVERLAP_DAYS", str(10**9), "is more than 3650"),
    _cfg(b'contact_email = "m\xe9@example.org"\n', "is not UTF-8", "line 1", id="config latin-1"),
    Bad("TRACKER_CONFIG=a directory", "environment",
        ("environment TRACKER_CONFIG", "is a directory", "{tmp}/confdir/config.toml"),
        env={"TRACKER_CONFIG": "{tmp}/confdir"}, mkdir="confdir"),
    _cfg("max_retries = 1.5\n", "max_retries = 1.5", "is not a whole number",
         id="toml max_retries = 1.5"),
    _cfg("db = 5\n", "db = 5", "is not a string", "in quotes", id="toml db = 5"),
    _env("TRACKER_CTGOV_URL", "http://", "has no host name"),
    _env("TRACKER_CONTACT_EMAIL", "me@example.org\r\nBcc: all@example.org",
         "control character", "U+000D", id="TRACKER_CONTACT_EMAIL with CRLF"),
    _cfg('contact_email = "me@example.org\\r\\nX-Evil: 1"\n', "contact_email =",
         "control character", id="toml contact_email with CRLF"),
    # ---- neighbours ---------------------------------------------------------------------------
    _env("TRACKER_TIMEOUT", "86400", "is more than 3600"),
    _env("TRACKER_TIMEOUT", "soon", "is not a number"),
    _env("TRACKER_MAX_RETRIES", "1.5", "is not a whole number"),
    _env("TRACKER_MAX_RETRIES", "-1", "is less than 0"),
    _env("TRACKER_LOCK_WAIT", "-5", "is less than 0"),
    _env("TRACKER_OVERLAP_DAYS", "-1", "is less than 0"),
    _env("TRACKER_UNREPORTED_MONTHS", "1e9", "is not a whole number"),
    _env("TRACKER_CTGOV_RATE_PER_SECOND", "0", "is not more than 0"),
    _env("TRACKER_CTGOV_RATE_PER_SECOND", "1e6", "is more than 100"),
    _env("TRACKER_CTGOV_PAGE_SIZE", "5000", "is more than 1000"),
    _env("TRACKER_EUROPEPMC_PAGE_SIZE", "0", "is less than 1"),
    _env("TRACKER_CTGOV_ENABLED", "maybe", "is not true or false"),
    _env("TRACKER_CTGOV_URL", "ftp://example.org/api", "http:// or https://"),
    _env("TRACKER_PUBMED_URL", "https://example.org:99999/", "is not a URL"),
    _env("TRACKER_EUROPEPMC_URL", "https://example.org/rest?x=1", "?query"),
    _env("TRACKER_CONTACT_EMAIL", "me at example.org", "contains a space"),
    _env("TRACKER_CONTACT_EMAIL", "me@localhost", "no domain"),
    _env("TRACKER_CONTACT_EMAIL", "a@b@example.org", "one @"),
    Bad("TRACKER_PUBMED_API_KEY with LF", "environment",
        ("environment TRACKER_PUBMED_API_KEY=***", "control character"),
        env={"TRACKER_PUBMED_API_KEY": KEY + "\nX: 1"}, absent=(KEY,)),
    Bad("NCBI_API_KEY with a space", "environment",
        ("environment NCBI_API_KEY=***", "contains a space"),
        env={"NCBI_API_KEY": KEY + " x"}, absent=(KEY,)),
    _env("TRACKER_RULES", "/nonexistent/rules.toml", "does not exist"),
    _env("TRACKER_CONFIG", "/nonexistent/config.toml", "does not exist"),
    _env("TRACKER_CONFIG", "/dev/null", "not a regular file"),
    _cfg("timeout = true\n", "timeout = true", "not a number", id="toml timeout = true"),
    _cfg("timeout = nan\n", "timeout = nan", "is not a finite number", id="toml timeout = nan"),
    _cfg("overlap_days = 1e9\n", "overlap_days", "is more than 3650",
         id="toml overlap_days = 1e9"),
    _cfg("overlap_days = 2.5\n", "overlap_days = 2.5", "is not a whole number",
         id="toml overlap_days = 2.5"),
    _cfg("[ctgov]\npage_size = 5000\n", "[ctgov] page_size = 5000", "is more than 1000",
         id="toml [ctgov] page_size = 5000"),
    _cfg("[pubmed]\npage_size = 20000\n", "[pubmed] page_size", "is more than 10000",
         id="toml [pubmed] page_size = 20000"),
    _cfg("[europepmc]\nmax_window = 50\n", "[europepmc] max_window", "only PubMed",
         id="toml [europepmc] max_window = 50"),
    _cfg("[ctgov]\nrate_per_second = -1\n", "[ctgov] rate_per_second", "is not more than 0",
         id="toml [ctgov] rate_per_second = -1"),
    _cfg('[ctgov]\nquery = "a\\u0000b"\n', "[ctgov] query", "U+0000",
         id="toml query with NUL"),
    _cfg('schedule = "30 2 * * *\\u001b[2J"\n', "schedule", "U+001B",
         id="toml schedule with ESC"),
    _cfg('db = ""\n', "db", "is empty", id="toml db = empty"),
    _cfg('dbb = "x.sqlite"\n', "unknown key 'dbb'", "did you mean 'db'", "valid keys:",
         id="toml unknown key"),
    _cfg("[ctgov]\nrate = 1\n", "unknown key 'rate' in [ctgov]", "rate_per_second",
         id="toml unknown key in [ctgov]"),
    _cfg('ctgov = "on"\n', "ctgov must be a table", id="toml source not a table"),
    _cfg("db = [\n", "is not valid TOML", id="toml syntax error"),
    _cfg(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not UTF-8", id="config is binary"),
    Bad("--db a directory", "option", ("option --db", "is a directory"),
        args=("update", "--db", "{tmp}/dbdir"), mkdir="dbdir"),
    Bad("--db with CR", "option", ("option --db", "U+000D"),
        args=("update", "--db", "{tmp}/x\r.sqlite")),
    Bad("--wait inf", "option", ("option --wait inf", "is not a finite number"),
        args=("update", "--wait", "inf")),
    Bad("--wait -1", "option", ("option --wait", "is less than 0"),
        args=("update", "--wait", "-1")),
    # A bad value low down is reported even when a higher layer overrides it: the nightly job
    # runs without the override.
    Bad("file bad, env overrides", "config file", ("config file {cfg}", "timeout = 0"),
        config="timeout = 0\n", env={"TRACKER_TIMEOUT": "30"}),
]

_LINE = json.dumps  # one JSON object per line


def _eval_bad(id: str, content: bytes | None, *expect: str, mkdir: bool = False) -> Bad:
    target = "{tmp}/set" if mkdir else "{tmp}/set.jsonl"
    return Bad(id, "evaluate", ("evaluation set", *expect), args=("evaluate", target),
               evalfile=content, mkdir="set" if mkdir else None)


_GOOD_ROW = (ROOT / "tracker" / "evalsets" / "msc_eval.jsonl").read_text(encoding="utf-8").split(
    "\n", 1)[0]

BAD += [
    _eval_bad("evaluate: not JSON lines", b"id,kind,labels\nNCT1,study,x\n", "line 1",
              "is not JSON"),
    _eval_bad("evaluate: a JSON array", b"[1, 2, 3]\n", "line 1", "not a JSON object"),
    _eval_bad("evaluate: binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "line 1",
              "is not UTF-8"),
    _eval_bad("evaluate: binary after a good line", (_GOOD_ROW + "\n").encode() + b"\xff\xfe\n",
              "line 2", "is not UTF-8"),
    _eval_bad("evaluate: empty", b"", "holds no records"),
    _eval_bad("evaluate: blank lines only", b"\n \n\n", "holds no records"),
    _eval_bad("evaluate: a directory", None, "is a directory", mkdir=True),
    Bad("evaluate: missing file", "evaluate", ("evaluation set not found",),
        args=("evaluate", "{tmp}/nothing.jsonl")),
    _eval_bad("evaluate: no labels", (_LINE({"id": "NCT00000001", "kind": "study"}) + "\n")
              .encode(), "line 1", "neither 'labels'"),
    _eval_bad("evaluate: bad phase label", (_GOOD_ROW.replace(
        '"phase": "EARLY_PHASE1"', '"phase": "PHASE9"') + "\n").encode(), "line 1",
        "labels.phase", "'PHASE9' is not one of"),
    _eval_bad("evaluate: conditions not a list", (_GOOD_ROW + "\n" + _GOOD_ROW.replace(
        '"NCT03765957"', '"NCT99999999"').replace('"conditions": ["Psoriasis"]',
                                                  '"conditions": 5') + "\n").encode(),
        "line 2", "conditions is not a list"),
    _eval_bad("evaluate: duplicate id", (_GOOD_ROW + "\n" + _GOOD_ROW + "\n").encode(),
              "line 2", "already on line 1"),
    _eval_bad("evaluate: held-out line, bad id", (_LINE({
        "id": "nct1", "msc_relevant": True, "condition_groups": [], "cell_sources": [],
        "origins": [], "products": []}) + "\n").encode(), "line 1", "id", "not an NCT id"),
    _eval_bad("evaluate: held-out id not in export", (_LINE({
        "id": "NCT99999999", "msc_relevant": True, "condition_groups": ["bone"],
        "cell_sources": [], "origins": [], "products": []}) + "\n").encode(), "line 1",
        "no record for NCT99999999"),
    _eval_bad("evaluate: held-out unknown field", (_LINE({
        "id": "NCT02223897", "msc_relevant": True, "condition_groups": [], "cell_sources": [],
        "origins": [], "products": [], "condition_group": ["bone"]}) + "\n").encode(),
        "line 1", "condition_group is not a field"),
]


@dataclass
class Outcome:
    id: str
    layer: str
    rc: int
    line: str


RESULTS: list[Outcome] = []


class _Table:
    """A plugin registered at the end of this module: prints the table after pytest's summary
    (like the fault table of test_faults.py)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def outcome_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    w = max(len(r.id) for r in RESULTS)
    lines = ["", "bad settings: input -> exit code, the one line on stderr",
             f"{'input':<{w}}  {'layer':<11} rc  stderr"]
    for r in RESULTS:
        shown = r.line if len(r.line) <= 110 else r.line[:107] + "..."
        lines.append(f"{r.id:<{w}}  {r.layer:<11} {r.rc:>2}  {shown}")
    ok = sum(r.rc != 0 and r.line.startswith("error:") for r in RESULTS)
    lines.append(f"{len(RESULTS)} bad inputs, {ok} refused with one line")
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("bad-settings-table"):
        plugins.register(_Table(lines), "bad-settings-table")


def _isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No TRACKER_ variable from outside, no user config file, sources on a dead port."""
    return base_env(XDG_CONFIG_HOME=str(tmp / "xdg-config"), XDG_DATA_HOME=str(tmp / "xdg-data"),
                    TRACKER_DB=str(tmp / "t.sqlite"), TRACKER_MAX_RETRIES="0",
                    TRACKER_TIMEOUT="2", TRACKER_CTGOV_URL=DEAD, TRACKER_PUBMED_URL=DEAD,
                    TRACKER_EUROPEPMC_URL=DEAD, TRACKER_ISRCTN_URL=DEAD, TRACKER_EUCTR_URL=DEAD,
                    TRACKER_CTIS_URL=DEAD, **extra)


def _files(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


@dataclass
class Run:
    tmp: Path
    before: set[str]
    rc: int
    stdout: str
    stderr: str

    def fill(self, text: str) -> str:
        return text.replace("{tmp}", str(self.tmp)).replace("{cfg}", str(self.tmp / "config.toml"))


def _run_bad(case: Bad, tmp: Path) -> Run:
    cfg = tmp / "config.toml"
    run = Run(tmp, set(), 0, "", "")
    if case.mkdir:
        (tmp / case.mkdir).mkdir()
    extra = {k: run.fill(v) for k, v in case.env.items()}
    if case.config is not None:
        cfg.write_bytes(case.config if isinstance(case.config, bytes) else case.config.encode())
        extra.setdefault("TRACKER_CONFIG", str(cfg))
    if case.evalfile is not None:
        (tmp / "set.jsonl").write_bytes(case.evalfile)
    env = _isolated_env(tmp)
    env.update(extra)
    run.before = _files(tmp)
    res = tracker([run.fill(a) for a in case.args], env, timeout=60)
    run.rc, run.stdout, run.stderr = res.returncode, res.stdout, res.stderr
    return run


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every bad case, run up front a few at a time (each is a separate process)."""
    from concurrent.futures import ThreadPoolExecutor

    dirs = [tmp_path_factory.mktemp("bad") for _ in BAD]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(_run_bad, BAD, dirs))
    return {case.id: run for case, run in zip(BAD, runs, strict=True)}


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_is_one_line_and_writes_nothing(case: Bad, bad_runs: dict[str, Run]) -> None:
    run = bad_runs[case.id]
    lines = run.stderr.strip().splitlines()
    shown = (lines[0] if lines else "").replace(str(run.tmp), "$TMP")
    RESULTS.append(Outcome(case.id, case.layer, run.rc, shown))
    assert run.rc == 1, (run.rc, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for part in case.expect:
        assert run.fill(part) in lines[0], (part, lines[0])
    for secret in case.absent:
        assert secret not in run.stderr and secret not in run.stdout
    assert run.stdout == ""
    assert not (run.tmp / "t.sqlite").exists(), "the database was created"
    assert _files(run.tmp) == run.before, "a file was written"


def test_a_bad_setting_leaves_an_existing_database_unchanged(tmp_path: Path) -> None:
    from db.engine import make_engine
    from db.migrate import upgrade

    db = tmp_path / "t.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    before = db.read_bytes()
    env = _isolated_env(tmp_path, TRACKER_OVERLAP_DAYS=str(10**9))
    for args in (["update"], ["classify"], ["status"], ["db", "upgrade"]):
        res = tracker(args, env, timeout=60)
        assert res.returncode == 1 and "environment TRACKER_OVERLAP_DAYS" in res.stderr, args
    assert db.read_bytes() == before


# ------------------------------------------------------------------ good inputs -----------


@dataclass(frozen=True)
class Good:
    id: str
    key: str  # a key of `tracker config` ("timeout", "ctgov.enabled")
    value: Any
    origin: str
    env: dict[str, str] = field(default_factory=dict)
    config: str | bytes | None = None
    args: tuple[str, ...] = ()


GOOD = [
    Good("TRACKER_MAX_RETRIES=3", "max_retries", 3, "environment TRACKER_MAX_RETRIES",
         env={"TRACKER_MAX_RETRIES": "3"}),
    Good("TRACKER_TIMEOUT=30.5", "timeout", 30.5, "environment TRACKER_TIMEOUT",
         env={"TRACKER_TIMEOUT": "30.5"}),
    Good("TRACKER_TIMEOUT=3600 (the bound)", "timeout", 3600.0, "environment TRACKER_TIMEOUT",
         env={"TRACKER_TIMEOUT": "3600"}),
    Good("TRACKER_OVERLAP_DAYS=3650 (the bound)", "overlap_days", 3650,
         "environment TRACKER_OVERLAP_DAYS", env={"TRACKER_OVERLAP_DAYS": "3650"}),
    Good("TRACKER_CTGOV_ENABLED=false", "ctgov.enabled", False,
         "environment TRACKER_CTGOV_ENABLED", env={"TRACKER_CTGOV_ENABLED": "false"}),
    Good("TRACKER_EUROPEPMC_ENABLED=off", "europepmc.enabled", False,
         "environment TRACKER_EUROPEPMC_ENABLED", env={"TRACKER_EUROPEPMC_ENABLED": "off"}),
    Good("toml max_retries = 2", "max_retries", 2, "config file {cfg}",
         config="max_retries = 2\n"),
    Good("toml timeout = 30 (an int for a float)", "timeout", 30.0, "config file {cfg}",
         config="timeout = 30\n"),
    Good("toml multi-line query", "ctgov.query", '"mesenchymal stem" OR "MSC"',
         "config file {cfg}", config="[ctgov]\nquery = '''\n  \"mesenchymal stem\"\n"
         "  OR \"MSC\"\n'''\n"),
    Good("toml with a UTF-8 BOM", "overlap_days", 7, "config file {cfg}",
         config="\ufeffoverlap_days = 7\n".encode()),
    Good("toml [pubmed] page_size = 10000", "pubmed.page_size", 10000, "config file {cfg}",
         config="[pubmed]\npage_size = 10000\n"),
    Good("NCBI_API_KEY", "pubmed_api_key", "***", "environment NCBI_API_KEY",
         env={"NCBI_API_KEY": KEY}),
    Good("http:// mirror with a port", "ctgov.url", "http://mirror.example.org:8080/api/v2",
         "environment TRACKER_CTGOV_URL",
         env={"TRACKER_CTGOV_URL": "http://mirror.example.org:8080/api/v2"}),
    Good("--db an SQLite URL", "db", "sqlite:///{tmp}/x.sqlite", "option --db",
         args=("--db", "sqlite:///{tmp}/x.sqlite")),
    Good("env overrides file", "timeout", 30.0, "environment TRACKER_TIMEOUT",
         env={"TRACKER_TIMEOUT": "30"}, config="timeout = 45\n"),
]


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_good_input_still_works(case: Good, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{cfg}", str(cfg))

    env = base_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), **case.env)
    if case.config is not None:
        cfg.write_bytes(case.config if isinstance(case.config, bytes) else case.config.encode())
        env["TRACKER_CONFIG"] = str(cfg)
    res = tracker(["config", *[fill(a) for a in case.args]], env, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    out = json.loads(res.stdout)
    name, dot, sub = case.key.partition(".")
    value = out["sources"][name][sub] if dot else out[name]
    expected = fill(case.value) if isinstance(case.value, str) else case.value
    assert value == expected
    assert KEY not in res.stdout
    # Where the value came from: printed by `tracker config` once it shows describe_settings;
    # the same function, on the same environment, in any case.
    origins = out.get("from") or describe_settings(
        load_settings({"db": fill(case.args[1]) if case.args else None}, env=env))["from"]
    assert origins[case.key] == fill(case.origin)


def test_evaluate_reads_the_held_out_labels_it_wrote() -> None:
    heldout = ROOT / "tests" / "eval" / "heldout" / "heldout_labels.jsonl"
    res = tracker(["evaluate", str(heldout)], base_env(), timeout=120)
    # Exit 1 is a figure below its bar (the held-out set is harder), not a refusal.
    assert res.returncode in (0, 1) and res.stderr == "", res.stderr
    assert "Records: 60 (54 MSC-relevant by hand label)" in res.stdout
    assert "phase_accuracy" in res.stdout and "not scored (no phase labels)" in res.stdout


def test_held_out_records_are_read_as_the_eval_builder_reads_them() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    try:
        from build_eval_set import csv_records
    finally:
        sys.path.pop(0)
    from tracker.evaluation import heldout_records

    ids = set((ROOT / "tests" / "eval" / "heldout" / "selected_ids.txt").read_text().split())
    built = {r["id"]: r for r in csv_records(ROOT / "tests" / "fixtures", ids)}
    assert heldout_records(ids) == built and len(built) == 60
