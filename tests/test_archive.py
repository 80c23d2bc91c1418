"""``tracker update --save-raw DIR`` then ``tracker import DIR``: the pages every source sent
(the replay server's real recorded data, real paging) saved, and read back into another
database through the same pipeline, quarantine and history: the two databases end equal.
"""

from __future__ import annotations

from pathlib import Path

from conftest import ctgov_studies
from dbsnapshot import base_env, runs, snapshot, tracker, write_config
from replay_server import ReplayServer, fixture_dir, load_europepmc_results, load_pubmed_articles

from sources import fetched as fetched_sources


def _data() -> dict:
    """Every source's recorded data (the registries' as their own end-to-end tests load it)."""
    import test_e2e_ctis
    import test_e2e_euctr
    import test_e2e_isrctn

    return {"ctgov_studies": ctgov_studies(),
            "pubmed_articles": load_pubmed_articles(fixture_dir("pubmed")),
            "europepmc_results": load_europepmc_results(
                fixture_dir("europepmc") / "search_cancer_core.json"),
            "isrctn_trials": test_e2e_isrctn.trials(), "ctis_trials": test_e2e_ctis.trials(),
            "euctr_trials": test_e2e_euctr.trials()}


def _env(db: Path, cfg: Path, srv: ReplayServer | None = None) -> dict[str, str]:
    urls = {} if srv is None else srv.source_env
    return base_env(TRACKER_DB=str(db), TRACKER_CONFIG=str(cfg),
                    TRACKER_CONTACT_EMAIL="tracker-tests@example.org",
                    TRACKER_CTGOV_PAGE_SIZE="4", TRACKER_PUBMED_PAGE_SIZE="3",
                    TRACKER_EUROPEPMC_PAGE_SIZE="8", TRACKER_CTGOV_RATE_PER_SECOND="50",
                    TRACKER_EUROPEPMC_RATE_PER_SECOND="50", TRACKER_ISRCTN_RATE_PER_SECOND="50",
                    TRACKER_EUCTR_RATE_PER_SECOND="50", TRACKER_CTIS_RATE_PER_SECOND="50", **urls)


def test_saved_pages_import_into_an_equal_database(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    fetched, mirror, saved = tmp_path / "fetched.sqlite", tmp_path / "mirror.sqlite", \
        tmp_path / "raw"
    with ReplayServer(**_data()) as srv:
        res = tracker(["update", "--save-raw", str(saved)], _env(fetched, cfg, srv))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in saved.iterdir()) == sorted(fetched_sources())
    assert len(list((saved / "ctgov").glob("*.jsonl"))) == 3  # 11 studies, pages of 4
    # the mirror has no network at all: no source URL points anywhere reachable
    imported = tracker(["import", str(saved)], _env(mirror, cfg))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines()[0].startswith("ctgov: 11 new, 0 changed")
    a, b = snapshot(fetched), snapshot(mirror)
    assert a["studies"] == b["studies"] and a["publications"] == b["publications"]
    registries = {key.split(":")[0] for key in a["studies"]}
    assert {"ctgov", "isrctn", "euctr", "ctis"} <= registries
    again = tracker(["import", str(saved)], _env(mirror, cfg))
    assert again.returncode == 0 and "ctgov: 0 new, 0 changed, 11 unchanged" in again.stdout
    assert all(r["outcome"] == "ok" for r in runs(mirror))


def test_a_damaged_saved_page_is_one_line_and_the_rest_is_kept(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    saved = tmp_path / "raw"
    with ReplayServer(**_data()) as srv:
        assert tracker(["update", "--source", "ctgov", "--save-raw", str(saved)],
                       _env(tmp_path / "f.sqlite", cfg, srv)).returncode == 0
    pages = sorted((saved / "ctgov").glob("*.jsonl"))
    crafted_cut = pages[-1]  # the last page, cut in half (a copy interrupted)
    crafted_cut.write_text(crafted_cut.read_text()[: len(crafted_cut.read_text()) // 2])
    mirror = tmp_path / "mirror.sqlite"
    res = tracker(["import", str(saved)], _env(mirror, cfg))
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "is not a page saved by tracker update --save-raw" in lines[0]
    assert len(snapshot(mirror)["studies"]) == 8  # the two whole pages before it
    assert runs(mirror, "ctgov")[-1]["outcome"] == "failed"


def test_import_of_something_else_is_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", backoff_cap=0.2)
    res = tracker(["import", str(tmp_path / "nothing-here")], _env(tmp_path / "x.sqlite", cfg))
    assert res.returncode == 1
    assert len(res.stderr.splitlines()) == 1 and "is not a folder of saved pages" in res.stderr
