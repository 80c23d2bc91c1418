"""``tracker import ictrp FILE``: the real WHO ICTRP export through the real CLI into a real
SQLite file, with the same pipeline, quarantine and history as an update.

The export is tests/fixtures/ictrp/ictrp_export_95_trials.xml (real; see its README). The
broken variants are derived from it in the tests (named crafted_*): its first half (a cut
download), and the whole file behind a UTF-8 byte-order mark with Windows line ends.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from dbsnapshot import base_env, tracker

EXPORT = Path(__file__).parent / "fixtures" / "ictrp" / "ictrp_export_95_trials.xml"


def _env(db: Path) -> dict[str, str]:
    return base_env(TRACKER_DB=str(db), TRACKER_CONTACT_EMAIL="tracker-tests@example.org")


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT registry, registry_id, source, content_hash, msc_role "
                            "FROM study ORDER BY registry, registry_id").fetchall()


def test_import_stores_every_registration_and_again_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ictrp.sqlite"
    first = tracker(["import", "ictrp", str(EXPORT)], _env(db))
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    rows = _rows(db)
    n = len(rows)
    assert first.stdout.startswith(f"ictrp: {n} new, 0 changed, 0 unchanged, 0 failed")
    by_registry = Counter(r[0] for r in rows)
    # registries with a source of their own keep ICTRP's copy as an "ictrp" registration
    assert {"ictrp", "drks", "jprn"} <= set(by_registry), by_registry
    assert not {"ctgov", "isrctn", "euctr", "ctis"} & set(by_registry), by_registry
    assert all(src == "ictrp" for _, _, src, _, _ in rows)  # their raw is ICTRP's XML
    assert all(role is not None for *_, role in rows)  # classified at import
    again = tracker(["import", "ictrp", str(EXPORT)], _env(db))
    assert again.returncode == 0 and again.stdout.startswith(
        f"ictrp: 0 new, 0 changed, {n} unchanged, 0 failed"), again.stdout
    assert _rows(db) == rows
    # the stored raw records parse again (tracker classify reads them with ICTRP's parser)
    relabel = tracker(["classify"], _env(db))
    assert relabel.returncode == 0, relabel.stderr
    assert relabel.stdout.startswith(f"classified {n} studies"), relabel.stdout
    status = tracker(["status", "-f", "json"], _env(db))
    assert status.returncode == 0
    assert any(s["source"] == "ictrp" for s in json.loads(status.stdout)["sources"])


def test_a_cut_export_fails_in_one_line_and_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "cut.sqlite"
    assert tracker(["import", "ictrp", str(EXPORT)], _env(db)).returncode == 0
    before = _rows(db)
    body = EXPORT.read_bytes()
    crafted_cut = tmp_path / "crafted_cut_export.xml"
    crafted_cut.write_bytes(body[: len(body) // 2])
    res = tracker(["import", "ictrp", str(crafted_cut)], _env(db))
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ictrp: ") and "ICTRP" in lines[0]
    assert _rows(db) == before  # the database as it was
    with sqlite3.connect(db) as conn:
        outcomes = [r[0] for r in conn.execute(
            "SELECT outcome FROM update_run ORDER BY id")]
    assert outcomes == ["ok", "failed"]  # recorded as failed, never left running
    again = tracker(["import", "ictrp", str(EXPORT)], _env(db))
    assert again.returncode == 0 and _rows(db) == before


def test_bom_and_windows_line_ends_import_the_same(tmp_path: Path) -> None:
    plain, db = tmp_path / "plain.sqlite", tmp_path / "bom.sqlite"
    assert tracker(["import", "ictrp", str(EXPORT)], _env(plain)).returncode == 0
    crafted_bom = tmp_path / "crafted_bom_crlf_export.xml"
    crafted_bom.write_bytes(b"\xef\xbb\xbf" + EXPORT.read_bytes().replace(b"\r\n", b"\n")
                            .replace(b"\n", b"\r\n"))
    res = tracker(["import", "ictrp", str(crafted_bom)], _env(db))
    assert res.returncode == 0, res.stderr
    assert [r[:2] for r in _rows(db)] == [r[:2] for r in _rows(plain)]


@pytest.mark.parametrize("args, message", [
    (["import", "ictrp", "/nonexistent/export.xml"], "is not a file"),
    (["import", "ctgov", str(EXPORT)], "is fetched by tracker update"),
])
def test_bad_import_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    res = tracker(args, _env(tmp_path / "x.sqlite"))
    assert res.returncode == 1
    assert len(res.stderr.splitlines()) == 1 and message in res.stderr, res.stderr
