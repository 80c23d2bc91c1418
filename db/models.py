"""SQLModel tables. The schema's history lives in ``db/migrations``; this module is its latest state.

Times are aware UTC ``datetime`` (SQLModel's UTCDateTime; SQLite stores them as UTC text); dates that registries give whole are
``date``; partial registry dates ("2006-11") are ISO partial strings. List-valued fields a
researcher filters on live in child tables; the same lists are also kept as JSON on the parent
row so that listing studies needs no join.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


def _fk(target: str) -> Column:  # type: ignore[type-arg]
    return Column(Integer, ForeignKey(target, ondelete="CASCADE"), nullable=False, index=True)


def _optional_fk(target: str, name: str) -> Column:  # type: ignore[type-arg]
    return Column(Integer, ForeignKey(target, ondelete="CASCADE", name=name), nullable=True)


def _json_list() -> Any:
    return Field(default_factory=list, sa_type=JSON, nullable=False,
                 sa_column_kwargs={"server_default": "[]"})


class Labelled(SQLModel):
    """Classification columns (tracker.classify), shared by studies and publications: filled
    when a record is stored, redone by ``tracker classify``."""

    msc_relevant: bool | None = Field(default=None, index=True)
    # How MSCs figure (tracker.role.ROLES; revision 0007): relevant means therapy or laboratory.
    msc_role: str | None = Field(default=None, sa_type=String(16), index=True)
    minimally_manipulated: bool | None = None
    relevance_reason: str | None = Field(default=None, sa_type=Text)
    condition_groups: list[str] = _json_list()
    cell_sources: list[str] = _json_list()
    origins: list[str] = _json_list()
    products: list[str] = _json_list()
    evidence: list[dict[str, str]] = _json_list()
    rules_fingerprint: str | None = None


class Study(Labelled, table=True):
    """One registration, keyed on (registry, registry_id)."""

    __tablename__ = "study"
    __table_args__ = (
        UniqueConstraint("registry", "registry_id", name="uq_study_registry_id"),
        Index("ix_study_first_posted", "first_posted"),
        Index("ix_study_last_update_posted", "last_update_posted"),
        Index("ix_study_first_seen_run", "first_seen_run_id"),
        Index("ix_study_last_changed_run", "last_changed_run_id"),  # revision 0005
        Index("ix_study_registry_id", "registry_id"),  # lookups by id alone (0005)
    )

    id: int | None = Field(default=None, primary_key=True)
    # "registry" is reserved on declarative classes, hence the attribute name; the column is "registry".
    registry_name: str = Field(sa_column=Column("registry", String(16), nullable=False))
    # The source that read the stored raw record when not the registry's own (an ICTRP export
    # of a ChiCTR trial): its parser reads ``raw`` again (revision 0008).
    source: str | None = Field(default=None, sa_type=String(16))
    registry_id: str = Field(max_length=64)
    title: str = Field(sa_column=Column(Text, nullable=False))
    official_title: str | None = Field(default=None, sa_column=Column(Text))
    acronym: str | None = None
    study_type: str | None = None
    phase: str = Field(default="UNKNOWN", index=True)
    phase_raw: str | None = None
    status: str = Field(default="UNKNOWN", index=True)
    status_raw: str | None = None
    why_stopped: str | None = Field(default=None, sa_column=Column(Text))
    conditions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    interventions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    mesh_terms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enrollment: int | None = None
    enrollment_type: str | None = None
    sponsor: str | None = Field(default=None, sa_column=Column(Text))
    sponsor_class: str | None = None
    first_posted: dt.date | None = None
    last_update_posted: dt.date | None = None
    start_date: str | None = None
    primary_completion_date: str | None = None
    completion_date: str | None = None
    has_results: bool = False
    results_first_posted: dt.date | None = None
    countries: list[str] = _json_list()
    brief_summary: str | None = Field(default=None, sa_column=Column(Text))
    url: str
    content_hash: str = Field(max_length=64)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # zlib-compressed record
    first_seen_at: dt.datetime
    last_changed_at: dt.datetime
    first_seen_run_id: int | None = None
    last_changed_run_id: int | None = None


class StudyCondition(SQLModel, table=True):
    """A condition as the registry names it."""

    __tablename__ = "study_condition"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    position: int
    name: str = Field(sa_column=Column(Text, nullable=False))


class StudyCountry(SQLModel, table=True):
    """A country a study has a location in, normalised (``tracker.countries``), for
    ``--country``; one row per study and country (revision 0006)."""

    __tablename__ = "study_country"
    __table_args__ = (UniqueConstraint("study_id", "country", name="uq_study_country"),
                      Index("ix_study_country_country", "country"))
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    country: str


class StudyIntervention(SQLModel, table=True):
    """An intervention with its registry type (BIOLOGICAL, DRUG, ...)."""

    __tablename__ = "study_intervention"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    position: int
    type: str | None = None
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    other_names: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class StudyMesh(SQLModel, table=True):
    """A MeSH term the registry derived for a condition or intervention (or an ancestor)."""

    __tablename__ = "study_mesh"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    kind: str  # condition | intervention
    mesh_id: str | None = None
    term: str
    ancestor: bool = False


class TrialMember(SQLModel, table=True):
    """Which trial a registration belongs to (revision 0008; ``db.trials.regroup``): the
    registrations that declare each other (secondary ids, EudraCT/CTIS numbers, ISRCTN
    external refs, ICTRP secondary ids) and those an editor merged form one trial, keyed by
    the lowest study id among them. ``evidence`` says what joined this registration."""

    __tablename__ = "trial_member"
    study_id: int = Field(sa_column=Column(Integer, ForeignKey("study.id", ondelete="CASCADE"),
                                           primary_key=True))
    trial_id: int = Field(index=True)
    evidence: str | None = Field(default=None, sa_column=Column(Text))


class TrialDecision(SQLModel, table=True):
    """An editor's decision about registrations (``tracker merge A B`` / ``tracker unmerge
    A``), replayed by every regrouping so that it survives updates and re-imports. Rows hold
    registry ids, not row ids, so that a decision outlives a re-import of its records."""

    __tablename__ = "trial_decision"
    id: int | None = Field(default=None, primary_key=True)
    kind: str  # merge | unmerge
    # "registry" is reserved on declarative classes (see Study): the column is "registry".
    registry_name: str = Field(sa_column=Column("registry", String(16), nullable=False))
    registry_id: str = Field(max_length=64)
    other_registry: str | None = Field(default=None, sa_type=String(16))
    other_registry_id: str | None = Field(default=None, max_length=64)
    decided_at: dt.datetime
    note: str | None = Field(default=None, sa_column=Column(Text))


class StudySecondaryId(SQLModel, table=True):
    """Another registry's or organisation's id for a study (EudraCT, CTIS, ISRCTN, grants)."""

    __tablename__ = "study_secondary_id"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    value: str = Field(index=True)
    type: str | None = None
    domain: str | None = Field(default=None, sa_column=Column(Text))


class StudyReference(SQLModel, table=True):
    """A citation attached to a study by its registry, with its PMID when given."""

    __tablename__ = "study_reference"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    pmid: str | None = Field(default=None, index=True)
    type: str | None = None
    citation: str | None = Field(default=None, sa_column=Column(Text))
    retraction_pmids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class StudyChange(SQLModel, table=True):
    """One field of a study that changed between two consecutive versions: from what, to what,
    the registry's own update date of the newer version, and when the tracker saw it.

    Values are text (``db.history.as_text``): lists as JSON arrays, dates ISO, booleans
    true/false. Rows stored before field-level history (revision 0004) have no registry date.
    """

    __tablename__ = "study_change"
    __table_args__ = (Index("ix_study_change_field", "field"),)
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    field: str
    old_value: str | None = None
    new_value: str | None = None
    changed_at: dt.datetime = Field(index=True)  # when the tracker stored the newer version
    registry_date: dt.date | None = Field(default=None, index=True)  # e.g. lastUpdatePostDate
    run_id: int | None = Field(default=None, index=True)  # fetch_run that stored it


class StudyVersion(SQLModel, table=True):
    """An earlier version of a study's raw record, kept when a newer one replaced it.

    The current version lives on ``study`` itself; together they are every version the tracker
    has seen, so any normalised field's history can be rebuilt by parsing them again.
    """

    __tablename__ = "study_version"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=_fk("study.id"))
    content_hash: str = Field(max_length=64)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # compressed, as study.raw
    last_update_posted: dt.date | None = None  # the registry's update date of this version
    seen_from: dt.datetime  # when the tracker stored this version
    seen_until: dt.datetime  # when a newer version replaced it
    run_id: int | None = None  # fetch_run that stored this version


class SourceState(SQLModel, table=True):
    """Per-source watermark: the registry date up to which everything has been stored."""

    __tablename__ = "source_state"
    source: str = Field(primary_key=True)
    watermark: dt.date | None = None
    last_success_at: dt.datetime | None = None
    last_run_id: int | None = None


class UpdateRun(SQLModel, table=True):
    """One ``tracker update``: the per-source runs (``fetch_run``) it made belong to it."""

    __tablename__ = "update_run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    outcome: str = "running"  # running | ok | partial | failed
    sources: list[str] = _json_list()  # the sources it was asked to run, in order
    full: bool = False
    pid: int | None = None  # the process that ran it, on ``host``
    host: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))


class FetchRun(SQLModel, table=True):
    """One run of one source within an update: when, what window, what it did, how it ended."""

    __tablename__ = "fetch_run"
    id: int | None = Field(default=None, primary_key=True)
    update_id: int | None = Field(default=None, sa_column=Column(
        Integer, ForeignKey("update_run.id", ondelete="SET NULL", name="fk_fetch_run_update_id"), nullable=True, index=True))
    source: str = Field(index=True)
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    outcome: str = "running"  # running | ok | partial | failed
    window_start: dt.date | None = None
    window_end: dt.date | None = None
    full: bool = False
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))


class Publication(Labelled, table=True):
    """One paper (or preprint), whichever listings it came from.

    ``key`` is ``pmid:N``, else ``pmcid:PMCN``, else ``doi:...`` (lower-case), else the first
    source's own ``source:id``; records of the same paper from several sources merge into one
    row (see ``db.publications``), each source kept in ``publication_source``.
    """

    __tablename__ = "publication"
    __table_args__ = (Index("ix_publication_index_date", "index_date"),
                      Index("ix_publication_first_seen_run", "first_seen_run_id"))

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    pmid: str | None = Field(default=None, index=True)
    pmcid: str | None = Field(default=None, index=True)
    doi: str | None = Field(default=None, index=True)  # lower-case
    title: str = Field(sa_column=Column(Text, nullable=False))
    abstract: str | None = Field(default=None, sa_column=Column(Text))
    journal: str | None = Field(default=None, sa_column=Column(Text))
    pub_date: str | None = None
    pub_year: int | None = None
    publication_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    mesh_terms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    authors: str | None = Field(default=None, sa_column=Column(Text))
    is_preprint: bool = False
    preprint_of: str | None = Field(default=None, index=True)
    deleted: bool = False
    phase: str = "UNKNOWN"
    index_date: dt.date | None = None
    date_revised: dt.date | None = None
    url: str | None = None
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    first_seen_at: dt.datetime
    last_changed_at: dt.datetime
    first_seen_run_id: int | None = None
    last_changed_run_id: int | None = None


class PublicationSource(SQLModel, table=True):
    """One listing's record of a publication: its own id, raw record and content hash."""

    __tablename__ = "publication_source"
    __table_args__ = (UniqueConstraint("source", "source_id", name="uq_publication_source"),)

    id: int | None = Field(default=None, primary_key=True)
    publication_id: int = Field(sa_column=_fk("publication.id"))
    source: str
    source_id: str
    content_hash: str = Field(max_length=64)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    first_seen_at: dt.datetime
    last_changed_at: dt.datetime


class PublicationSourceVersion(SQLModel, table=True):
    """An earlier version of one listing's raw record, kept when a newer one replaced it."""

    __tablename__ = "publication_source_version"
    id: int | None = Field(default=None, primary_key=True)
    publication_source_id: int = Field(sa_column=_fk("publication_source.id"))
    content_hash: str = Field(max_length=64)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    seen_from: dt.datetime
    seen_until: dt.datetime


class PublicationTrial(SQLModel, table=True):
    """A trial id a paper declares or mentions, with how it was found.

    The study itself is joined at query time on (registry, registry_id) or a secondary id, so a
    paper stored before its trial is linked the moment the trial arrives. Links from the trial
    side (CT.gov ``referencesModule``) live in ``study_reference`` and join on PMID.
    """

    __tablename__ = "publication_trial"
    __table_args__ = (
        UniqueConstraint("publication_id", "registry", "registry_id", "found_in",
                         name="uq_publication_trial"),
        Index("ix_publication_trial_trial", "registry_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    publication_id: int = Field(sa_column=_fk("publication.id"))
    registry_name: str = Field(sa_column=Column("registry", String(16), nullable=False))
    registry_id: str
    link_type: str  # reports | protocol | mentions
    found_in: str  # databank | title | abstract
    evidence: str | None = Field(default=None, sa_column=Column(Text))


class RecordLabel(SQLModel, table=True):
    """One label of one study or publication, for filtering (``--condition osteoarthritis``).

    ``kind`` and ``record_id`` say which record; ``study_id`` or ``publication_id`` (the one
    of its kind, revision 0006) says it again as a foreign key Datasette and sqlite-utils can
    follow.
    """

    __tablename__ = "record_label"
    __table_args__ = (Index("ix_record_label_lookup", "family", "label", "kind"),
                      # One record's labels (of a family): the filters' EXISTS and the
                      # relabelling's delete; these replaced (kind, record_id) in 0006.
                      Index("ix_record_label_study", "study_id", "family", "label"),
                      Index("ix_record_label_publication", "publication_id", "family",
                            "label"))

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # study | publication
    record_id: int
    family: str  # condition_group | cell_source | origin | product
    label: str
    study_id: int | None = Field(default=None, sa_column=_optional_fk(
        "study.id", "fk_record_label_study_id"))
    publication_id: int | None = Field(default=None, sa_column=_optional_fk(
        "publication.id", "fk_record_label_publication_id"))


class Quarantine(SQLModel, table=True):
    """A record a source sent that could not be parsed, kept raw until a fix can store it."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "record_key", name="uq_quarantine_record"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(index=True)
    record_key: str  # the source's id for it, or a hash of its bytes when it has none
    run_id: int | None = None
    error: str = Field(sa_column=Column(Text, nullable=False))
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # zlib-compressed
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    attempts: int = 1


def _register_unmanaged_tables() -> None:
    """Keep Alembic's autogenerate (and ``compare_metadata``) from reporting the full-text
    index (``db.search``: FTS5 virtual and shadow tables on SQLite, tsvector tables on
    PostgreSQL) as tables to drop: migrations create them with DDL the models cannot state."""
    from alembic.autogenerate import comparators
    from alembic.operations import ops

    from db.search import index_table_names

    def drop_index_tables(autogen_context: Any, upgrade_ops: Any, schemas: Any) -> Any:
        names = index_table_names(autogen_context.dialect.name)
        upgrade_ops.ops[:] = [op for op in upgrade_ops.ops if not (
            isinstance(op, (ops.DropTableOp, ops.ModifyTableOps)) and op.table_name in names)]
        try:
            from alembic.util import PriorityDispatchResult
        except ImportError:  # alembic < 1.18
            return None
        return PriorityDispatchResult.CONTINUE

    try:
        from alembic.util import DispatchPriority
    except ImportError:  # alembic < 1.18: functions run in the order they were registered
        comparators.dispatch_for("schema")(drop_index_tables)
        return
    last = min(DispatchPriority)
    comparators.dispatch_for("schema", priority=last)(drop_index_tables)


_register_unmanaged_tables()
