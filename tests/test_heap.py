"""tracker.pipeline.settled_heap: the objects alive at a run's start are frozen out of the
cyclic collector's reach during the run and handed back after it, even when it fails; the
long runs (update, import, classify) run inside it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracker.relabel
from db.engine import make_engine
from db.migrate import upgrade
from tracker.config import load_settings
from tracker.pipeline import settled_heap


def test_frozen_during_and_handed_back_after() -> None:
    assert gc.get_freeze_count() == 0
    alive = [object() for _ in range(10)]
    with settled_heap():
        assert gc.get_freeze_count() >= len(alive)
    assert gc.get_freeze_count() == 0


def test_handed_back_when_the_run_fails() -> None:
    with pytest.raises(RuntimeError), settled_heap():
        raise RuntimeError("a source failed")
    assert gc.get_freeze_count() == 0


def test_cyclic_garbage_of_a_run_is_collected_after_it() -> None:
    class Node:
        pass

    with settled_heap():
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made during the run
        del a, b
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is Node]


def test_classify_runs_inside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    @contextlib.contextmanager
    def spy() -> Iterator[None]:
        with settled_heap():
            seen.append(gc.get_freeze_count())
            yield

    monkeypatch.setattr(tracker.relabel, "settled_heap", spy)
    path = tmp_path / "t.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    tracker.relabel.relabel_all(engine, load_settings({"db": str(path)}, env={}))
    engine.dispose()
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
