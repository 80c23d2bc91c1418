"""Measure the classifier against the hand-labelled evaluation sets (``tracker/evalsets/``,
package data; tests/eval/README.md says how each was built).

``python -m tracker.evaluation [path.jsonl] [--rules rules.toml]`` (``tracker evaluate``) prints
precision, recall and F1 per label family (relevance; condition group micro and per label; cell
source; origin; product), the MSC role and phase confusion matrices (expected x predicted) and
every misclassified record.

Two line formats are read. An *evaluation record* (``msc_eval.jsonl``) holds the record's fields
and its hand labels under ``labels`` (the role among them where labelled); with ``raw_record``
it holds the registry's whole record instead, read by its source's parser (``source``, else
the registry's). A *held-out label line* (``tests/eval/heldout/
heldout_labels.jsonl``, written by ``write_labels.py``) holds only an NCT id and the labels
(``msc_relevant``, the four families, ``note``); its record is read from the classic
ClinicalTrials.gov CSV export it was drawn from (``tests/fixtures/ctgov_msc/``), and phase is
scored only where a line labels it. Every line is checked before anything is classified: a file
that is missing, a directory, not UTF-8, not JSON lines, or of the wrong shape is a
:class:`~tracker.errors.ConfigError` naming the file, the line and the field.

Scoring: relevance is a binary decision over all records. The other families are scored as
multi-label sets (micro-averaged) over the records whose hand label says MSC-relevant; a relevant
record the classifier wrongly rejects therefore counts as missed labels there too. Phase is
compared on every record and must be exact.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from db.records import Intervention, Mesh, PublicationRecord, StudyRecord
from tracker import taxonomy
from tracker.classify import Labels, Rules, classify_publication, classify_study, load_rules
from tracker.errors import ConfigError, TrackerError
from tracker.role import RELEVANT_ROLES, ROLES

__all__ = ["BARS", "DEFAULT_EVAL_PATH", "EvalReport", "FamilyScore", "evaluate",
           "render_report", "row_to_record"]

# The shipped sets (package data, so ``tracker evaluate`` works after ``pip install .``):
# records of the classic CSV export (titles, conditions, interventions) and whole
# ClinicalTrials.gov records with their MSC role (tests/eval/full/).
EVALSETS = Path(__file__).resolve().parent / "evalsets"
DEFAULT_EVAL_PATH = EVALSETS / "msc_eval.jsonl"
FULL_EVAL_PATH = EVALSETS / "msc_full_eval.jsonl"
# Real ISRCTN, EU CTR and ICTRP records (tests/eval/registries): none of them is an MSC
# trial, so this set measures what the classifier rejects on each registry's fields.
REGISTRIES_EVAL_PATH = EVALSETS / "msc_registries_eval.jsonl"
DEFAULT_SETS = (DEFAULT_EVAL_PATH, FULL_EVAL_PATH, REGISTRIES_EVAL_PATH)
# The held-out lines' records, for an installed tracker without tests/fixtures.
HELDOUT_RECORDS_JSONL = EVALSETS / "heldout_records.jsonl"
# The records behind held-out label lines (tests/eval/heldout/select_ids.py drew them from it).
HELDOUT_RECORDS_CSV = (Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ctgov_msc"
                       / "ctgov_classic_export_mesenchymal_1265.csv")
_MAX_EVAL_BYTES = 256 << 20

# Acceptance bars of the evaluation (issue: "Evaluation, measured").
BARS: dict[str, float] = {
    "relevance_precision": 0.95,
    "relevance_recall": 0.95,
    "condition_group_micro_f1": 0.90,
    "cell_source_micro_f1": 0.90,
    "origin_micro_f1": 0.90,
    "phase_accuracy": 1.0,
    # Scored on sets whose lines label the MSC role (the full-record set):
    "role_accuracy": 0.90,
    "nonrelevant_rejected": 0.80,  # share of the records not relevant by hand that are rejected
}
_ROLE_FIGURES = ("role_accuracy", "nonrelevant_rejected")

SET_FAMILIES = ("condition_groups", "cell_sources", "origins", "products")


@dataclass(slots=True)
class FamilyScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(slots=True)
class Miss:
    record_id: str
    family: str
    expected: Any
    predicted: Any
    reason: str


@dataclass(slots=True)
class EvalReport:
    path: str
    rules_fingerprint: str
    n_records: int
    n_relevant: int
    relevance: FamilyScore
    families: dict[str, FamilyScore]
    per_label: dict[str, dict[str, FamilyScore]]
    phase_confusion: Counter[tuple[str, str]]
    misses: list[Miss] = field(default_factory=list)
    role_confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    minimal: FamilyScore = field(default_factory=FamilyScore)  # minimally_manipulated flag

    @property
    def role_scored(self) -> bool:
        return bool(self.role_confusion)

    @property
    def role_accuracy(self) -> float:
        total = sum(self.role_confusion.values())
        ok = sum(n for (e, p), n in self.role_confusion.items() if e == p)
        return ok / total if total else 1.0

    @property
    def nonrelevant_rejected(self) -> float:
        """True negatives over the records that are not relevant by hand label."""
        negatives = self.n_records - self.n_relevant
        return (negatives - self.relevance.fp) / negatives if negatives else 1.0

    @property
    def phase_accuracy(self) -> float:
        total = sum(self.phase_confusion.values())
        ok = sum(n for (e, p), n in self.phase_confusion.items() if e == p)
        return ok / total if total else 1.0

    def figures(self) -> dict[str, float]:
        """The figures that :data:`BARS` constrains."""
        return {
            "relevance_precision": self.relevance.precision,
            "relevance_recall": self.relevance.recall,
            "condition_group_micro_f1": self.families["condition_groups"].f1,
            "cell_source_micro_f1": self.families["cell_sources"].f1,
            "origin_micro_f1": self.families["origins"].f1,
            "phase_accuracy": self.phase_accuracy,
            "role_accuracy": self.role_accuracy,
            "nonrelevant_rejected": self.nonrelevant_rejected,
        }

    @property
    def phase_scored(self) -> bool:
        """False for a set whose lines do not label phase (held-out label lines)."""
        return bool(self.phase_confusion)

    def failures(self) -> dict[str, tuple[float, float]]:
        """figure -> (value, bar) for every scored figure below its bar."""
        figs = self.figures()
        return {k: (figs[k], bar) for k, bar in BARS.items() if figs[k] < bar
                and (k != "phase_accuracy" or self.phase_scored)
                and (k not in _ROLE_FIGURES or self.role_scored)}


def _phase(row: dict[str, Any]) -> str:
    vocab, raw = row.get("phase_vocab"), row.get("phase_raw")
    if vocab == "ctgov_classic":
        return taxonomy.ctgov_classic_phase(raw)
    if vocab == "ctgov_v2":
        return taxonomy.ctgov_phase(raw)
    return "UNKNOWN"


def _status(row: dict[str, Any]) -> str:
    vocab, raw = row.get("phase_vocab"), row.get("status_raw")
    if vocab == "ctgov_classic":
        return taxonomy.ctgov_classic_status(raw)
    return taxonomy.ctgov_status(raw)


def row_to_record(row: dict[str, Any]) -> StudyRecord | PublicationRecord:
    """Turn one evaluation row into the record a source parser would produce (raw=b"")."""
    mesh = [Mesh(kind=m["kind"], mesh_id=m.get("mesh_id"), term=m.get("term") or "",
                 ancestor=bool(m.get("ancestor")), major=bool(m.get("major")))
            for m in row.get("mesh", [])]
    if row.get("raw_record") is not None:
        from sources import parse_raw

        raw = row["raw_record"]
        data = (raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)).encode()
        try:
            # the source whose parser reads the record (an ICTRP export's ChiCTR trial is
            # read by ICTRP's), else the registry's own
            return parse_raw(row.get("source") or row.get("registry") or "ctgov", data)
        except TrackerError as exc:
            raise ConfigError(f"evaluation record {row['id']}: its raw_record does not parse "
                              f"({exc})") from None
    if row["kind"] == "study":
        raw_phase = row.get("phase_raw")
        return StudyRecord(
            registry=row.get("registry", "ctgov"),
            registry_id=row["registry_id"],
            title=row.get("title") or "",
            url=row.get("url") or "",
            raw=b"",
            content_hash="",
            official_title=row.get("official_title"),
            acronym=row.get("acronym"),
            study_type=row.get("study_type"),
            phase=_phase(row),
            phase_raw="|".join(raw_phase) if isinstance(raw_phase, list) else raw_phase,
            status=_status(row),
            status_raw=row.get("status_raw"),
            conditions=list(row.get("conditions", [])),
            keywords=list(row.get("keywords", [])),
            mesh=mesh,
            interventions=[Intervention(type=i.get("type"), name=i.get("name") or "",
                                        description=i.get("description"),
                                        other_names=list(i.get("other_names", [])))
                           for i in row.get("interventions", [])],
            brief_summary=row.get("brief_summary"),
            detailed_description=row.get("detailed_description"),
            eligibility=row.get("eligibility"),
        )
    return PublicationRecord(
        source=row["source"],
        source_id=row["source_id"],
        title=row.get("title") or "",
        raw=b"",
        content_hash="",
        pmid=row.get("pmid"),
        abstract=row.get("abstract"),
        journal=row.get("journal"),
        publication_types=list(row.get("publication_types", [])),
        mesh=mesh,
        keywords=list(row.get("keywords", [])),
    )


# ----------------------------------------------------------------- line shapes -------------
#
# Checked strictly (no coercion): a row that passes is used as it stands by row_to_record.

_Id = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
_Phase = Literal[taxonomy.PHASES]  # type: ignore[valid-type]
_Group = Literal[taxonomy.CONDITION_GROUPS]  # type: ignore[valid-type]
_Source = Literal[taxonomy.CELL_SOURCES]  # type: ignore[valid-type]
_Origin = Literal[taxonomy.ORIGINS]  # type: ignore[valid-type]
_Product = Literal[taxonomy.PRODUCTS]  # type: ignore[valid-type]
_Role = Literal[ROLES]  # type: ignore[valid-type]


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _MeshShape(_Shape):
    kind: str
    mesh_id: str | None = None
    term: str | None = None
    ancestor: bool = False
    major: bool = False


class _InterventionShape(_Shape):
    type: str | None = None
    name: str | None = None
    description: str | None = None
    other_names: list[str] = []


class _LabelShape(_Closed):
    msc_relevant: bool
    condition_groups: list[_Group]
    cell_sources: list[_Source]
    origins: list[_Origin]
    products: list[_Product]
    phase: _Phase
    note: str = ""
    role: _Role | None = None
    minimally_manipulated: bool | None = None
    second_pass: dict[str, Any] | None = None  # the other labeller's label, where it differed


class _RecordShape(_Shape):
    id: _Id
    title: str | None = None
    keywords: list[str] = []
    mesh: list[_MeshShape] = []
    labels: _LabelShape


class _StudyShape(_RecordShape):
    kind: Literal["study"]
    registry: str = "ctgov"
    registry_id: _Id
    official_title: str | None = None
    acronym: str | None = None
    study_type: str | None = None
    phase_vocab: Literal["ctgov_classic", "ctgov_v2"] | None = None
    phase_raw: str | list[str] | None = None
    status_raw: str | None = None
    conditions: list[str] = []
    interventions: list[_InterventionShape] = []
    brief_summary: str | None = None
    detailed_description: str | None = None
    eligibility: str | None = None
    url: str | None = None
    # The registry's whole record (a JSON object, or the XML text), read by its source's
    # parser (sources.RAW_PARSERS) as a stored record is; the fields above are then unused.
    raw_record: dict[str, Any] | str | None = None
    source: str | None = None  # the source whose parser reads raw_record (default: registry)


class _PublicationShape(_RecordShape):
    kind: Literal["publication"]
    source: _Id
    source_id: _Id
    pmid: str | None = None
    abstract: str | None = None
    journal: str | None = None
    publication_types: list[str] = []


class _HeldOutShape(_Closed):
    """A held-out label line: an NCT id and its labels; phase only if labelled."""

    id: Annotated[str, StringConstraints(pattern=r"^NCT\d{8}$")]
    msc_relevant: bool
    condition_groups: list[_Group]
    cell_sources: list[_Source]
    origins: list[_Origin]
    products: list[_Product]
    phase: _Phase | None = None
    note: str = ""


_PROBLEMS = {
    "missing": "is missing",
    "string_type": "is not a string",
    "bool_type": "is not true or false",
    "list_type": "is not a list",
    "dict_type": "is not an object",
    "model_type": "is not an object",
    "model_attributes_type": "is not an object",
    "extra_forbidden": "is not a field of this line format",
    "string_too_short": "is empty",
    "string_pattern_mismatch": "is not an NCT id (NCT and 8 digits)",
}


def _shape_error(where: str, exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "union")))
    kind = err["type"]
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        problem = f"{err['input']!r} is not one of {expected}"
    else:
        problem = _PROBLEMS.get(kind, str(err["msg"]).lower())
        if kind.endswith("_type") and kind != "missing":
            problem += f" (got {type(err['input']).__name__})"
    return ConfigError(f"{where}: {loc or 'the line'} {problem}")


def _check_row(row: Any, where: str) -> str:
    """``"record"`` or ``"heldout"``: which format the line is; ConfigError if neither fits."""
    if not isinstance(row, dict):
        raise ConfigError(f"{where} is not a JSON object (got a JSON "
                          f"{type(row).__name__.replace('dict', 'object')})")
    if "labels" in row:
        shape: type[BaseModel] = (_PublicationShape if row.get("kind") == "publication"
                                  else _StudyShape)
        fmt = "record"
    elif "msc_relevant" in row:
        shape, fmt = _HeldOutShape, "heldout"
    else:
        raise ConfigError(f"{where} has neither 'labels' (an evaluation record) nor "
                          "'msc_relevant' (a held-out label line)")
    try:
        shape.model_validate(row)
    except ValidationError as exc:
        raise _shape_error(where, exc) from None
    labels = row.get("labels") or {}
    if labels.get("role") is not None and (labels["role"] in RELEVANT_ROLES) != \
            labels["msc_relevant"]:
        raise ConfigError(f"{where}: labels.role {labels['role']!r} and labels.msc_relevant "
                          f"{labels['msc_relevant']} disagree (relevant means role therapy or "
                          "laboratory)")
    return fmt


def _read_lines(p: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line; ConfigError for an unreadable file."""
    if p.is_dir():
        raise ConfigError(f"evaluation set {p} is a directory; pass a JSONL file")
    if not p.exists():
        hint = ("; the shipped set lives in tests/eval of a source checkout, or pass a JSONL "
                "path" if p == DEFAULT_EVAL_PATH else "")
        raise ConfigError(f"evaluation set not found: {p}{hint}")
    if not p.is_file():
        raise ConfigError(f"evaluation set {p} is not a regular file; pass a JSONL file")
    try:
        with p.open("rb") as fh:
            data = fh.read(_MAX_EVAL_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"evaluation set {p} cannot be read ({exc.strerror or exc})") from None
    if len(data) > _MAX_EVAL_BYTES:
        raise ConfigError(f"evaluation set {p} is over 256 MiB; it is not an evaluation set")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"evaluation set {p} line {line} is not UTF-8 text (byte "
                          f"0x{data[exc.start]:02x}); is it a JSONL file?") from None
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not lines:
        raise ConfigError(f"evaluation set {p} holds no records (it is empty); pass a JSONL "
                          "file with one labelled record per line")
    return lines


def _classic_interventions(cell: str) -> list[dict[str, Any]]:
    out = []
    for part in (p.strip() for p in cell.split("|")):
        if not part:
            continue
        typ, sep, name = part.partition(": ")
        if not sep:
            typ, name = None, part  # type: ignore[assignment]
        out.append({"type": typ, "name": name.strip(), "description": None, "other_names": []})
    return out


def heldout_records(wanted: set[str], csv_path: Path = HELDOUT_RECORDS_CSV) -> dict[str, dict]:
    """The evaluation-record fields of ``wanted`` NCT ids, read from the classic CT.gov CSV
    export exactly as ``tests/eval/build_eval_set.py`` reads it (labels not included)."""
    out: dict[str, dict] = {}
    if not csv_path.is_file():
        # An installed tracker: the held-out records ship beside the sets.
        if csv_path == HELDOUT_RECORDS_CSV and HELDOUT_RECORDS_JSONL.is_file():
            for line in HELDOUT_RECORDS_JSONL.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                if row["id"] in wanted:
                    out[row["id"]] = row
            return out
        raise ConfigError(f"held-out label lines need their records from {csv_path}, which is "
                          "not there (it is in tests/fixtures of a source checkout)")
    with csv_path.open(encoding="utf-8", newline="") as fh:
        for row_no, row in enumerate(csv.DictReader(fh), start=1):
            nct = row["NCT Number"]
            if nct not in wanted or nct in out:
                continue
            out[nct] = {
                "id": nct, "kind": "study",
                "provenance": {"file": "ctgov_msc/" + csv_path.name, "data_row": row_no,
                               "rank": row["Rank"]},
                "registry": "ctgov", "registry_id": nct,
                "title": row["Title"], "acronym": row["Acronym"] or None,
                "study_type": row["Study Type"] or None,
                "phase_vocab": "ctgov_classic", "phase_raw": row["Phases"],
                "status_raw": row["Status"],
                "conditions": [c for c in row["Conditions"].split("|") if c],
                "interventions": _classic_interventions(row["Interventions"]),
                "keywords": [], "mesh": [], "brief_summary": None,
                "detailed_description": None, "eligibility": None, "url": row["URL"],
            }
    return out


def load_eval_rows(path: Path | None = None) -> list[dict[str, Any]]:
    """Every row of an evaluation set, in evaluation-record form (``labels`` inside).

    Held-out label lines are joined with their records (``heldout_records``); their
    ``labels.phase`` is None unless the line labels it. Raises ConfigError, naming the file,
    the line and what is wrong with it, for anything that is not a well-formed set.
    """
    p = Path(path) if path else DEFAULT_EVAL_PATH
    rows: list[tuple[int, str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for n, line in _read_lines(p):
        where = f"evaluation set {p} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where} is not JSON ({exc.msg} at column {exc.colno}); each "
                              "line must be one JSON object") from None
        fmt = _check_row(row, where)
        rid = row["id"].strip()
        if rid in seen:
            raise ConfigError(f"{where}: id {rid!r} is already on line {seen[rid]}")
        seen[rid] = n
        rows.append((n, fmt, row))
    held = {row["id"].strip() for _, fmt, row in rows if fmt == "heldout"}
    records = heldout_records(held) if held else {}
    out: list[dict[str, Any]] = []
    for n, fmt, row in rows:
        if fmt == "record":
            out.append(row)
            continue
        rid = row["id"].strip()
        if rid not in records:
            raise ConfigError(f"evaluation set {p} line {n}: no record for {rid} in "
                              f"{HELDOUT_RECORDS_CSV.name}; a held-out line names a study of "
                              "that export")
        labels = {k: row.get(k) for k in ("msc_relevant", "condition_groups", "cell_sources",
                                           "origins", "products", "phase")}
        out.append({**records[rid], "labels": labels | {"note": row.get("note", "")}})
    return out


def classify_row(row: dict[str, Any], rules: Rules) -> Labels:
    record = row_to_record(row)
    if isinstance(record, StudyRecord):
        return classify_study(record, rules)
    return classify_publication(record, rules)


def evaluate(path: Path | None = None, rules: Rules | None = None) -> EvalReport:
    """Classify every record of the evaluation set and score it against the hand labels."""
    rows = load_eval_rows(path)
    rules = rules or load_rules()
    rel = FamilyScore()
    fams = {f: FamilyScore() for f in SET_FAMILIES}
    per_label: dict[str, dict[str, FamilyScore]] = {f: {} for f in SET_FAMILIES}
    confusion: Counter[tuple[str, str]] = Counter()
    role_confusion: Counter[tuple[str, str]] = Counter()
    minimal = FamilyScore()
    misses: list[Miss] = []
    n_rel = 0
    for row in rows:
        gold = row["labels"]
        pred = classify_row(row, rules)
        rid = row["id"]
        g_rel, p_rel = bool(gold["msc_relevant"]), pred.msc_relevant
        if g_rel and p_rel:
            rel.tp += 1
        elif p_rel:
            rel.fp += 1
        elif g_rel:
            rel.fn += 1
        if g_rel != p_rel:
            misses.append(Miss(rid, "relevance", g_rel, p_rel, pred.reason))
        if gold.get("role") is not None:
            role_confusion[(gold["role"], pred.role)] += 1
            if gold["role"] != pred.role:
                misses.append(Miss(rid, "role", gold["role"], pred.role, pred.reason))
            if g_rel and gold.get("minimally_manipulated") is not None:
                g_min, p_min = bool(gold["minimally_manipulated"]), pred.minimally_manipulated
                minimal.tp += g_min and p_min
                minimal.fp += p_min and not g_min
                minimal.fn += g_min and not p_min
                if g_min != p_min:
                    misses.append(Miss(rid, "minimally_manip", g_min, p_min, ""))
        if gold.get("phase") is not None:  # held-out label lines may leave phase out
            confusion[(gold["phase"], pred.phase)] += 1
            if gold["phase"] != pred.phase:
                misses.append(Miss(rid, "phase", gold["phase"], pred.phase, ""))
        if not g_rel:
            continue
        n_rel += 1
        for fam in SET_FAMILIES:
            g, p = set(gold[fam]), set(getattr(pred, fam))
            score = fams[fam]
            score.tp += len(g & p)
            score.fp += len(p - g)
            score.fn += len(g - p)
            for lab in g | p:
                s = per_label[fam].setdefault(lab, FamilyScore())
                s.tp += lab in g and lab in p
                s.fp += lab in p and lab not in g
                s.fn += lab in g and lab not in p
            if g != p:
                why = "; ".join(f"{e.label}<-{e.field}:{e.matched}" for e in pred.evidence
                                if e.family == fam.rstrip("s"))
                misses.append(Miss(rid, fam, sorted(g), sorted(p), why))
    return EvalReport(
        path=str(path or DEFAULT_EVAL_PATH),
        rules_fingerprint=rules.fingerprint,
        n_records=len(rows),
        n_relevant=n_rel,
        relevance=rel,
        families=fams,
        per_label=per_label,
        phase_confusion=confusion,
        misses=misses,
        role_confusion=role_confusion,
        minimal=minimal,
    )


def _order(fam: str) -> tuple[str, ...]:
    return {"condition_groups": taxonomy.CONDITION_GROUPS, "cell_sources": taxonomy.CELL_SOURCES,
            "origins": taxonomy.ORIGINS, "products": taxonomy.PRODUCTS}[fam]


def render_report(report: EvalReport) -> str:
    """Plain-text report: scores per family, phase confusion matrix, misclassified records."""
    out: list[str] = []
    w = out.append
    w(f"Evaluation set: {report.path}")
    w(f"Records: {report.n_records} ({report.n_relevant} MSC-relevant by hand label); "
      f"rules fingerprint {report.rules_fingerprint[:12]}")
    w("")
    w(f"{'family':<28}{'precision':>10}{'recall':>10}{'F1':>10}{'tp':>6}{'fp':>6}{'fn':>6}")

    def line(name: str, s: FamilyScore) -> None:
        w(f"{name:<28}{s.precision:>10.3f}{s.recall:>10.3f}{s.f1:>10.3f}"
          f"{s.tp:>6}{s.fp:>6}{s.fn:>6}")

    line("relevance", report.relevance)
    for fam in SET_FAMILIES:
        line(f"{fam.rstrip('s')} (micro)", report.families[fam])
        labels = report.per_label[fam]
        for lab in [x for x in _order(fam) if x in labels] + sorted(set(labels) - set(_order(fam))):
            line(f"  {lab}", labels[lab])
    w("")
    phases = [p for p in taxonomy.PHASES
              if any(p in key for key in report.phase_confusion)]
    if not phases:
        w("Phase confusion: no record of this set labels its phase (not scored)")
    else:
        w(f"Phase confusion (rows = expected, columns = predicted); accuracy "
          f"{report.phase_accuracy:.3f}")
        width = max(len(p) for p in phases) + 2
        w(" " * width + "".join(f"{p[:10]:>11}" for p in phases))
        for e in phases:
            w(f"{e:<{width}}" + "".join(f"{report.phase_confusion.get((e, p), 0):>11}"
                                          for p in phases))
    w("")
    if report.role_scored:
        roles = [r for r in ROLES if any(r in key for key in report.role_confusion)]
        w(f"MSC role confusion (rows = expected, columns = predicted); accuracy "
          f"{report.role_accuracy:.3f}")
        w(" " * 15 + "".join(f"{r[:12]:>13}" for r in roles))
        for e in roles:
            w(f"{e:<15}" + "".join(f"{report.role_confusion.get((e, p), 0):>13}"
                                   for p in roles))
        line("minimally manipulated", report.minimal)
        w("")
    w("Bars:")
    figs = report.figures()
    for k, bar in BARS.items():
        if k == "phase_accuracy" and not report.phase_scored:
            w(f"  {k:<28}{'n/a':>8}  >= {bar:.2f}  not scored (no phase labels)")
            continue
        if k in _ROLE_FIGURES and not report.role_scored:
            w(f"  {k:<28}{'n/a':>8}  >= {bar:.2f}  not scored (no role labels)")
            continue
        status = "ok" if figs[k] >= bar else "BELOW BAR"
        w(f"  {k:<28}{figs[k]:>8.3f}  >= {bar:.2f}  {status}")
    w("")
    w(f"Misclassified ({len(report.misses)}):")
    for m in report.misses:
        w(f"  {m.record_id:<28} {m.family:<17} expected={m.expected} predicted={m.predicted}"
          + (f"  [{m.reason}]" if m.reason else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracker.evaluation",
                                 description="Score the MSC classifier on the labelled set.")
    ap.add_argument("path", nargs="?", type=Path, default=None, help="evaluation JSONL")
    ap.add_argument("--rules", type=Path, default=None, help="rules TOML (default: packaged)")
    args = ap.parse_args(argv)
    try:
        report = evaluate(args.path, load_rules(args.rules) if args.rules else None)
    except TrackerError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(render_report(report))
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
