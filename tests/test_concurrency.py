"""Concurrency: ``tracker report`` and ``tracker studies`` read while ``tracker update`` writes
(SQLite WAL), without errors or torn results; a second concurrent update is refused or waits.

All commands are the installed console script in separate processes. The update reads 60
studies in pages of 5 at 5 requests a second, so it writes for a few seconds; each page is one
transaction, so a reader must always see a whole number of pages and complete rows.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import wait_for
from dbsnapshot import CMD, diff, only_sources, runs, snapshot, tracker, write_config
from replay_server import ReplayServer
from test_crash import N_STUDIES, PAGE, env_for, many_studies

from tracker.reports import LIST_COLUMNS


def _start_update(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CMD, "update", "--source", "ctgov"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def test_readers_during_an_update(tmp_path: Path, studies_json: list[dict[str, Any]]) -> None:
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    db = tmp_path / "concurrent.sqlite"
    with ReplayServer(ctgov_studies=many_studies(studies_json)) as srv:
        env = env_for(srv, db, cfg, "5")
        # The sixth page is held while the readers read once: they certainly see the writer
        # part-way, however slow the machine; then the update goes on beside more reads.
        srv.add_fault("ctgov", "hold", on_request=6)
        proc = _start_update(env)
        try:
            assert srv.held.wait(60), "the update never reached its sixth page"
            seen: list[int] = []
            reads = 0
            while proc.poll() is None or reads < 2:
                if reads == 1:
                    srv.release()
                # every stored study: the recorded ones are not MSC trials
                listed = tracker(["studies", "--role", "all", "-f", "json"], env, timeout=60)
                assert listed.returncode == 0, listed.stderr
                assert listed.stderr == ""
                rows = json.loads(listed.stdout)
                assert isinstance(rows, list)
                for row in rows:  # every row complete, never half a study
                    assert set(LIST_COLUMNS) <= set(row), set(LIST_COLUMNS) - set(row)
                    assert row["registry_id"] and row["title"] and row["url"]
                ids = [r["registry_id"] for r in rows]
                assert len(ids) == len(set(ids)), "duplicate rows"
                assert len(rows) % PAGE == 0, f"torn read: {len(rows)} rows"  # whole pages
                assert not seen or len(rows) >= seen[-1], "a reader saw rows disappear"
                seen.append(len(rows))

                rep = tracker(["report", "--since", "2000-01-01", "--role", "all", "-f",
                               "json"], env, timeout=60)
                assert rep.returncode == 0, rep.stderr
                assert rep.stderr == ""
                data = json.loads(rep.stdout)
                assert isinstance(data, dict) and "total" in data and "studies" in data
                assert data["total"] == len(data["studies"])
                assert data["total"] % PAGE == 0 and data["total"] >= seen[-1]
                if proc.poll() is None:  # running is not failing: monitoring stays quiet
                    status = tracker(["status"], env, timeout=60)
                    assert status.returncode == 0 or proc.poll() is not None, status.stdout
                reads += 1
            out, err = _stop(proc)
        finally:
            if proc.poll() is None:
                _stop(proc, 5)
        assert proc.returncode == 0, err
        assert out.startswith(f"ctgov: {N_STUDIES} new"), out
        # The readers really overlapped the writer: they saw it part-way (5 pages while held).
        assert seen[0] == 5 * PAGE, seen
        assert len(snapshot(db)["studies"]) == N_STUDIES
        assert not srv.errors, srv.errors


def test_second_update_is_refused_while_one_runs(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    """Spec: a second concurrent update exits 1 with one line "another update is running".

    Needs ``tracker.lock.update_lock`` wired into ``tracker update`` (cli.py / update.py).
    """
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    db = tmp_path / "locked.sqlite"
    with ReplayServer(ctgov_studies=many_studies(studies_json)) as srv, \
            ReplayServer(ctgov_studies=many_studies(studies_json)) as other:
        # The first update's second page is held until the second update has been refused:
        # the first certainly still runs, however slow the machine is to start a process.
        srv.add_fault("ctgov", "hold", on_request=2)
        env = env_for(srv, db, cfg, "100")
        first = _start_update(env)
        try:
            assert srv.held.wait(60), "the first update never reached its second page"
            second = tracker(["update", "--source", "ctgov"], env_for(other, db, cfg, "100"))
            still_running = first.poll() is None
            srv.release()
            _, err = _stop(first)
        finally:
            if first.poll() is None:
                _stop(first, 5)
        assert still_running, "the first update ended before the second was refused"
        assert first.returncode == 0, err
        assert second.returncode == 1, (second.stdout, second.stderr)
        lines = second.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
        assert "another update is running" in lines[0]
        assert other.requests_for("ctgov") == [], "the refused update fetched anyway"
        assert len(snapshot(db)["studies"]) == N_STUDIES
        assert [r["outcome"] for r in runs(db, "ctgov")] == ["ok"]


def test_second_update_waits_with_lock_wait(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    """With ``lock_wait``, the second update waits for the first, then runs (and adds nothing)."""
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    db = tmp_path / "waiting.sqlite"
    with ReplayServer(ctgov_studies=many_studies(studies_json)) as srv, \
            ReplayServer(ctgov_studies=many_studies(studies_json)) as other:
        first = _start_update(env_for(srv, db, cfg, "5"))
        try:
            assert wait_for(lambda: len(srv.requests_for("ctgov")) >= 2, timeout=30)
            second = _start_update({**env_for(other, db, cfg, "100"), "TRACKER_LOCK_WAIT": "60"})
            out1, err1 = _stop(first)
            first_done = time.monotonic()
            out2, err2 = _stop(second)
        finally:
            for p in (first,):
                if p.poll() is None:
                    _stop(p, 5)
        assert first.returncode == 0, err1
        assert second.returncode == 0, err2
        assert out1.startswith(f"ctgov: {N_STUDIES} new")
        # It did not start fetching before the first had fetched its last page (server
        # clocks, not the test's: a loaded machine can take a second to reap a process).
        fetched = other.requests_for("ctgov")
        last_of_first = max(r.time for r in srv.requests_for("ctgov"))
        assert fetched and min(r.time for r in fetched) > last_of_first, \
            "the second update ran while the first was still writing"
        assert first_done > last_of_first
        # It planned its window after the first finished: an incremental window past the
        # first run's watermark, in which these (older) studies do not fall.
        assert out2.startswith("ctgov: 0 new, 0 changed, 0 unchanged"), out2
        assert "window everything" not in out2, out2
        assert [r["outcome"] for r in runs(db, "ctgov")] == ["ok", "ok"]
        base = snapshot(db)
        assert len(base["studies"]) == N_STUDIES, diff(base, base)


def test_two_first_ever_updates_at_once(tmp_path: Path, studies_json: list[dict[str, Any]]) -> None:
    """Both start on a database that does not exist yet: the lock is taken before the schema
    is created, so one runs and the other is refused with the lock's message (never
    "database is locked"), in whichever order they arrive."""
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    for attempt in range(2):
        db = tmp_path / f"fresh{attempt}.sqlite"
        with ReplayServer(ctgov_studies=many_studies(studies_json)) as srv:
            env = env_for(srv, db, cfg, "5")  # a window of seconds: they surely overlap
            procs = [_start_update(env) for _ in range(2)]
            results = [_stop(p) for p in procs]
        codes = sorted(p.returncode for p in procs)
        errors = "".join(err for _, err in results)
        assert "database is locked" not in errors, errors
        assert "Traceback" not in errors, errors
        assert codes == [0, 1], (codes, results)
        refused = next(err for p, (_, err) in zip(procs, results, strict=True) if p.returncode)
        assert refused.startswith("error: another update is running"), refused
        assert len(snapshot(db)["studies"]) == N_STUDIES


def test_classify_during_an_update_is_refused_with_the_lock_message(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    db = tmp_path / "classify.sqlite"
    with ReplayServer(ctgov_studies=many_studies(studies_json)) as srv:
        env = env_for(srv, db, cfg, "5")
        assert tracker(["update", "--source", "ctgov"], env).returncode == 0
        srv.requests.clear()
        # The update's second page is held until classify has run: the update is certainly
        # mid-run (holding its lock) however slow the machine is to start a process.
        srv.add_fault("ctgov", "hold", on_request=2)
        proc = subprocess.Popen([*CMD, "update", "--source", "ctgov", "--full"], env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert srv.held.wait(60), "the update never reached its second page"
            during = tracker(["classify"], env)
            srv.release()
            waited = tracker(["classify", "--wait", "60"], env, timeout=120)
            _stop(proc)
        finally:
            if proc.poll() is None:
                _stop(proc, 5)
    assert during.returncode == 1 and "another update is running" in during.stderr, during
    assert "database is locked" not in during.stderr
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith(f"classified {N_STUDIES} studies"), waited.stdout


def test_sources_run_side_by_side_and_an_interrupt_stops_them_all(
    tmp_path: Path, studies_json: list[dict[str, Any]]
) -> None:
    """Every source of an update runs at once: PubMed and Europe PMC finish while CT.gov's
    second page is still held by the server. Ctrl-C then stops CT.gov at its next page: exit
    130, one line, every source run recorded (none left running), what arrived kept."""
    import signal

    from replay_server import fixture_dir, load_europepmc_results, load_pubmed_articles

    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    db = tmp_path / "side.sqlite"
    with ReplayServer(ctgov_studies=many_studies(studies_json),
                      pubmed_articles=load_pubmed_articles(fixture_dir("pubmed")),
                      europepmc_results=load_europepmc_results(
                          fixture_dir("europepmc") / "search_cancer_core.json")) as srv:
        env = {**env_for(srv, db, cfg, "100"), **srv.source_env,
               **only_sources("ctgov", "pubmed", "europepmc")}
        srv.add_fault("ctgov", "hold", on_request=2)
        proc = subprocess.Popen([*CMD, "update"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert srv.held.wait(60), "CT.gov never reached its second page"
            # the other sources are not waiting for CT.gov: they finish meanwhile
            assert wait_for(lambda: {r["source"]: r["outcome"] for r in runs(db)}.get(
                "europepmc") == "ok" and {r["source"]: r["outcome"] for r in runs(db)}.get(
                "pubmed") == "ok", timeout=60), runs(db)
            proc.send_signal(signal.SIGINT)
            srv.release()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "error: interrupted", err
    by_source = {r["source"]: r for r in runs(db)}
    assert by_source["ctgov"]["outcome"] == "failed"
    assert "interrupted" in by_source["ctgov"]["error"]
    assert all(r["outcome"] != "running" for r in runs(db))
    assert len(snapshot(db)["studies"]) == 2 * PAGE  # pages 1 and 2 kept, no page after
