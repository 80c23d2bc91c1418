"""Classify studies and publications the way an MSC reviewer would, and say why.

The rules live in a TOML data file (``tracker/rules/msc_rules.toml`` by default; a user may
point at their own copy). :func:`load_rules` reads and precompiles it once; :func:`classify_study`
and :func:`classify_publication` then cost tens of microseconds per record.

How a record is read (see the comments at the top of the rules file):

* structured fields first - conditions, MeSH descriptors (with ClinicalTrials.gov ancestors),
  intervention names, keywords - then titles; summaries/abstracts only when those gave nothing
  for a label family;
* eligibility criteria are never read; in free text, a term closely preceded by a negation
  ("no history of", "without", "excluding") is ignored;
* MSC-intervention evidence beats exclusion terms (an MSC co-infusion in a haematopoietic
  transplant is relevant); exclusions (HSCT, cancer stem cells, GIST, EMT, ...) win otherwise.

Every label carries :class:`Evidence`: the field it came from and the term or MeSH id matched.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from db.records import Mesh, PublicationRecord, StudyRecord
from tracker import taxonomy
from tracker.matching import (
    Field,
    Hit,
    LabelSet,
    Probe,
    RulesError,
    negated_before,
    norm_term,
    str_list,
    strip_eligibility,
)
from tracker.role import RELEVANT_ROLES, RoleRules, build_role_rules, paper_role, study_role

__all__ = [
    "Evidence",
    "Labels",
    "Rules",
    "RulesError",
    "classify_publication",
    "classify_study",
    "load_rules",
]

RULES_PACKAGE = "tracker.rules"
RULES_FILE = "msc_rules.toml"
# The product dictionary: ``[meta] products`` of a rules file names it, relative to that file;
# a rules file beside which it is missing reads the packaged one.
PRODUCTS_FILE = "msc_products.toml"

# Free text is a fallback; the opening of a long description says what the study is about, and
# scanning whole 15,000-character protocols would cost more than the rest of the record.
FREE_TEXT_LIMIT = 2000

FAMILIES = ("relevance", "condition_group", "cell_source", "origin", "product", "phase")


@dataclass(slots=True, frozen=True)
class Evidence:
    """Why one label was given: ``family``/``label`` matched ``matched`` in ``field``."""

    family: str  # relevance | condition_group | cell_source | origin | product | phase
    label: str
    field: str
    matched: str


@dataclass(slots=True)
class Labels:
    """The classifier's verdict on one record (lists hold TAXONOMY slugs in TAXONOMY order)."""

    msc_relevant: bool
    reason: str
    condition_groups: list[str]
    cell_sources: list[str]
    origins: list[str]
    products: list[str]
    phase: str
    evidence: list[Evidence] = field(default_factory=list)
    role: str = "none"  # tracker.role.ROLES; msc_relevant is role therapy or laboratory
    minimally_manipulated: bool = False

    @property
    def msc_role(self) -> str:
        """``role`` under the name its column has (``study.msc_role``)."""
        return self.role



@dataclass(slots=True, frozen=True)
class _NamedProduct:
    cell_source: str | None
    origin: str | None
    product: str | None
    minimally_manipulated: bool = False
    maker: str | None = None


@dataclass(slots=True)
class Rules:
    """A loaded, precompiled ruleset. ``fingerprint`` changes whenever the file's bytes do."""

    path: str
    fingerprint: str
    name: str
    version: str
    condition_groups: tuple[str, ...]
    msc: LabelSet
    product_terms: LabelSet
    exclusions: LabelSet
    named: LabelSet
    named_info: dict[str, _NamedProduct]
    groups: LabelSet
    group_context: LabelSet  # a group's ``context_terms``: used only when no group matched
    sources: LabelSet
    origins: LabelSet
    products: LabelSet
    negation: re.Pattern[str]
    summary_min_mentions: int
    role: RoleRules
    msc_probe: Probe  # may a record name an MSC term or product at all?


def _read(path: Path | None, name: str, what: str) -> tuple[bytes, str, dict[str, Any]]:
    """(bytes, where, parsed TOML) of a rules or products file (``None``: the packaged one)."""
    try:
        if path is None:
            data = resources.files(RULES_PACKAGE).joinpath(name).read_bytes()
            where = f"<package {RULES_PACKAGE}/{name}>"
        else:
            data = Path(path).read_bytes()
            where = str(path)
    except (OSError, ModuleNotFoundError) as exc:
        raise RulesError(f"cannot read {what} {path or name}: {exc}") from None
    try:
        return data, where, tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"{what} {where} is not valid TOML: {exc}") from None


def load_rules(path: Path | str | None = None) -> Rules:
    """Read and precompile a rules file (``None``: the packaged ``msc_rules.toml``) and the
    product dictionary it names (``[meta] products``, beside it; else the packaged one).

    Raises :class:`RulesError` for a missing, unreadable or malformed file. The fingerprint
    covers both files' bytes.
    """
    data, where, doc = _read(Path(path) if path is not None else None, RULES_FILE,
                             "rules file")
    meta = doc.get("meta", {}) if isinstance(doc.get("meta"), dict) else {}
    name = meta.get("products", PRODUCTS_FILE)
    if not isinstance(name, str) or not name.strip():
        raise RulesError(f"rules file {where}: [meta] products must name a TOML file")
    beside = Path(path).parent / name if path is not None else None
    if beside is not None and beside.is_file():
        pdata, pwhere, pdoc = _read(beside, name, "product dictionary")
    else:
        pdata, pwhere, pdoc = _read(None, PRODUCTS_FILE, "product dictionary")
    try:
        products = _products_of(pdoc, pwhere)
        return _build(doc, where, hashlib.sha256(data + b"\0" + pdata).hexdigest(), products)
    except RulesError as exc:
        raise RulesError(f"rules file {where}: {exc}") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise RulesError(f"rules file {where}: malformed ({exc})") from None


def _products_of(doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items = doc.get("product", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise RulesError(f"product dictionary {where}: [[product]] must be an array of tables")
    return items


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise RulesError(f"missing or malformed [{key}] section")
    return value


def _check_slugs(specs: dict[str, Any], allowed: tuple[str, ...], section: str) -> None:
    for label, spec in specs.items():
        if label not in allowed:
            raise RulesError(f"[{section}.{label}]: unknown label; allowed: {', '.join(allowed)}")
        if not isinstance(spec, dict):
            raise RulesError(f"[{section}.{label}] must be a table")


def _build(doc: dict[str, Any], where: str, fingerprint: str,
           dictionary: list[dict[str, Any]] | None = None) -> Rules:
    meta = doc.get("meta", {}) or {}
    rel = _table(doc, "relevance")
    groups = _table(doc, "condition_groups")
    sources = _table(doc, "cell_sources")
    origins = _table(doc, "origins")
    products = _table(doc, "products")
    for label, spec in groups.items():
        if not isinstance(spec, dict):
            raise RulesError(f"[condition_groups.{label}] must be a table")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", label):
            raise RulesError(f"[condition_groups.{label}]: slugs are lower_snake_case")
    _check_slugs(sources, taxonomy.CELL_SOURCES, "cell_sources")
    _check_slugs(origins, taxonomy.ORIGINS, "origins")
    _check_slugs(products, taxonomy.PRODUCTS, "products")
    # TAXONOMY groups first in their fixed order, then any group a user added.
    order = [g for g in taxonomy.CONDITION_GROUPS if g in groups or g == "other"]
    order += [g for g in groups if g not in taxonomy.CONDITION_GROUPS]

    named_specs: dict[str, dict[str, Any]] = {}
    named_info: dict[str, _NamedProduct] = {}
    named_list = doc.get("named_product", [])
    if not isinstance(named_list, list):
        raise RulesError("[[named_product]] must be an array of tables")
    # A rules file's own [[named_product]] tables first (a user's additions), then the
    # product dictionary's [[product]] tables.
    entries = [(f"named_product #{i + 1}", f"named_product_{i + 1}", item)
               for i, item in enumerate(named_list)]
    entries += [(f"product #{i + 1} of the product dictionary", f"product_{i + 1}", item)
                for i, item in enumerate(dictionary or [])]
    for what, key, item in entries:
        if not isinstance(item, dict):
            raise RulesError(f"{what} must be a table")
        minimal = item.get("minimally_manipulated", False)
        if not isinstance(minimal, bool):
            raise RulesError(f"{what}: minimally_manipulated must be true or false")
        info = _NamedProduct(item.get("cell_source"), item.get("origin"), item.get("product"),
                             minimal, item.get("maker"))
        for fam, allowed in (("cell_source", taxonomy.CELL_SOURCES),
                             ("origin", taxonomy.ORIGINS), ("product", taxonomy.PRODUCTS)):
            v = getattr(info, fam)
            if v is not None and v not in allowed:
                raise RulesError(f"{what}: unknown {fam} {v!r}")
        named_specs[key] = {"terms": item.get("names", []),
                            "exact_case": item.get("exact_case", [])}
        named_info[key] = info

    neg = doc.get("negation", {}) or {}
    cues = [norm_term(c) for c in str_list(neg, "cues", "negation")]
    window = int(neg.get("window_words", 4))
    if cues:
        cue_rx = "|".join(re.escape(c) for c in sorted(cues, key=len, reverse=True))
        negation = re.compile(r"\b(?:" + cue_rx + r")(?: [^ |]+){0," + str(window) + r"} $")
    else:
        negation = re.compile(r"(?!)")

    msc = LabelSet("relevance", {"msc": {
        "terms": rel.get("msc_terms", []), "exact_case": rel.get("exact_case", []),
        "patterns": rel.get("patterns", []), "mesh_ids": rel.get("mesh_ids", []),
        "pattern_anchors": rel.get("pattern_anchors", [])}}, "relevance")
    product_terms = LabelSet("relevance", {"msc_product": {
        "terms": rel.get("product_terms", [])}}, "relevance")
    named = LabelSet("named_product", named_specs, "named_product")
    return Rules(
        path=where,
        fingerprint=fingerprint,
        name=str(meta.get("name", "")),
        version=str(meta.get("version", "")),
        condition_groups=tuple(order),
        msc=msc,
        product_terms=product_terms,
        exclusions=LabelSet("relevance", {"exclusion": {
            "terms": rel.get("exclusions", []), "mesh_ids": rel.get("exclusion_mesh_ids", [])}},
            "relevance"),
        named=named,
        named_info=named_info,
        groups=LabelSet("condition_group", {
            g: {k: v for k, v in groups[g].items() if k != "context_terms"}
            for g in order if g in groups}, "condition_groups"),
        group_context=LabelSet("condition_group", {
            g: {"terms": groups[g]["context_terms"]}
            for g in order if g in groups and groups[g].get("context_terms")},
            "condition_groups"),
        sources=LabelSet("cell_source", sources, "cell_sources"),
        origins=LabelSet("origin", origins, "origins"),
        products=LabelSet("product", products, "products"),
        negation=negation,
        summary_min_mentions=int(rel.get("summary_min_mentions", 2)),
        role=build_role_rules(doc),
        msc_probe=Probe((named, msc, product_terms)),
    )


# Product context: an MSC term that names the parent of exosomes/conditioned medium is not a
# statement that cells are administered.
_AFTER_PRODUCT = re.compile(
    r"(?:derived |culture derived |cell derived |s derived )?"
    r"(?:exosom|exos\b|exo\b|extracellular|vesic|evs?\b|secretom|conditioned|trophic|lysate|"
    r"pleiotropic|paracrine|signal)")
_BEFORE_PRODUCT = re.compile(
    r"(?:exosom\w*|exos|vesicles?|evs|secretome|medium|media|factors?|molecules|lysates?)"
    r"(?: (?:derived|isolated|produced|obtained))?(?: (?:of|from|by))?(?: [^ |]+){0,4} $")


@dataclass(slots=True)
class _Ctx:
    structured: list[Field]   # conditions, keywords, interventions, mesh terms
    titles: list[Field]
    free: list[Field]
    product_fields: list[Field]   # fields in which a product is named (interventions, titles)
    group_fields: list[Field]     # fields naming the disease (conditions, keywords, mesh)
    mesh: list[Mesh]
    cond_mesh_kinds: tuple[str, ...]
    evidence: list[Evidence]
    # May summaries add a condition group? Not for registrations: their conditions, condition
    # MeSH and titles say what is treated; a description's diseases are often background.
    free_groups: bool = True


def _fields(pairs: Iterable[tuple[str, str | None]], free: bool = False) -> list[Field]:
    """One field per name; several values (e.g. all conditions) are joined with " | ", which
    no term can match across, so a record costs a handful of scans whatever its length."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if value and value.strip():
            grouped.setdefault(name, []).append(value)
    return [Field(n, " | ".join(v), free) for n, v in grouped.items()]


def _field(name: str, values: Iterable[str | None], free: bool = False) -> list[Field]:
    """``_fields`` for values that all belong to one field: that field, or none."""
    kept = [v for v in values if v and v.strip()]
    return [Field(name, " | ".join(kept), free)] if kept else []


def _study_ctx(r: StudyRecord) -> _Ctx:
    interventions: list[tuple[str, str | None]] = []
    for iv in r.interventions:
        interventions.append(("intervention", iv.name))
        for other in iv.other_names:
            interventions.append(("intervention_other_name", other))
        if iv.description:
            interventions.append(("intervention_description", iv.description))
    conditions = _field("condition", r.conditions)
    keywords = _field("keyword", r.keywords)
    iv_fields = _fields(interventions)
    titles = _fields([("title", r.title), ("official_title", r.official_title),
                      ("acronym", r.acronym)])
    description = strip_eligibility(r.detailed_description)
    free = _fields([("brief_summary", strip_eligibility(r.brief_summary)),
                    ("detailed_description", description[:FREE_TEXT_LIMIT] if description
                     else None)],
                   free=True)
    cmesh = _field("condition_mesh", (m.term for m in r.mesh
                                      if m.kind == "condition" and not m.ancestor))
    imesh = _field("intervention_mesh", (m.term for m in r.mesh
                                         if m.kind == "intervention" and not m.ancestor))
    return _Ctx(
        structured=conditions + keywords + iv_fields + cmesh + imesh,
        titles=titles,
        free=free,
        product_fields=iv_fields + titles + keywords + imesh,
        group_fields=conditions + cmesh + keywords,
        mesh=r.mesh,
        cond_mesh_kinds=("condition",),
        evidence=[],
        free_groups=not (conditions or cmesh),
    )


def _pub_ctx(r: PublicationRecord) -> _Ctx:
    heads = _field("mesh_heading", (m.term for m in r.mesh))
    keywords = _field("keyword", r.keywords)
    titles = _field("title", (r.title,))
    return _Ctx(
        structured=heads + keywords,
        titles=titles,
        free=_field("abstract", (r.abstract,), free=True),
        product_fields=titles + keywords + heads,
        group_fields=heads + keywords,
        mesh=r.mesh,
        cond_mesh_kinds=("heading", "condition"),
        evidence=[],
    )


def _negated(rules: Rules, f: Field, hit: Hit) -> bool:
    if (not f.free and f.name not in ("title", "official_title")) or hit.start < 0:
        return False
    return negated_before(rules.negation, f, hit)


def _scan(rules: Rules, ls: LabelSet, fields: list[Field]) -> Iterator[tuple[Hit, Field]]:
    for f in fields:
        for hit in ls.find(f.norm, f.raw, f.words):
            if not _negated(rules, f, hit):
                yield hit, f


def _first_hits(rules: Rules, ls: LabelSet, fields: list[Field]) -> dict[str, tuple[str, str]]:
    """label -> (field, matched) for the first hit of each label."""
    found: dict[str, tuple[str, str]] = {}
    for hit, f in _scan(rules, ls, fields):
        found.setdefault(hit.label, (f.name, hit.matched.strip()))
    return found


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------
def classify_study(record: StudyRecord, rules: Rules) -> Labels:
    """Label one registration (phase is the record's canonical phase)."""
    ctx = _study_ctx(record)
    verdict = study_role(record, rules)
    ctx.evidence.extend(verdict.evidence)
    # The keyword search's usual false positives (HSCT, GIST, EMT, ...), said beside the role:
    # they explain a rejection, and an MSC arm outweighs them.
    excl = [(f.name, h.matched.strip())
            for h, f in _scan(rules, rules.exclusions, ctx.structured + ctx.titles)]
    excl += [(f"{m.kind}_mesh", f"{m.term} ({m.mesh_id})") for _label, m in
             rules.exclusions.find_mesh(ctx.mesh, ("condition", "intervention"))]
    if verdict.role in RELEVANT_ROLES:
        # The facets read what is given first: interventions, arms, then titles.
        ctx.product_fields = verdict.given + [f for f in ctx.product_fields
                                              if f.name not in _GIVEN_FIELDS]
        reason = verdict.reason
        if excl:
            reason += f" (outweighs exclusion '{excl[0][1]}' in {excl[0][0]})"
        labels = _facets(ctx, rules, reason, verdict.named)
    else:
        for fname, matched in excl[:3]:
            ctx.evidence.append(Evidence("relevance", "exclusion", fname, matched))
        why = f"not MSC ({verdict.role}): {verdict.reason}"
        if excl:
            why += f"; exclusion '{excl[0][1]}' in {excl[0][0]}"
        labels = Labels(False, why, [], [], [], [], "UNKNOWN", ctx.evidence)
    labels.role = verdict.role
    labels.minimally_manipulated = verdict.minimally_manipulated
    labels.phase = record.phase if record.phase in taxonomy.PHASES else "UNKNOWN"
    labels.evidence.append(Evidence("phase", labels.phase, "phase",
                                    record.phase_raw if record.phase_raw is not None
                                    else record.phase))
    return labels


def classify_publication(record: PublicationRecord, rules: Rules) -> Labels:
    """Label one paper (phase from its PubMed publication types)."""
    ctx = _pub_ctx(record)
    found: list[tuple[Hit, Field, str]] = []
    relevant, reason, named_hits = _relevance(ctx, rules, found)
    if relevant:
        labels = _facets(ctx, rules, reason, named_hits)
        if not any(f.name == "abstract" for _h, f, _k in found):
            # what the abstract says was given: the role reads it too
            found.extend((h, f, "msc") for h, f in _scan(rules, rules.msc, ctx.free))
    else:
        labels = Labels(False, reason, [], [], [], [], "UNKNOWN", ctx.evidence)
    verdict = paper_role(record, rules, relevant, found)
    labels.role = verdict.role
    labels.evidence.extend(verdict.evidence)
    if labels.msc_relevant and verdict.role not in RELEVANT_ROLES:
        labels = Labels(False, f"not MSC ({verdict.role}): {verdict.reason}", [], [], [], [],
                        "UNKNOWN", ctx.evidence, verdict.role)
    labels.phase = taxonomy.publication_phase(record.publication_types)
    phase_types = [t for t in record.publication_types if "phase" in t.lower()]
    labels.evidence.append(Evidence("phase", labels.phase, "publication_type",
                                    "; ".join(phase_types) or "(no phase publication type)"))
    return labels


_GIVEN_FIELDS = frozenset({"intervention", "intervention_other_name",
                           "intervention_description"})


def _classify(ctx: _Ctx, rules: Rules) -> Labels:
    relevant, reason, named_hits = _relevance(ctx, rules)
    if not relevant:
        return Labels(False, reason, [], [], [], [], "UNKNOWN", ctx.evidence)
    return _facets(ctx, rules, reason, named_hits)


def _facets(ctx: _Ctx, rules: Rules, reason: str,
            named_hits: list[tuple[str, str, str]]) -> Labels:
    ev = ctx.evidence
    groups = _condition_groups(ctx, rules)
    sources = _facet(ctx, rules, rules.sources, "cell_source", taxonomy.CELL_SOURCES,
                     named_hits, "cell_source", single_from_free=True)
    origins = _facet(ctx, rules, rules.origins, "origin", taxonomy.ORIGINS,
                     named_hits, "origin", single_from_free=False)
    products = _products(ctx, rules, named_hits)
    return Labels(True, reason, groups, sources, origins, products, "UNKNOWN", ev)


def _relevance(ctx: _Ctx, rules: Rules,
               found: list[tuple[Hit, Field, str]] | None = None
               ) -> tuple[bool, str, list[tuple[str, str, str]]]:
    """A paper's relevance; ``found`` collects the MSC terms and products it read, with
    their fields, for the role (``tracker.role.paper_role``)."""
    ev = ctx.evidence
    found = [] if found is None else found
    strong_fields = ctx.structured + ctx.titles
    named_hits: list[tuple[str, str, str]] = []  # (named key, field, matched)
    for hit, f in _scan(rules, rules.named, strong_fields):
        named_hits.append((hit.label, f.name, hit.matched.strip()))
        found.append((hit, f, "named"))
    msc_pairs = list(_scan(rules, rules.msc, strong_fields))
    found.extend((h, f, "msc") for h, f in msc_pairs)
    msc_hits = [(f.name, h.matched.strip()) for h, f in msc_pairs]
    for label, m in rules.msc.find_mesh(ctx.mesh, ("condition", "intervention", "heading")):
        msc_hits.append((f"{m.kind}_mesh", f"{m.term} ({m.mesh_id})"))
    prod: list[tuple[str, str]] = []
    free_hits: list[tuple[str, str]] = []
    if not (msc_hits or named_hits):
        prod = [(f.name, h.matched.strip()) for h, f in _scan(rules, rules.product_terms,
                                                                strong_fields)]
        free_pairs = list(_scan(rules, rules.msc, ctx.free))
        found.extend((h, f, "msc") for h, f in free_pairs)
        free_hits = [(f.name, h.matched.strip()) for h, f in free_pairs]
    # Exclusions in free text only matter when free text is all the MSC evidence there is;
    # skipping that scan otherwise keeps classification cheap on the common cases.
    excl_fields = strong_fields + ctx.free if (prod or free_hits) else strong_fields
    excl = [(f.name, h.matched.strip())
            for h, f in _scan(rules, rules.exclusions, excl_fields)]
    for _label, m in rules.exclusions.find_mesh(ctx.mesh, ("condition", "intervention",
                                                           "heading")):
        excl.append((f"{m.kind}_mesh", f"{m.term} ({m.mesh_id})"))

    if msc_hits or named_hits:
        for fname, matched in msc_hits[:3]:
            ev.append(Evidence("relevance", "msc", fname, matched))
        for _key, fname, matched in named_hits[:3]:
            ev.append(Evidence("relevance", "named_product", fname, matched))
        fname, matched = (msc_hits[0] if msc_hits else named_hits[0][1:])
        what = "MSC term" if msc_hits else "named MSC product"
        reason = f"{what} '{matched}' in {fname}"
        if excl:
            reason += f" (outweighs exclusion '{excl[0][1]}' in {excl[0][0]})"
        return True, reason, named_hits

    for fname, matched in excl[:3]:
        ev.append(Evidence("relevance", "exclusion", fname, matched))
    if prod and not excl:
        ev.append(Evidence("relevance", "msc_product", prod[0][0], prod[0][1]))
        return True, f"MSC-derived product '{prod[0][1]}' in {prod[0][0]}", named_hits
    if free_hits and (not excl or len(free_hits) >= rules.summary_min_mentions):
        for fname, matched in free_hits[:3]:
            ev.append(Evidence("relevance", "msc", fname, matched))
        return True, (f"MSC term '{free_hits[0][1]}' in {free_hits[0][0]} "
                      f"({len(free_hits)} mention(s))"), named_hits
    if excl:
        return False, (f"not MSC: exclusion '{excl[0][1]}' in {excl[0][0]} and no MSC "
                       "intervention term"), named_hits
    if free_hits:
        return False, "not MSC: only a passing MSC mention in free text", named_hits
    return False, "not MSC: no MSC term in title, interventions, conditions or summary", \
        named_hits


def _ordered(found: Iterable[str], order: tuple[str, ...]) -> list[str]:
    s = set(found)
    return [x for x in order if x in s] + sorted(s - set(order))


def _condition_groups(ctx: _Ctx, rules: Rules) -> list[str]:
    ev = ctx.evidence
    found: dict[str, tuple[str, str]] = {}
    for label, m in rules.groups.find_mesh(ctx.mesh, ctx.cond_mesh_kinds):
        found.setdefault(label, (f"{m.kind}_mesh" + ("_ancestor" if m.ancestor else ""),
                                 f"{m.term} ({m.mesh_id})"))
    for label, hit in _first_hits(rules, rules.groups, ctx.group_fields + ctx.titles).items():
        found.setdefault(label, hit)
    if not found:
        # Setting terms (e.g. an HSCT context for gvhd) decide only when no indication did:
        # MSCs for pneumonia after a transplant are a respiratory trial, not a GVHD one.
        found = _first_hits(rules, rules.group_context, ctx.group_fields + ctx.titles)
    if not found and ctx.free_groups:
        found = _first_hits(rules, rules.groups, ctx.free)
    if not found:
        found = {"other": ("(none)", "no condition group matched")}
    for label, (fname, matched) in found.items():
        ev.append(Evidence("condition_group", label, fname, matched))
    return _ordered(found, rules.condition_groups)


def _facet(ctx: _Ctx, rules: Rules, ls: LabelSet, family: str, order: tuple[str, ...],
           named_hits: list[tuple[str, str, str]], attr: str, single_from_free: bool
           ) -> list[str]:
    ev = ctx.evidence
    found = _first_hits(rules, ls, ctx.product_fields)
    for key, fname, matched in named_hits:
        value = getattr(rules.named_info[key], attr)
        if value:
            found.setdefault(value, (fname, matched))
    if not found:
        free = _first_hits(rules, ls, ctx.free)
        if free and (not single_from_free or len(free) == 1):
            found = free
    if not found:
        found = {"unspecified": ("(none)", f"no {family.replace('_', ' ')} stated")}
    for label, (fname, matched) in found.items():
        ev.append(Evidence(family, label, fname, matched))
    return _ordered(found, order)


def _products(ctx: _Ctx, rules: Rules, named_hits: list[tuple[str, str, str]]) -> list[str]:
    ev = ctx.evidence
    found: dict[str, tuple[str, str]] = {}
    for label, hit in _first_hits(rules, rules.products, ctx.product_fields).items():
        found.setdefault(label, hit)
    for key, fname, matched in named_hits:
        value = rules.named_info[key].product
        if value:
            found.setdefault(value, (fname, matched))
    if "cells" not in found:
        # Beside vesicles or conditioned medium, the cells themselves must be named where
        # the record says what is given (not in keywords or summaries, which name the parent).
        cell = _cell_mention(ctx, rules, strict=bool(found))
        if cell:
            found["cells"] = cell
    if not found:
        free = _first_hits(rules, rules.products, ctx.free)
        found = free or {"unspecified": ("(none)", "no product stated")}
    for label, (fname, matched) in found.items():
        ev.append(Evidence("product", label, fname, matched))
    return _ordered(found, taxonomy.PRODUCTS)


_STRICT_CELL_FIELDS = frozenset({"intervention", "intervention_other_name", "arm",
                                 "arm_description"})


def _cell_mention(ctx: _Ctx, rules: Rules, strict: bool = False) -> tuple[str, str] | None:
    """An MSC term used for the administered product itself (not as parent of EVs/medium)."""
    for f in ctx.product_fields:
        if f.name == "acronym":  # an acronym abbreviates the title; it states no product
            continue
        if strict and f.name not in _STRICT_CELL_FIELDS:
            continue
        norm = f.norm
        for hit in rules.msc.find(norm, f.raw):
            if hit.start < 0:
                return f.name, hit.matched
            after = norm[hit.end: hit.end + 40].lstrip()
            before = norm[max(0, hit.start - 60): hit.start]
            if _AFTER_PRODUCT.match(after) or _BEFORE_PRODUCT.search(before):
                continue
            return f.name, hit.matched.strip()
    return None
