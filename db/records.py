"""Normalised records: what a source's parser produces and what the upsert stores.

These are plain slotted dataclasses, not ORM objects: a nightly run parses tens of thousands of
them, and building them must cost microseconds. ``db.models`` holds the tables they are stored in.
Dates that registries give only in part ("2006-11") are kept as ISO partial strings; dates that
are always whole (posting dates) are ``datetime.date``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import xxhash


def content_hash(raw: bytes) -> str:
    """The change detector stored beside every record: XXH3-128 of its raw bytes, in hex.

    Change detection needs no cryptographic strength, only a negligible chance that two
    versions of a record collide; XXH3-128 gives that at ~20 GB/s, where BLAKE2b-128 (used
    before) cost ~1 us per KB: 10-15 us for every PubMed record an ingest hashes.
    """
    return xxhash.xxh3_128_hexdigest(raw)


@dataclass(slots=True)
class Intervention:
    """One intervention of a study as the registry lists it."""

    type: str | None
    name: str
    description: str | None = None
    other_names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Mesh:
    """A MeSH descriptor attached to a record (``ancestor`` for inherited tree terms)."""

    kind: str  # "condition" | "intervention" | "heading"
    mesh_id: str | None
    term: str
    ancestor: bool = False
    major: bool = False


@dataclass(slots=True)
class SecondaryId:
    """Another registry's or organisation's id for the same study."""

    value: str
    type: str | None = None
    domain: str | None = None


@dataclass(slots=True)
class Reference:
    """A citation a registry attaches to a study (ClinicalTrials.gov ``referencesModule``)."""

    pmid: str | None
    type: str | None  # BACKGROUND | RESULT | DERIVED
    citation: str | None = None
    retraction_pmids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Arm:
    """One arm or group of a study: its label, type (EXPERIMENTAL, PLACEBO_COMPARATOR, ...) and
    the interventions it receives."""

    label: str
    type: str | None = None
    description: str | None = None
    interventions: list[str] = field(default_factory=list)


# The StudyRecord fields stored as ``study`` columns of the same name: the one list the upsert
# copies (db.upsert._study_row) and tests/db/test_migrations.py checks against the table
# (db.models.Study). The others are derived columns (interventions, mesh_terms), child tables
# (STUDY_CHILDREN), the raw record, or labels.
STUDY_COLUMNS = (
    "registry", "registry_id", "source", "title", "official_title", "acronym", "study_type",
    "phase", "phase_raw", "status", "status_raw", "why_stopped", "conditions", "keywords",
    "enrollment", "enrollment_type", "sponsor", "sponsor_class", "first_posted",
    "last_update_posted", "start_date", "primary_completion_date", "completion_date",
    "has_results", "results_first_posted", "countries", "brief_summary", "url",
    "content_hash",
)
# StudyRecord fields stored as rows of their own tables (db.upsert._child_rows), or read from
# the raw record when needed (arms, outcomes, description, eligibility, aliases).
STUDY_CHILDREN = ("interventions", "mesh", "secondary_ids", "references")
STUDY_FROM_RAW = ("arms", "primary_outcomes", "detailed_description", "eligibility", "aliases")


@dataclass(slots=True)
class StudyRecord:
    """One registration, normalised. ``phase``/``status`` are TAXONOMY.md canonical values."""

    registry: str
    registry_id: str
    title: str
    url: str
    raw: bytes  # the registry's record, serialised compactly (JSON or XML bytes)
    content_hash: str
    official_title: str | None = None
    acronym: str | None = None
    study_type: str | None = None
    phase: str = "UNKNOWN"
    phase_raw: str | None = None
    status: str = "UNKNOWN"
    status_raw: str | None = None
    why_stopped: str | None = None
    conditions: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    mesh: list[Mesh] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    enrollment: int | None = None
    enrollment_type: str | None = None
    sponsor: str | None = None
    sponsor_class: str | None = None
    first_posted: dt.date | None = None
    last_update_posted: dt.date | None = None
    start_date: str | None = None
    primary_completion_date: str | None = None
    completion_date: str | None = None
    has_results: bool = False
    results_first_posted: dt.date | None = None
    arms: list[Arm] = field(default_factory=list)
    primary_outcomes: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    brief_summary: str | None = None
    detailed_description: str | None = None
    eligibility: str | None = None
    secondary_ids: list[SecondaryId] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    labels: Any = None  # tracker.classify.Labels, attached by the pipeline before storing
    rules_fingerprint: str | None = None
    # The source whose parser reads ``raw`` again, when it is not the registry's own (an
    # ICTRP export holds ChiCTR, IRCT, jRCT ... records): None means the registry's source.
    source: str | None = None


@dataclass(slots=True)
class DataBankAccession:
    """A trial registry accession a paper declares (PubMed ``DataBankList``)."""

    bank: str
    accession: str


@dataclass(slots=True)
class PublicationRecord:
    """One paper (or preprint) as one source describes it.

    ``source`` is the listing it came from ("pubmed", "europepmc"); ``source_id`` is that
    listing's own id (PMID for PubMed, ``SRC:id`` for Europe PMC). The upsert merges records of
    the same paper on PMID, then PMCID, then DOI.
    """

    source: str
    source_id: str
    title: str
    raw: bytes
    content_hash: str
    pmid: str | None = None
    pmcid: str | None = None
    doi: str | None = None
    abstract: str | None = None
    journal: str | None = None
    pub_date: str | None = None  # ISO partial: "2019", "2019-11", "2019-11-05"
    pub_year: int | None = None
    publication_types: list[str] = field(default_factory=list)
    mesh: list[Mesh] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    authors: str | None = None
    accessions: list[DataBankAccession] = field(default_factory=list)
    is_preprint: bool = False
    preprint_of: str | None = None  # id of the published version when the source says so
    date_revised: dt.date | None = None
    index_date: dt.date | None = None  # Entrez date (PubMed) / FIRST_IDATE (Europe PMC)
    deleted: bool = False
    url: str | None = None
    labels: Any = None  # tracker.classify.Labels, attached by the pipeline before storing
    rules_fingerprint: str | None = None
