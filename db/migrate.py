"""Schema migrations (Alembic), wrapped for the CLI and for first use.

``upgrade`` brings any database, empty or older, to the latest revision; each revision runs in
its own transaction, and none drops user data. ``pending`` lists what would run.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser interpolates "%"; URL-encoded socket paths contain it.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of the tracker."""
    script = ScriptDirectory.from_config(_config_for_script())
    head = script.get_current_head()
    assert head is not None
    return head


def _config_for_script() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def pending(engine: Engine) -> list[tuple[str, str]]:
    """(revision, message) of each migration ``upgrade`` would apply, oldest first."""
    script = ScriptDirectory.from_config(_config_for_script())
    current = current_revision(engine)
    revs = list(script.iterate_revisions("heads", current or "base"))
    return [(r.revision, (r.doc or "").strip()) for r in reversed(revs)]


def history() -> list[tuple[str, str]]:
    """(revision, message) of every shipped migration, oldest first."""
    script = ScriptDirectory.from_config(_config_for_script())
    return [(r.revision, (r.doc or "").strip()) for r in reversed(list(script.walk_revisions()))]


def upgrade(engine: Engine, revision: str = "head") -> list[tuple[str, str]]:
    """Apply every pending migration; return what was applied."""
    todo = pending(engine)
    if not todo:
        return []
    cfg = _config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    return todo


def ensure_schema(engine: Engine) -> list[tuple[str, str]]:
    """Upgrade the database if it is behind; cheap when it is current."""
    if current_revision(engine) == head_revision():
        return []
    return upgrade(engine)
