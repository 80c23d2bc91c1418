"""Measure the classifier against the hand-labelled evaluation set (``tests/eval/msc_eval.jsonl``).

``python -m tracker.evaluation [path.jsonl] [--rules rules.toml]`` prints precision, recall and F1
per label family (relevance; condition group micro and per label; cell source; origin; product),
the phase confusion matrix (expected x predicted) and every misclassified record.

Scoring: relevance is a binary decision over all records. The other families are scored as
multi-label sets (micro-averaged) over the records whose hand label says MSC-relevant; a relevant
record the classifier wrongly rejects therefore counts as missed labels there too. Phase is
compared on every record and must be exact.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.records import Intervention, Mesh, PublicationRecord, StudyRecord
from tracker import taxonomy
from tracker.classify import Labels, Rules, classify_publication, classify_study, load_rules

__all__ = ["BARS", "DEFAULT_EVAL_PATH", "EvalReport", "FamilyScore", "evaluate",
           "render_report", "row_to_record"]

DEFAULT_EVAL_PATH = Path(__file__).resolve().parents[1] / "tests" / "eval" / "msc_eval.jsonl"

# Acceptance bars of the evaluation (issue: "Evaluation, measured").
BARS: dict[str, float] = {
    "relevance_precision": 0.95,
    "relevance_recall": 0.95,
    "condition_group_micro_f1": 0.90,
    "cell_source_micro_f1": 0.90,
    "origin_micro_f1": 0.90,
    "phase_accuracy": 1.0,
}

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
        }

    def failures(self) -> dict[str, tuple[float, float]]:
        """figure -> (value, bar) for every figure below its bar."""
        figs = self.figures()
        return {k: (figs[k], bar) for k, bar in BARS.items() if figs[k] < bar}


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


def load_eval_rows(path: Path | None = None) -> list[dict[str, Any]]:
    p = Path(path) if path else DEFAULT_EVAL_PATH
    if not p.is_file():
        raise FileNotFoundError(f"evaluation set not found: {p}")
    with p.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


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
    w(f"Phase confusion (rows = expected, columns = predicted); accuracy "
      f"{report.phase_accuracy:.3f}")
    width = max(len(p) for p in phases) + 2 if phases else 10
    w(" " * width + "".join(f"{p[:10]:>11}" for p in phases))
    for e in phases:
        w(f"{e:<{width}}" + "".join(f"{report.phase_confusion.get((e, p), 0):>11}"
                                      for p in phases))
    w("")
    w("Bars:")
    figs = report.figures()
    for k, bar in BARS.items():
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
    report = evaluate(args.path, load_rules(args.rules) if args.rules else None)
    print(render_report(report))
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
