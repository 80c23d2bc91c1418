"""Fault injection, end to end: for each source and each fault the replay server can inject,
the real ``tracker update`` (the installed console script, a separate process) either completes
after retries with the database equal to the fault-free run's, or exits 1 with one line naming
the source and the fault, the watermark unchanged and nothing stored lost; the next fault-free
run then ends equal to the fault-free database.

Every source is read in several pages and faults hit a middle page (``on_request=2``; PubMed:
the second efetch), so "nothing stored lost" covers pages committed earlier in the same run. A
failing fault is also replayed against a copy of the fault-free database with ``--full`` (the
watermark exists and every record is stored), where nothing may change at all.

Record-level faults (CT.gov: an unknown enum value, a missing module, a field of the wrong
type; Europe PMC: a field of the wrong type; PubMed: an undeclared entity) do not fail a run:
their expected database is the baseline with that one record altered or quarantined, stated
exactly.

Issue 10's rows: a page repeating a record in place of another (distinct ids fall short of the
announced total), endless paging (empty pages or the same page, each with a fresh token or
cursor), a server that trickles its answer (only the overall deadline of a request ends it, and
the run ends within a bound), wrong-typed fields, an undeclared entity (``tracker classify``
reads the stored record again), and ``--since`` after today (no request is sent).

Issue 13's rows: ISRCTN, EU CTR and EU CTIS under every transient and persistent fault, an
HTML page where XML or JSON belongs (EU CTR: a changed layout), a total one more than the
records sent, CTIS's page-0 trap (a page answered with nothing after a total was announced)
and ``--since`` after today. (The ICTRP import's bad files are tests/test_import.py's, the EU
CTR 7-day feed's tests/test_e2e_euctr.py's: neither is a first fetch.)

At the end the module prints a table: source x fault, outcome, records lost (must be 0).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import FAULT_TABLE, ctgov_studies
from dbsnapshot import base_env, diff, lost, runs, snapshot, state, tracker, write_config
from replay_server import (
    ReplayServer,
    clone_isrctn_trial,
    fixture_dir,
    load_europepmc_results,
    load_isrctn_trials,
    load_pubmed_articles,
)

# 11 studies, 9 articles, 25 results, 20 ISRCTN trials (windows split to 8)
# EU CTR (24 trials: 20 a page, the register's size) and CTIS (3 crafted trials, pages of 2)
PAGE_SIZE = {"ctgov": 4, "pubmed": 3, "europepmc": 8, "isrctn": 8, "euctr": 20, "ctis": 2}
ISRCTN_TRIALS = 20
TIMEOUT = 0.6  # client read timeout (s); the server's "timeout" fault sleeps TIMEOUT_SLEEP
# Cases that do not test timing read with a timeout no busy machine reaches: with 0.6 s, a
# loaded machine once timed out a healthy page, and the retry took the fault's place.
CALM_TIMEOUT = 20.0
TIMED_KINDS = frozenset({"timeout", "trickle"})
TIMEOUT_SLEEP = 1.5
MAX_RETRIES = 3
# "trickle": a chunk every TRICKLE_INTERVAL s, well inside the read timeout, for at most
# TRICKLE_FOR s; the client's overall deadline per request is DEADLINE (tracker.http).
TRICKLE_INTERVAL = 0.2
TRICKLE_FOR = 25.0
DEADLINE = TIMEOUT * 5.0
# A run that meets a trickling server on every try ends within this bound: each try is cut at
# the deadline (plus at most one read timeout); backoff is capped at 0.2 s (the config below);
# 15 s for the process to start and migrate on a busy machine. Without the deadline each try
# would last TRICKLE_FOR: (MAX_RETRIES + 1) * TRICKLE_FOR = 100 s.
TRICKLE_BOUND = (MAX_RETRIES + 1) * (DEADLINE + TIMEOUT + 0.2) + 15.0


def _euctr_trials() -> list[Any]:
    from test_e2e_euctr import trials  # the recorded protocols, cloned (see that module)

    return trials()


def _ctis_trials() -> list[Any]:
    from test_e2e_ctis import trials  # the crafted CTIS fixtures (see that module)

    return trials()


def server_data() -> dict[str, Any]:
    return {
        "ctgov_studies": ctgov_studies(),
        "pubmed_articles": load_pubmed_articles(fixture_dir("pubmed")),
        "europepmc_results": load_europepmc_results(
            fixture_dir("europepmc") / "search_cancer_core.json"),
        "euctr_trials": _euctr_trials(),
        "ctis_trials": _ctis_trials(),
        # the recorded trials cloned under new numbers, one lastUpdated day apart
        "isrctn_trials": [clone_isrctn_trial(
            real, 91000000 + i, (dt.date.today() - dt.timedelta(days=ISRCTN_TRIALS - i))
            .isoformat()) for i, real in enumerate(
                load_isrctn_trials(fixture_dir("isrctn")) * 4) if i < ISRCTN_TRIALS],
    }


def make_env(srv: ReplayServer, db: Path, cfg: Path,
             timeout: float = CALM_TIMEOUT) -> dict[str, str]:
    env = {
        "TRACKER_DB": str(db),
        "TRACKER_CONFIG": str(cfg),
        "TRACKER_TIMEOUT": str(timeout),
        "TRACKER_MAX_RETRIES": str(MAX_RETRIES),
        "TRACKER_CONTACT_EMAIL": "tracker-tests@example.org",
        "TRACKER_CTGOV_URL": srv.ctgov_url,
        "TRACKER_PUBMED_URL": srv.pubmed_url,
        "TRACKER_EUROPEPMC_URL": srv.europepmc_url,
        "TRACKER_ISRCTN_URL": srv.isrctn_url,
        "TRACKER_ISRCTN_ENABLED": "true",
        "TRACKER_EUCTR_URL": srv.euctr_url,
        "TRACKER_EUCTR_ENABLED": "true",
        "TRACKER_CTIS_URL": srv.ctis_url,
        "TRACKER_CTIS_ENABLED": "true",
    }
    for src, size in PAGE_SIZE.items():
        env[f"TRACKER_{src.upper()}_PAGE_SIZE"] = str(size)
        env[f"TRACKER_{src.upper()}_RATE_PER_SECOND"] = "100"
    return base_env(**env)


# ------------------------------------------------------------------ cases ----------------

RECOVER, FAIL, RECORD = "recover", "fail", "record"
TRANSIENT = ("429", "500", "502", "503", "timeout", "reset", "truncated", "trickle")
# Not a server fault: the case is in the command line (``Case.args``); the server answers
# normally and must not even be asked.
NO_SERVER_FAULT = ("since_future",)


@dataclass(frozen=True)
class Case:
    source: str
    kind: str
    expect: str  # recover | fail | record
    message: str = ""  # regex the one error line must match (after "error: ")
    on_request: int = 2
    times: int = 1
    retry_after: int | None = None
    path: str | None = None
    module: str | None = None
    label: str = ""
    min_kept: int = 0  # records the failing run must have committed before the fault
    again_full: bool = True  # RECORD cases: is the follow-up run a --full one?
    args: tuple[str, ...] = ()  # extra `tracker update` arguments of the faulty run

    @property
    def id(self) -> str:
        return f"{self.source}-{self.label or self.kind}"

    @property
    def server_fault(self) -> bool:
        return self.kind not in NO_SERVER_FAULT

    def add_to(self, srv: ReplayServer) -> None:
        if not self.server_fault:
            return
        kw: dict[str, Any] = {"on_request": self.on_request, "times": self.times}
        if self.retry_after is not None:
            kw["retry_after"] = self.retry_after
        if self.path:
            kw["path"] = self.path
        if self.module:
            kw["module"] = self.module
        srv.add_fault(self.source, self.kind, **kw)


def _transient(source: str, **kw: Any) -> list[Case]:
    out = [Case(source, k, RECOVER, **kw) for k in TRANSIENT]
    out.append(Case(source, "429", RECOVER, retry_after=1, label="429+retry-after", **kw))
    return out


PERSISTENT = {  # fault kind -> what the one error line must say
    "503": r"HTTP 503 .*throttling",
    "429": r"HTTP 429 .*throttling",
    "500": r"HTTP 500 ",
    "timeout": r"timed out reading",
    "reset": r"network error .*(ReadError|RemoteProtocolError)",
    # The deadline ends each try; on a loaded machine the server's 0.2 s gaps can stretch past
    # the 0.6 s read timeout first, which ends the try as a plain read timeout: both are the
    # bound holding (the row also checks the run's time against TRICKLE_BOUND).
    "trickle": r"timed out reading .*(after the 3 s deadline of one request|\(ReadTimeout\))",
}


def _persistent(source: str, kinds: tuple[str, ...] = ("503", "timeout"), **kw: Any) -> list[Case]:
    """The fault on every request: the retry budget runs out and the run fails."""
    return [Case(source, k, FAIL, rf"^{source}: {PERSISTENT[k]}", times=50,
                 label=f"{k}-persistent", **kw) for k in kinds]


EFETCH2 = {"path": "efetch.fcgi", "on_request": 2}  # PubMed: the second of three efetch pages
REPEATED = r"; nothing is lost, the next run repeats this window$"
ENDLESS = r"the API still sent a next page, where the {} records announced fill {} \({} allowed\)"


def _since_future(source: str) -> Case:
    """``tracker update --since 2099-01-01``: a window that starts after it ends."""
    return Case(source, "since_future", FAIL,
                rf"^{source}: the window starts 2099-01-01, after its end \d{{4}}-\d\d-\d\d "
                r"\(today\); nothing to fetch and the watermark stays",
                args=("--since", "2099-01-01"))


def _wrong_type(source: str, spec: str, **kw: Any) -> Case:
    short = spec.removeprefix("protocolSection.")
    return Case(source, "wrong_type", RECORD, module=spec, label=f"wrong_type-{short}", **kw)


CASES: list[Case] = [
    # ---- ClinicalTrials.gov: 11 studies, 3 pages of 4
    *_transient("ctgov"),
    *_persistent("ctgov", tuple(PERSISTENT), min_kept=4),
    Case("ctgov", "invalid_json", FAIL, r"^ctgov: response is not JSON", min_kept=4),
    Case("ctgov", "html_200", FAIL, r"^ctgov: response is not JSON.*'<", min_kept=4),
    Case("ctgov", "empty_page", RECOVER),
    Case("ctgov", "bad_token", FAIL, r"^ctgov: HTTP 400 .*token", min_kept=4),
    Case("ctgov", "count_mismatch", FAIL, r"^ctgov: the API announced 16 records but sent 11",
         on_request=1, min_kept=11),
    Case("ctgov", "unknown_enum", RECORD),
    Case("ctgov", "no_title", RECORD, again_full=False),
    Case("ctgov", "missing_module", RECORD, module="statusModule",
         label="missing_module-statusModule"),
    Case("ctgov", "missing_module", RECORD, module="designModule",
         label="missing_module-designModule"),
    Case("ctgov", "missing_module", RECORD, module="identificationModule",
         label="missing_module-identificationModule"),
    Case("ctgov", "repeat_record", FAIL,
         r"^ctgov: the API announced 11 records but sent 10 distinct: 1 repeated "
         r"\(NCT\d{8}\) in place of others" + REPEATED, min_kept=10),
    Case("ctgov", "empty_page", FAIL,
         r"^ctgov: paging did not end: after 5 pages of 4 \(4 of them empty\) "
         + ENDLESS.format(11, 3, 5), times=50, label="empty_page-endless", min_kept=4),
    _wrong_type("ctgov", "protocolSection.statusModule:str"),
    _wrong_type("ctgov", "protocolSection.designModule:list"),
    _wrong_type("ctgov", "protocolSection.armsInterventionsModule:str"),
    _wrong_type("ctgov", "protocolSection.statusModule.startDateStruct.date:int"),
    _wrong_type("ctgov", "protocolSection.designModule.enrollmentInfo.type:list"),
    _since_future("ctgov"),
    # ---- PubMed: esearch + 3 efetch pages of 3 (faults on the second efetch unless said)
    *_transient("pubmed", **EFETCH2),
    Case("pubmed", "503", RECOVER, on_request=1, path="esearch.fcgi", label="503-esearch"),
    *_persistent("pubmed", min_kept=3, **EFETCH2),
    Case("pubmed", "bad_record", RECORD, again_full=False, **EFETCH2),
    Case("pubmed", "invalid_xml", FAIL, r"^pubmed: .*(XML|xml)", min_kept=3, **EFETCH2),
    Case("pubmed", "invalid_json", FAIL, r"^pubmed: esearch .*JSON", on_request=1,
         path="esearch.fcgi", label="invalid_json-esearch"),
    Case("pubmed", "html_200", FAIL, r"^pubmed: .*(XML|xml|HTML|html)", min_kept=3, **EFETCH2),
    Case("pubmed", "html_200", FAIL, r"^pubmed: esearch .*(JSON|HTML|html)", on_request=1,
         path="esearch.fcgi", label="html_200-esearch"),
    Case("pubmed", "empty_page", FAIL, r"^pubmed: the API announced 9 records but sent 6",
         min_kept=3, **EFETCH2),
    Case("pubmed", "empty_page", RECOVER, on_request=1, path="esearch.fcgi",
         label="empty_page-esearch"),
    Case("pubmed", "eutils_error", FAIL, r"^pubmed: esearch error: Search Backend failed",
         on_request=1, path="esearch.fcgi", label="eutils_error-esearch"),
    Case("pubmed", "eutils_error", FAIL, r"^pubmed: efetch error", min_kept=3, **EFETCH2),
    Case("pubmed", "count_mismatch", FAIL, r"^pubmed: the API announced 14 records but sent 9",
         on_request=1, path="esearch.fcgi", min_kept=9, label="count_mismatch-esearch"),
    Case("pubmed", "count_mismatch", FAIL, r"^pubmed: the API announced 9 records but sent 8",
         min_kept=8, **EFETCH2),
    Case("pubmed", "repeat_record", FAIL,
         r"^pubmed: the API announced 9 records but sent 8 distinct: 1 repeated \(\d+\) in "
         r"place of others" + REPEATED, min_kept=8, **EFETCH2),
    Case("pubmed", "undeclared_entity", RECORD, **EFETCH2),
    _since_future("pubmed"),
    # ---- Europe PMC: 25 results, pages of 8
    *_transient("europepmc"),
    *_persistent("europepmc", min_kept=8),
    Case("europepmc", "invalid_json", FAIL, r"^europepmc: search body is not JSON", min_kept=8),
    Case("europepmc", "html_200", FAIL, r"^europepmc: search body is not JSON.*'<", min_kept=8),
    # An empty page ends the cursor chain for the client (API_NOTES 3.5), so the shortfall
    # against hitCount fails the window; the next run repeats it.
    Case("europepmc", "empty_page", FAIL, r"^europepmc: the API announced 25 records but sent 8",
         min_kept=8),
    Case("europepmc", "count_mismatch", FAIL,
         r"^europepmc: the API announced 30 records but sent 25", on_request=1, min_kept=25),
    Case("europepmc", "repeat_record", FAIL,
         r"^europepmc: the API announced 25 records but sent 24 distinct: 1 repeated "
         r"\(MED:\d+\) in place of others" + REPEATED, min_kept=24),
    Case("europepmc", "same_page", FAIL,
         r"^europepmc: paging did not end: after 6 pages of 8 " + ENDLESS.format(25, 4, 6),
         times=50, label="same_page-endless", min_kept=8),
    _wrong_type("europepmc", "title:int"),
    _wrong_type("europepmc", "firstPublicationDate:int"),
    _wrong_type("europepmc", "abstractText:list"),
    _wrong_type("europepmc", "id:list"),
    _since_future("europepmc"),
    # ---- ISRCTN: 20 trials, lastEdited windows split to 8 (no paging; counts, then fetches)
    *_transient("isrctn"),
    *_persistent("isrctn"),
    Case("isrctn", "invalid_xml", FAIL, r"^isrctn: .*not well-formed XML"),
    Case("isrctn", "html_200", FAIL, r"^isrctn: response is <html>, not the <allTrials> list"),
    # a window whose totalCount is one more than the trials sent (the last window's fetch)
    Case("isrctn", "count_mismatch", FAIL, r"^isrctn: .*announced", on_request=1, times=50),
    _since_future("isrctn"),
    # ---- EU CTR: 24 trials, search pages of 20, one protocol text per member state
    *_transient("euctr"),
    *_persistent("euctr"),
    Case("euctr", "html_200", FAIL, r"^euctr: .*layout", on_request=1),
    Case("euctr", "count_mismatch", FAIL, r"^euctr: the API announced 25 records but sent 24",
         on_request=1),
    _since_future("euctr"),
    # ---- EU CTIS: 3 trials (crafted), search pages of 2, then one retrieve each
    *_transient("ctis"),
    *_persistent("ctis"),
    Case("ctis", "invalid_json", FAIL, r"^ctis: .*is not JSON", on_request=1),
    Case("ctis", "html_200", FAIL, r"^ctis: .*is not JSON.*'<", on_request=1),
    Case("ctis", "count_mismatch", FAIL, r"^ctis: .*announced 4", on_request=1, times=10),
    # the second search page answered as a page 0 is: nothing, after 3 were announced
    Case("ctis", "page0_trap", FAIL, r"^ctis: .*page 0", on_request=2),
    _since_future("ctis"),
]

# ------------------------------------------------------------------ results table ---------


@dataclass
class Row:
    source: str
    fault: str
    outcome: str
    lost: int | None = None
    notes: list[str] = field(default_factory=list)


RESULTS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def results_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print source x fault, outcome, records lost at the end of the module."""
    yield
    if not RESULTS:
        return
    w = max(len(r.fault) for r in RESULTS)
    lines = ["", "fault injection: source x fault -> outcome, records lost",
             f"{'source':<10} {'fault':<{w}} {'lost':>4}  outcome"]
    for r in sorted(RESULTS, key=lambda r: (r.source, r.fault)):
        lost_txt = "?" if r.lost is None else str(r.lost)
        lines.append(f"{r.source:<10} {r.fault:<{w}} {lost_txt:>4}  {r.outcome}")
    total = sum(r.lost or 0 for r in RESULTS)
    unknown = sum(r.lost is None for r in RESULTS)
    lines.append(f"{len(RESULTS)} cases, records lost in total: {total}"
                 + (f" ({unknown} cases did not get that far)" if unknown else ""))
    # Printed by conftest.pytest_terminal_summary, after pytest's own summary.
    request.config.stash[FAULT_TABLE] = lines


# ------------------------------------------------------------------ baseline --------------


@dataclass
class Baseline:
    db: Path
    snap: dict[str, Any]
    requests: int
    state: dict[str, Any]


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Baseline]:
    """The fault-free run of each source into its own database, once per module."""
    root = tmp_path_factory.mktemp("baseline")
    cfg = write_config(root / "config.toml", backoff_cap=0.2)
    out = {}
    with replay_server() as srv:
        for src in PAGE_SIZE:
            db = root / f"{src}.sqlite"
            srv.requests.clear()
            res = tracker(["update", "--source", src], make_env(srv, db, cfg))
            assert res.returncode == 0, res.stderr
            assert res.stderr == "", res.stderr
            snap = snapshot(db)
            st = state(db, src)
            assert st and st["watermark"]
            assert not srv.errors, srv.errors
            out[src] = Baseline(db, snap, len(srv.requests_for(src)), st)
    # The fixtures give several pages per source, and nothing is quarantined.
    assert len(out["ctgov"].snap["studies"]) == 11 and out["ctgov"].requests == 3
    assert len(out["pubmed"].snap["publications"]) == 9 and out["pubmed"].requests == 4
    assert len(out["europepmc"].snap["publications"]) == 25 and out["europepmc"].requests == 4
    assert all(not b.snap["quarantine"] for b in out.values())
    return out


def replay_server() -> ReplayServer:
    return ReplayServer(**server_data(), timeout_sleep=TIMEOUT_SLEEP,
                        trickle_interval=TRICKLE_INTERVAL, trickle_for=TRICKLE_FOR)


def copy_db(src: Path, dst: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(src) + suffix)
        if p.exists():
            shutil.copy(p, str(dst) + suffix)
    return dst


def error_line(stderr: str, source: str) -> str:
    """The one ``error: <source>: ...`` line of stderr; return what follows ``error: ``.

    That stderr holds nothing else is checked separately (``noise``), at the end of the test,
    so that the database checks still run when it fails.
    """
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line:\n{stderr}"
    assert errors[0].startswith(f"error: {source}: "), errors[0]
    return errors[0][len("error: "):]


def noise(stderr: str) -> list[str]:
    """Lines of stderr other than the ``error:`` lines (log records, tracebacks)."""
    return [line[:160] for line in stderr.splitlines() if not line.startswith("error:")]


def without(snap: dict[str, Any], study: str) -> dict[str, Any]:
    out = {**snap, "studies": {k: v for k, v in snap["studies"].items() if k != study}}
    out["labels"] = [lab for lab in snap["labels"] if lab[1] != study]
    return out


# ------------------------------------------------------------------ running -------------
# Each case runs 1-3 separate `tracker update` processes; the cases are independent (own server,
# own database), so they run in a thread pool first and each test then checks its facts.

WORKERS = 4


def _proc(res: Any) -> dict[str, Any]:
    return {"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}


def execute(case: Case, base: Baseline, tmp: Path) -> dict[str, Any]:
    """Run one case's processes and collect what happened (no assertions here)."""
    src = case.source
    f: dict[str, Any] = {}
    cfg = write_config(tmp / "config.toml", backoff_cap=0.2)
    db = tmp / "fault.sqlite"
    with replay_server() as srv:
        env = make_env(srv, db, cfg, TIMEOUT if case.kind in TIMED_KINDS else CALM_TIMEOUT)
        case.add_to(srv)
        started = time.monotonic()
        f["run"] = _proc(tracker(["update", "--source", src, *case.args], env))
        f["seconds"] = time.monotonic() - started
        f["asked"] = len(srv.requests_for(src))
        f["fired"] = [r for r in srv.requests_for(src) if r.fault]
        f["last"] = runs(db, src)[-1] if db.exists() else None
        f["state"] = state(db, src)
        f["snap"] = snapshot(db)
        srv.reset_faults()
        if case.expect == FAIL:
            # The next fault-free run.
            f["again"] = _proc(tracker(["update", "--source", src], env))
            f["again_snap"] = snapshot(db)
            f["again_last"] = runs(db, src)[-1]
            # The same fault against a copy of the fault-free database, with --full (or with
            # the case's own arguments, when the case is in them).
            seeded = copy_db(base.db, tmp / "seeded.sqlite")
            case.add_to(srv)
            f["seeded"] = _proc(tracker(["update", "--source", src, *(case.args or ["--full"])],
                                        {**env, "TRACKER_DB": str(seeded)}))
            f["seeded_state"] = state(seeded, src)
            f["seeded_snap"] = snapshot(seeded)
        elif case.expect == RECORD:
            if case.kind == "undeclared_entity":
                # classify reads every stored record again from its stored bytes.
                f["classify"] = _proc(tracker(["classify"], env))
            full = ["--full"] if case.again_full else []
            f["again"] = _proc(tracker(["update", "--source", src, *full], env))
            f["again_snap"] = snapshot(db)
            # Requests for records by id: efetch with an id list, or one CT.gov study.
            f["again_requests"] = [r.get("id") or r.path.rsplit("/", 1)[-1]
                                   for r in srv.requests_for(src)
                                   if (r.path.endswith("efetch.fcgi") and r.get("id"))
                                   or "/studies/NCT" in r.path]
        f["server_errors"] = list(srv.errors)
    return f


@pytest.fixture(scope="module")
def facts(request: pytest.FixtureRequest, baselines: dict[str, Baseline],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every selected case, run in parallel; case id -> facts (or the exception it raised)."""
    chosen = [item.callspec.params["case"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")
              and "case" in item.callspec.params]
    root = tmp_path_factory.mktemp("faults")

    def one(i_case: tuple[int, Case]) -> tuple[str, Any]:
        i, case = i_case
        tmp = root / f"{i:02d}-{case.id}"
        tmp.mkdir()
        try:
            return case.id, execute(case, baselines[case.source], tmp)
        except Exception as exc:  # noqa: BLE001 - any harness error is reported by its own test
            return case.id, exc

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(pool.map(one, enumerate(chosen)))


# ------------------------------------------------------------------ the test --------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fault(case: Case, baselines: dict[str, Baseline], facts: dict[str, Any]) -> None:
    src = case.source
    base = baselines[src]
    row = Row(src, case.label or case.kind, "?")
    RESULTS.append(row)
    f = facts[case.id]
    if isinstance(f, Exception):
        row.outcome = f"harness error: {f!r}"[:90]
        raise f
    res, snap, last = f["run"], f["snap"], f["last"]
    if case.expect != FAIL:  # a failed run simply has not fetched the rest yet
        row.lost = len(lost(base.snap, snap))
    if case.server_fault:
        assert f["fired"], f"the {case.kind} fault never fired"
    else:
        assert f["asked"] == 0, f"{f['asked']} requests sent for {case.args}"
    assert not f["server_errors"], f["server_errors"]
    if case.kind == "trickle":  # the overall deadline, not the trickle, ends each try
        assert f["seconds"] < TRICKLE_BOUND, (f["seconds"], TRICKLE_BOUND)

    if case.expect == RECOVER:
        row.outcome = f"exit {res['rc']}"
        assert res["rc"] == 0, res["stderr"]
        assert not [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")]
        assert snap == base.snap, diff(base.snap, snap)
        assert last["outcome"] == "ok" and last["error"] is None
        assert f["state"]["watermark"] == base.state["watermark"]
        if case.kind in TRANSIENT:
            assert last["retries"] == len(f["fired"]) == case.times, (last, len(f["fired"]))
            row.outcome = f"recovered after {last['retries']} retry, exit 0"
            if case.kind == "trickle":
                row.outcome += f" in {f['seconds']:.1f} s (bound {TRICKLE_BOUND:.0f} s)"
        else:
            row.outcome = "completed, exit 0"

    elif case.expect == FAIL:
        row.outcome = f"exit {res['rc']}"
        assert res["rc"] == 1, (res["stdout"], res["stderr"])
        message = error_line(res["stderr"], src)
        row.outcome = f"exit 1: {message[:60]}"
        assert re.search(case.message, message), message
        assert res["stdout"].startswith(f"{src}: FAILED, kept "), res["stdout"]
        # The run log tells the truth; no watermark (the first run failed).
        assert last["outcome"] == "failed" and last["error"].splitlines()[0] == message
        assert f["state"] is None
        # Pages committed before the fault are kept, each exactly as the baseline has it.
        part = "studies" if src == "ctgov" else "publications"
        assert len(snap[part]) >= case.min_kept, (len(snap[part]), case.min_kept)
        assert all(base.snap[part].get(k) == v for k, v in snap[part].items()), \
            diff({**base.snap, part: {k: base.snap[part].get(k) for k in snap[part]}}, snap)
        # The next fault-free run ends equal to the fault-free database.
        row.lost = len(lost(base.snap, f["again_snap"]))
        again = f["again"]
        assert again["rc"] == 0 and again["stderr"] == "", again["stderr"]
        assert f["again_snap"] == base.snap, diff(base.snap, f["again_snap"])
        assert f["again_last"]["outcome"] == "ok"
        # Against a stored database with a watermark: --full with the same fault fails the
        # same way; the watermark and every stored record stay as they were.
        seeded = f["seeded"]
        assert seeded["rc"] == 1, seeded["stderr"]
        assert re.search(case.message, error_line(seeded["stderr"], src))
        assert f["seeded_state"] == base.state
        row.lost = max(row.lost, len(lost(base.snap, f["seeded_snap"])))
        assert f["seeded_snap"] == base.snap, diff(base.snap, f["seeded_snap"])
        row.outcome = f"exit 1, then recovered: {message[:60]}"
        if case.kind == "trickle":
            row.outcome = (f"exit 1 in {f['seconds']:.1f} s (bound {TRICKLE_BOUND:.0f} s), then "
                           f"recovered: {message[:40]}")
        # The requirement: a ONE-line message. Anything else on stderr breaks it.
        extra = noise(res["stderr"])
        if extra:
            row.outcome += f" [+{len(extra)} more stderr lines]"
        assert "\n" not in last["error"], f"the error message spans lines: {last['error']!r}"
        assert not extra, f"stderr holds more than the one error line: {extra}"

    else:
        _record_fault(case, f, base, row)


def _pubmed_record_fault(f: dict[str, Any], base: Baseline, row: Row) -> None:
    """One PubMed record that is not well-formed: quarantined alone, the page kept."""
    res, snap, last = f["run"], f["snap"], f["last"]
    row.outcome = f"exit {res['rc']}"
    assert res["rc"] == 0, res["stderr"]
    assert not [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")]
    assert last["outcome"] == "partial" and last["rejected"] == 1
    assert "1 failed" in res["stdout"]
    assert f["state"]["watermark"] == base.state["watermark"]
    missing = set(base.snap["publications"]) - set(snap["publications"])
    assert len(missing) == 1, diff(base.snap, snap)
    (key,) = missing
    # Keyed by the PMID read from its bytes, so a later good copy releases it.
    assert snap["quarantine"] == [("pubmed", key.removeprefix("pmid:"))]
    expected = {**base.snap, "quarantine": snap["quarantine"], "publications": {
        k: v for k, v in base.snap["publications"].items() if k != key}}
    expected["labels"] = [lab for lab in base.snap["labels"] if lab[1] != key]
    assert snap == expected, diff(expected, snap)
    row.outcome = "quarantined (partial, 1 rejected), exit 0"
    # The next (incremental) run asks for the quarantined PMID by id, stores it and releases
    # the quarantined copy, though its date lies before the new window.
    again, after = f["again"], f["again_snap"]
    assert again["rc"] == 0 and again["stderr"] == "", again["stderr"]
    assert f["again_requests"] == [key.removeprefix("pmid:")]
    row.lost = len(lost(base.snap, after))
    assert after == base.snap, diff(base.snap, after)
    row.outcome += "; the next run fetches it by id, quarantine released"


def _ctgov_unstorable(f: dict[str, Any], base: Baseline, row: Row) -> None:
    """A study the tracker cannot store (no title): quarantined under its NCT id; the next
    incremental run fetches it by id (its date lies before the new window) and stores it."""
    res, snap, last = f["run"], f["snap"], f["last"]
    row.outcome = f"exit {res['rc']}"
    assert res["rc"] == 0, res["stderr"]
    assert last["outcome"] == "partial" and last["rejected"] == 1
    assert "1 failed" in res["stdout"]
    missing = set(base.snap["studies"]) - set(snap["studies"])
    assert len(missing) == 1, diff(base.snap, snap)
    (key,) = missing
    nct = key.removeprefix("ctgov:")
    assert snap["quarantine"] == [("ctgov", nct)]
    expected = {**base.snap, "quarantine": snap["quarantine"], "studies": {
        k: v for k, v in base.snap["studies"].items() if k != key}}
    expected["labels"] = [lab for lab in base.snap["labels"] if lab[1] != key]
    assert snap == expected, diff(expected, snap)
    row.outcome = "quarantined (partial, 1 rejected), exit 0"
    again, after = f["again"], f["again_snap"]
    assert again["rc"] == 0 and again["stderr"] == "", again["stderr"]
    assert f["again_requests"] == [nct]
    row.lost = len(lost(base.snap, after))
    assert after == base.snap, diff(base.snap, after)
    row.outcome += "; the next run fetches it by id, quarantine released"


# CT.gov wrong_type (module spec) -> the fields that differ from the baseline record: a module
# or value of the wrong type reads as absent, as a missing module does.
CTGOV_WRONG_TYPE = {
    "protocolSection.statusModule:str": {
        "status": "UNKNOWN", "status_raw": None, "first_posted": None,
        "last_update_posted": None, "start_date": None, "completion_date": None},
    "protocolSection.designModule:list": {
        "phase": "NOT_APPLICABLE", "phase_raw": None, "study_type": None, "enrollment": None},
    "protocolSection.armsInterventionsModule:str": {
        "interventions": "[]", "study_intervention": 0},
    "protocolSection.statusModule.startDateStruct.date:int": {"start_date": None},
    "protocolSection.designModule.enrollmentInfo.type:list": {},  # enrollment_type: not shown
}


def _pubmed_entity_fault(f: dict[str, Any], base: Baseline, row: Row) -> None:
    """An article holding an undeclared entity (&foo;): stored as it parsed within its page,
    and its stored bytes parse again (tracker classify reads them)."""
    res, snap, last = f["run"], f["snap"], f["last"]
    row.outcome = f"exit {res['rc']}"
    assert res["rc"] == 0 and res["stderr"] == "", res["stderr"]
    assert last["outcome"] == "ok" and last["rejected"] == 0
    assert f["state"]["watermark"] == base.state["watermark"]
    changed = [k for k, v in base.snap["publications"].items()
               if snap["publications"].get(k) != v]
    assert len(changed) == 1, diff(base.snap, snap)
    (key,) = changed
    got, want = snap["publications"][key], base.snap["publications"][key]
    assert got["title"] == want["title"] + " &foo;", (got["title"], want["title"])
    assert got["listings"][0][2] != want["listings"][0][2]  # its own bytes, as sent
    same = {k for k in want if k not in ("title", "listings")}
    assert {k: got[k] for k in same} == {k: want[k] for k in same}
    assert not snap["quarantine"]
    row.outcome = "stored as sent, exit 0"
    classify = f["classify"]
    assert classify["rc"] == 0 and classify["stderr"] == "", classify["stderr"]
    assert "0 still failing" in classify["stdout"], classify["stdout"]
    row.outcome += "; tracker classify re-reads it, exit 0"
    again, after = f["again"], f["again_snap"]
    assert again["rc"] == 0 and again["stderr"] == "", again["stderr"]
    row.lost = len(lost(base.snap, after))
    assert after == base.snap, diff(base.snap, after)
    row.outcome += "; --full rerun restores it"


def _europepmc_wrong_type(case: Case, f: dict[str, Any], base: Baseline, row: Row) -> None:
    """A Europe PMC result with a field of the wrong type: stored with what it has (a number
    as text, a list as absent), or, with no usable id, quarantined; never a traceback."""
    res, snap, last = f["run"], f["snap"], f["last"]
    row.outcome = f"exit {res['rc']}"
    assert res["rc"] == 0, res["stderr"]
    assert not [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")]
    assert f["state"]["watermark"] == base.state["watermark"]
    pubs, want_pubs = snap["publications"], base.snap["publications"]
    changed = [k for k, v in want_pubs.items() if pubs.get(k) != v]
    assert len(changed) == 1, diff(base.snap, snap)
    (key,) = changed
    got, want = pubs.get(key), want_pubs[key]
    rest = {**snap, "publications": {k: v for k, v in pubs.items() if k != key}}
    rest["labels"] = [lab for lab in snap["labels"] if lab[1] != key]
    rest_expected = {**base.snap, "publications": {
        k: v for k, v in want_pubs.items() if k != key}}
    rest_expected["labels"] = [lab for lab in base.snap["labels"] if lab[1] != key]
    if case.module == "id:list":
        # No usable id: quarantined under a hash of its bytes, counted as rejected.
        assert got is None
        assert last["outcome"] == "partial" and last["rejected"] == 1
        assert "1 failed" in res["stdout"]
        assert len(snap["quarantine"]) == 1
        qsrc, qkey = snap["quarantine"][0]
        assert qsrc == "europepmc" and qkey.startswith("sha:")
        rest_expected["quarantine"] = snap["quarantine"]
        row.outcome = "quarantined (partial, 1 rejected), exit 0"
    else:
        assert res["stderr"] == "", res["stderr"]
        assert last["outcome"] == "ok" and last["rejected"] == 0
        assert got is not None
        assert got["listings"][0][2] != want["listings"][0][2]
        expected = {**want, "listings": got["listings"]}
        if case.module == "title:int":
            expected["title"] = ""  # absent; a later good copy fills it
        if case.module in ("title:int", "abstractText:list"):
            expected["msc_relevant"] = got["msc_relevant"]  # judged without that text
        assert got == expected, {k: (want[k], got[k]) for k in want if want[k] != got[k]}
        row.outcome = f"stored ({case.module.replace(':', ' as ')} read as absent), exit 0"
    assert rest == rest_expected, diff(rest_expected, rest)
    again, after = f["again"], f["again_snap"]
    assert again["rc"] == 0 and again["stderr"] == "", again["stderr"]
    row.lost = len(lost(base.snap, after))
    expected = {**base.snap}
    if case.module == "id:list":
        expected["quarantine"] = after["quarantine"]  # no id: nothing can release it
    assert after == expected, diff(expected, after)
    row.outcome += "; --full rerun restores it"


def _record_fault(case: Case, f: dict[str, Any], base: Baseline, row: Row) -> None:
    """Record-level faults: the run completes; exactly one record differs."""
    if case.source == "pubmed":
        if case.kind == "undeclared_entity":
            _pubmed_entity_fault(f, base, row)
        else:
            _pubmed_record_fault(f, base, row)
        return
    if case.source == "europepmc":
        _europepmc_wrong_type(case, f, base, row)
        return
    if case.kind == "no_title":
        _ctgov_unstorable(f, base, row)
        return
    res, snap, last = f["run"], f["snap"], f["last"]
    row.outcome = f"exit {res['rc']}"
    assert res["rc"] == 0, res["stderr"]
    assert not [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")]
    # The altered record is the first study of the second page.
    assert f["fired"][0].get("pageToken")
    assert f["state"]["watermark"] == base.state["watermark"]
    changed = [k for k in base.snap["studies"] if snap["studies"].get(k) != base.snap["studies"][k]]
    assert len(changed) == 1, diff(base.snap, snap)
    nct = changed[0]
    got, want = snap["studies"].get(nct), base.snap["studies"][nct]
    rest_expected, rest = without(base.snap, nct), without(snap, nct)

    if case.kind == "unknown_enum":
        # Stored, not rejected: the unknown values map to OTHER / UNKNOWN, raw values kept.
        assert last["outcome"] == "ok" and last["rejected"] == 0
        assert got is not None
        assert (got["status"], got["status_raw"]) == ("OTHER", "FUTURE_STATUS")
        assert (got["phase"], got["phase_raw"]) == ("UNKNOWN", "PHASE5")
        assert got["content_hash"] != want["content_hash"]
        same = {k for k in want if k not in ("status", "status_raw", "phase", "phase_raw",
                                             "content_hash")}
        assert {k: got[k] for k in same} == {k: want[k] for k in same}
        row.outcome = "stored as status OTHER / phase UNKNOWN (raw kept), exit 0"
    elif case.module == "identificationModule":
        # Cannot be keyed: quarantined under a hash of its bytes, counted as rejected.
        assert got is None
        assert last["outcome"] == "partial" and last["rejected"] == 1
        assert len(snap["quarantine"]) == 1
        qsrc, qkey = snap["quarantine"][0]
        assert qsrc == "ctgov" and qkey.startswith("sha:")
        assert "1 failed" in res["stdout"]
        rest_expected["quarantine"] = snap["quarantine"]
        row.outcome = "quarantined (partial, 1 rejected), exit 0"
    elif case.kind == "wrong_type":
        # The wrong-typed module or value reads as absent; the record is stored.
        assert res["stderr"] == "", res["stderr"]
        assert last["outcome"] == "ok" and last["rejected"] == 0
        assert got is not None and got["content_hash"] != want["content_hash"]
        expected = {**want, **CTGOV_WRONG_TYPE[case.module or ""],
                    "content_hash": got["content_hash"]}
        assert got == expected, {k: (want[k], got[k]) for k in want if want[k] != got[k]}
        short = (case.module or "").removeprefix("protocolSection.").replace(":", " as ")
        row.outcome = f"stored ({short} read as absent), exit 0"
    else:
        # A missing statusModule / designModule: stored with what the record has.
        assert last["outcome"] == "ok" and last["rejected"] == 0
        assert got is not None and got["title"] == want["title"]
        if case.module == "statusModule":
            assert got["status"] == "UNKNOWN" and got["status_raw"] is None
            assert got["first_posted"] is None and got["last_update_posted"] is None
        else:
            assert got["phase"] == "NOT_APPLICABLE" and got["enrollment"] is None
        row.outcome = f"stored without {case.module}, exit 0"
    # Everything else is exactly the baseline.
    assert rest == rest_expected, diff(rest_expected, rest)

    # Recovery: the altered record is only fetched again by a full re-pull (its registry
    # update date lies before the incremental window); afterwards it equals the baseline.
    again, after = f["again"], f["again_snap"]
    assert again["rc"] == 0 and again["stderr"] == "", again["stderr"]
    row.lost = len(lost(base.snap, after))
    fixed = after["studies"][nct]
    assert {k: v for k, v in fixed.items() if k != "study_change"} == \
        {k: v for k, v in want.items() if k != "study_change"}
    expected = {**base.snap, "studies": {**base.snap["studies"], nct: fixed}}
    if case.module == "identificationModule":
        # The quarantined copy had no id, so nothing can ever release it.
        expected["quarantine"] = after["quarantine"]
    assert after == expected, diff(expected, after)
    row.outcome += "; --full rerun restores it"
