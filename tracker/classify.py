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

import functools
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
from tracker.errors import ConfigError

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

# Free text is a fallback; the opening of a long description says what the study is about, and
# scanning whole 15,000-character protocols would cost more than the rest of the record.
FREE_TEXT_LIMIT = 2000

FAMILIES = ("relevance", "condition_group", "cell_source", "origin", "product", "phase")


class RulesError(ConfigError):
    """The rules file is missing, unreadable or malformed."""


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


# --------------------------------------------------------------------------------------------
# Text normalisation: lower case, apostrophes dropped, punctuation -> space, sentence ends -> "|"
# (so that a negation never reaches across a sentence). One C-level translate + split/join.
# --------------------------------------------------------------------------------------------
_PUNCT = "!\"#$%&()+,-./:;<=>?@[\\]^_`{}~\u00a0\u2010\u2011\u2012\u2013\u2014\u2015\u2022" \
         "\u00ae\u2122\u00a9\u00b7\u3001\uff08\uff09\uff0c\uff1a\uff1b\u201c\u201d\u00ab\u00bb"
_TEXT_TABLE = {ord(c): " " for c in _PUNCT}
_TEXT_TABLE.update({ord(c): None for c in "'\u2019\u2018\u00b4\u0301"})
_TEXT_TABLE.update({ord(c): "|" for c in ".;!?\n|"})  # 1-char values keep translate's fast path
_TEXT_TABLE[ord("*")] = " "
_TERM_TABLE = dict(_TEXT_TABLE)
_TERM_TABLE[ord("*")] = "*"
_TERM_TABLE.update({ord(c): " " for c in ".;!?\n|"})


# The same table for ASCII text as bytes: bytes.translate runs at memory speed where
# str.translate with a dict costs ~7 ns a character (most abstracts are pure ASCII).
_ASCII_TABLE = bytes(ord(_TEXT_TABLE.get(i, chr(i)) or " ") for i in range(128)) + bytes(
    range(128, 256))
_ASCII_DELETE = bytes(i for i in range(128) if i in _TEXT_TABLE and _TEXT_TABLE[i] is None)


def _norm_words(text: str) -> list[str]:
    """The normalised words of a text ("|" marks a sentence end)."""
    low = text.lower()
    if low.isascii():
        low = low.encode().translate(_ASCII_TABLE, _ASCII_DELETE).decode()
    else:
        low = low.translate(_TEXT_TABLE)
    return low.replace("|", " | ").split()


def _norm_text(text: str) -> str:
    return " " + " ".join(_norm_words(text)) + " "


def _norm_term(term: str) -> str:
    return " ".join(term.lower().translate(_TERM_TABLE).split())


@functools.lru_cache(maxsize=65536)
def _norm_mesh_id(mesh_id: str | None) -> str | None:
    if not mesh_id:
        return None
    m = re.fullmatch(r"\s*([A-Za-z])0*(\d+)\s*", mesh_id)
    if not m:
        return mesh_id.strip().upper()
    return f"{m.group(1).upper()}{int(m.group(2)):06d}"


# --------------------------------------------------------------------------------------------
# Term compilation: all terms of a family become ONE trie-shaped regular expression, so that a
# scan costs about one character-class test per word whatever the number of terms.
# --------------------------------------------------------------------------------------------
_PLURAL = r"(?:e?s)?"


def _trie_pattern(terms: Iterable[str]) -> str:
    trie: dict[str, Any] = {}
    for term in terms:
        node = trie
        for ch in term:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = []
        for key in sorted(k for k in node if k):
            atom = r"\w*" if key == "*" else re.escape(key)
            alts.append(atom + emit(node[key]))
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:
            return "(?:" + body + ")?"
        return body

    return emit(trie)


def _compile_terms(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    return re.compile(r"\b" + _trie_pattern(terms) + _PLURAL + r"\b")


def _compile_exact(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alts = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(r"(?<![\w])(?:" + alts + r")(?![\w])")


@dataclass(slots=True)
class _Hit:
    label: str
    matched: str
    start: int
    end: int


class _LabelSet:
    """Compiled matcher for one label family (e.g. all condition groups)."""

    __slots__ = (
        "always_scan",
        "anchors",
        "exact",
        "exact_literals",
        "exact_map",
        "excl_mesh",
        "exclude",
        "first_words",
        "full",
        "labels",
        "mesh",
        "scan",
        "trees",
        "wild",
    )

    def __init__(self, family: str, specs: dict[str, dict[str, Any]], where: str) -> None:
        self.labels = list(specs)
        all_terms: list[str] = []
        exact_terms: list[str] = []
        self.exact_map: dict[str, list[str]] = {}
        self.full: dict[str, re.Pattern[str]] = {}
        self.exclude: dict[str, re.Pattern[str]] = {}
        self.mesh: dict[str, list[str]] = {}
        self.trees: list[tuple[str, str]] = []
        self.excl_mesh: dict[str, frozenset[str]] = {}
        for label, spec in specs.items():
            ctx = f"{where}.{label}"
            terms = [_norm_term(t) for t in _str_list(spec, "terms", ctx)]
            terms = [t for t in terms if t]
            patterns = _str_list(spec, "patterns", ctx)
            pat_src = []
            if terms:
                pat_src.append(_trie_pattern(terms) + _PLURAL)
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise RulesError(f"{ctx}: bad pattern {p!r}: {exc}") from None
                pat_src.append("(?:" + p + ")")
            if pat_src:
                self.full[label] = re.compile("(?:" + "|".join(pat_src) + ")")
                all_terms.extend(terms)
            for t in _str_list(spec, "exact_case", ctx):
                exact_terms.append(t)
                self.exact_map.setdefault(t, []).append(label)
            excl = [_norm_term(t) for t in _str_list(spec, "exclude", ctx)]
            if excl:
                # An exclusion phrase may straddle a list separator ("Uterus; Scar").
                body = _trie_pattern(excl).replace("\\ ", "(?: \\|)? ")
                self.exclude[label] = re.compile(r"\b" + body + _PLURAL + r"\b")
            for mid in _str_list(spec, "mesh_ids", ctx):
                self.mesh.setdefault(_norm_mesh_id(mid) or mid, []).append(label)
            for tree in _str_list(spec, "mesh_trees", ctx):
                self.trees.append((tree, label))
            ex_ids = _str_list(spec, "exclude_mesh_ids", ctx)
            if ex_ids:
                self.excl_mesh[label] = frozenset(_norm_mesh_id(x) or x for x in ex_ids)
        # A term can only match where its first word stands as a word of the text (a one-word
        # term possibly plural); a field none of whose words is such a first word is skipped
        # without running the scanner. Custom patterns, and terms whose first word is a
        # wildcard, cannot be ruled out this way.
        self.first_words: set[str] = set()
        wild_prefixes: list[str] = []
        # Patterns are opaque, but a set whose every pattern-bearing spec lists
        # ``pattern_anchors`` (literals each of its patterns needs) is scanned only where one
        # of them occurs.
        anchored = [spec for spec in specs.values() if spec.get("patterns")]
        self.always_scan = any(not spec.get("pattern_anchors") for spec in anchored)
        self.anchors = tuple(a.lower() for spec in anchored
                             for a in spec.get("pattern_anchors") or ())
        for term in all_terms:
            first, _, rest = term.partition(" ")
            if "*" in first:
                prefix = first.split("*", 1)[0]
                if prefix:
                    wild_prefixes.append(prefix)
                else:
                    self.always_scan = True
            else:
                self.first_words.add(first)
                if not rest:
                    self.first_words.update((first + "s", first + "es"))
        self.wild = (re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(set(wild_prefixes))))
                                + ")") if wild_prefixes else None)
        scan_parts = []
        if all_terms:
            scan_parts.append(_trie_pattern(all_terms) + _PLURAL)
        for label, spec in specs.items():
            for p in spec.get("patterns", []) or []:
                scan_parts.append("(?:" + p + ")")
        self.scan = re.compile(r"\b(?:" + "|".join(scan_parts) + r")\b") if scan_parts else None
        self.exact = _compile_exact(exact_terms)
        # The exact-case regex starts with a look-behind, which defeats the regex engine's
        # literal search (20 us on an abstract); a substring test for the shortest literals
        # every term contains rules most texts out first.
        self.exact_literals = tuple(sorted(
            t for t in set(exact_terms) if not any(u != t and u in t for u in exact_terms)))

    def may_match(self, words: frozenset[str], norm: str) -> bool:
        """False when no term of this set can occur in a text with these words."""
        if self.always_scan or not self.first_words.isdisjoint(words):
            return True
        if any(a in norm for a in self.anchors):
            return True
        return self.wild is not None and self.wild.search(norm) is not None

    def find(self, norm: str, raw: str | None = None,
             words: frozenset[str] | None = None) -> list[_Hit]:
        """All label hits in a normalised text (and exact-case hits in ``raw``)."""
        hits: list[_Hit] = []
        if (self.scan is not None and len(norm) > 2
                and (words is None or self.may_match(words, norm))):
            for m in self.scan.finditer(norm):
                matched = m.group(0)
                s, e = m.span()
                for label, rx in self.full.items():
                    if rx.fullmatch(matched) and not self._excluded(label, norm, s, e):
                        hits.append(_Hit(label, matched, s, e))
        if self.exact is not None and raw and any(t in raw for t in self.exact_literals):
            for m in self.exact.finditer(raw):
                for label in self.exact_map.get(m.group(0), ()):
                    hits.append(_Hit(label, m.group(0), -1, -1))
        return hits

    def _excluded(self, label: str, norm: str, s: int, e: int) -> bool:
        rx = self.exclude.get(label)
        if rx is None:
            return False
        for m in rx.finditer(norm, max(0, s - 60), min(len(norm), e + 60)):
            if m.start() <= s and e <= m.end():
                return True
        return False

    def find_mesh(self, mesh: list[Mesh], kinds: tuple[str, ...]) -> list[tuple[str, Mesh]]:
        if not self.mesh and not self.trees:
            return []
        own: set[str | None] | None = None  # the record's own (non-ancestor) ids, if needed
        out = []
        for m in mesh:
            if m.kind not in kinds:
                continue
            mid = _norm_mesh_id(m.mesh_id)
            labels = self.mesh.get(mid, []) if mid else []
            for label in labels:
                if m.ancestor:
                    if own is None:
                        own = {_norm_mesh_id(x.mesh_id) for x in mesh if not x.ancestor}
                    if own & self.excl_mesh.get(label, frozenset()):
                        continue
                out.append((label, m))
        return out


def _str_list(spec: dict[str, Any], key: str, ctx: str) -> list[str]:
    value = spec.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{ctx}.{key} must be a list of strings")
    return value


@dataclass(slots=True, frozen=True)
class _NamedProduct:
    cell_source: str | None
    origin: str | None
    product: str | None


@dataclass(slots=True)
class Rules:
    """A loaded, precompiled ruleset. ``fingerprint`` changes whenever the file's bytes do."""

    path: str
    fingerprint: str
    name: str
    version: str
    condition_groups: tuple[str, ...]
    msc: _LabelSet
    product_terms: _LabelSet
    exclusions: _LabelSet
    named: _LabelSet
    named_info: dict[str, _NamedProduct]
    groups: _LabelSet
    group_context: _LabelSet  # a group's ``context_terms``: used only when no group matched
    sources: _LabelSet
    origins: _LabelSet
    products: _LabelSet
    negation: re.Pattern[str]
    summary_min_mentions: int


def load_rules(path: Path | str | None = None) -> Rules:
    """Read and precompile a rules file (``None``: the packaged ``msc_rules.toml``).

    Raises :class:`RulesError` for a missing, unreadable or malformed file.
    """
    try:
        if path is None:
            ref = resources.files(RULES_PACKAGE).joinpath(RULES_FILE)
            data = ref.read_bytes()
            where = f"<package {RULES_PACKAGE}/{RULES_FILE}>"
        else:
            data = Path(path).read_bytes()
            where = str(path)
    except (OSError, ModuleNotFoundError) as exc:
        raise RulesError(f"cannot read rules file {path or RULES_FILE}: {exc}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"rules file {where} is not valid TOML: {exc}") from None
    try:
        return _build(doc, where, hashlib.sha256(data).hexdigest())
    except RulesError as exc:
        raise RulesError(f"rules file {where}: {exc}") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise RulesError(f"rules file {where}: malformed ({exc})") from None


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


def _build(doc: dict[str, Any], where: str, fingerprint: str) -> Rules:
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
    for i, item in enumerate(named_list):
        if not isinstance(item, dict):
            raise RulesError(f"named_product #{i + 1} must be a table")
        key = f"named_product_{i + 1}"
        info = _NamedProduct(item.get("cell_source"), item.get("origin"), item.get("product"))
        for fam, allowed in (("cell_source", taxonomy.CELL_SOURCES),
                             ("origin", taxonomy.ORIGINS), ("product", taxonomy.PRODUCTS)):
            v = getattr(info, fam)
            if v is not None and v not in allowed:
                raise RulesError(f"named_product #{i + 1}: unknown {fam} {v!r}")
        named_specs[key] = {"terms": item.get("names", []),
                            "exact_case": item.get("exact_case", [])}
        named_info[key] = info

    neg = doc.get("negation", {}) or {}
    cues = [_norm_term(c) for c in _str_list(neg, "cues", "negation")]
    window = int(neg.get("window_words", 4))
    if cues:
        cue_rx = "|".join(re.escape(c) for c in sorted(cues, key=len, reverse=True))
        negation = re.compile(r"\b(?:" + cue_rx + r")(?: [^ |]+){0," + str(window) + r"} $")
    else:
        negation = re.compile(r"(?!)")

    return Rules(
        path=where,
        fingerprint=fingerprint,
        name=str(meta.get("name", "")),
        version=str(meta.get("version", "")),
        condition_groups=tuple(order),
        msc=_LabelSet("relevance", {"msc": {
            "terms": rel.get("msc_terms", []), "exact_case": rel.get("exact_case", []),
            "patterns": rel.get("patterns", []), "mesh_ids": rel.get("mesh_ids", []),
            "pattern_anchors": rel.get("pattern_anchors", [])}},
            "relevance"),
        product_terms=_LabelSet("relevance", {"msc_product": {
            "terms": rel.get("product_terms", [])}}, "relevance"),
        exclusions=_LabelSet("relevance", {"exclusion": {
            "terms": rel.get("exclusions", []), "mesh_ids": rel.get("exclusion_mesh_ids", [])}},
            "relevance"),
        named=_LabelSet("named_product", named_specs, "named_product"),
        named_info=named_info,
        groups=_LabelSet("condition_group", {
            g: {k: v for k, v in groups[g].items() if k != "context_terms"}
            for g in order if g in groups}, "condition_groups"),
        group_context=_LabelSet("condition_group", {
            g: {"terms": groups[g]["context_terms"]}
            for g in order if g in groups and groups[g].get("context_terms")},
            "condition_groups"),
        sources=_LabelSet("cell_source", sources, "cell_sources"),
        origins=_LabelSet("origin", origins, "origins"),
        products=_LabelSet("product", products, "products"),
        negation=negation,
        summary_min_mentions=int(rel.get("summary_min_mentions", 2)),
    )


# --------------------------------------------------------------------------------------------
# Record -> fields
# --------------------------------------------------------------------------------------------
class _Field:
    """One text field of a record, normalised lazily (free-text fields may never be needed)."""

    __slots__ = ("_norm", "_words", "free", "name", "raw")

    def __init__(self, name: str, raw: str, free: bool) -> None:
        self.name = name
        self.raw = raw
        self._norm: str | None = None
        self._words: frozenset[str] | None = None
        self.free = free  # free text: negation applies

    def _normalise(self) -> None:
        words = _norm_words(self.raw)
        self._norm = " " + " ".join(words) + " "
        self._words = frozenset(words)

    @property
    def norm(self) -> str:
        if self._norm is None:
            self._normalise()
        return self._norm  # type: ignore[return-value]

    @property
    def words(self) -> frozenset[str]:
        """The field's normalised words, for the label sets' cheap first-word test."""
        if self._words is None:
            self._normalise()
        return self._words  # type: ignore[return-value]


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
    structured: list[_Field]   # conditions, keywords, interventions, mesh terms
    titles: list[_Field]
    free: list[_Field]
    product_fields: list[_Field]   # fields in which a product is named (interventions, titles)
    group_fields: list[_Field]     # fields naming the disease (conditions, keywords, mesh)
    mesh: list[Mesh]
    cond_mesh_kinds: tuple[str, ...]
    evidence: list[Evidence]


def _fields(pairs: Iterable[tuple[str, str | None]], free: bool = False) -> list[_Field]:
    """One field per name; several values (e.g. all conditions) are joined with " | ", which
    no term can match across, so a record costs a handful of scans whatever its length."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if value and value.strip():
            grouped.setdefault(name, []).append(value)
    return [_Field(n, " | ".join(v), free) for n, v in grouped.items()]


def _field(name: str, values: Iterable[str | None], free: bool = False) -> list[_Field]:
    """``_fields`` for values that all belong to one field: that field, or none."""
    kept = [v for v in values if v and v.strip()]
    return [_Field(name, " | ".join(kept), free)] if kept else []


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
    description = _strip_eligibility(r.detailed_description)
    free = _fields([("brief_summary", _strip_eligibility(r.brief_summary)),
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


_ELIG_CUT = re.compile(r"(?i)\b(?:inclusion|exclusion|eligibility)\s+criteria\b")


def _strip_eligibility(text: str | None) -> str | None:
    """Drop embedded eligibility sections from a summary: they never describe the topic."""
    if not text:
        return text
    m = _ELIG_CUT.search(text)
    return text[: m.start()] if m else text


def _negated(rules: Rules, f: _Field, hit: _Hit) -> bool:
    if (not f.free and f.name not in ("title", "official_title")) or hit.start < 0:
        return False
    window = f.norm[max(0, hit.start - 80): hit.start]
    bar = window.rfind("|")
    if bar >= 0:
        window = window[bar + 1:]
    return rules.negation.search(window) is not None


def _scan(rules: Rules, ls: _LabelSet, fields: list[_Field]) -> Iterator[tuple[_Hit, _Field]]:
    for f in fields:
        for hit in ls.find(f.norm, f.raw, f.words):
            if not _negated(rules, f, hit):
                yield hit, f


def _first_hits(rules: Rules, ls: _LabelSet, fields: list[_Field]) -> dict[str, tuple[str, str]]:
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
    labels = _classify(ctx, rules)
    labels.phase = record.phase if record.phase in taxonomy.PHASES else "UNKNOWN"
    labels.evidence.append(Evidence("phase", labels.phase, "phase",
                                    record.phase_raw if record.phase_raw is not None
                                    else record.phase))
    return labels


def classify_publication(record: PublicationRecord, rules: Rules) -> Labels:
    """Label one paper (phase from its PubMed publication types)."""
    ctx = _pub_ctx(record)
    labels = _classify(ctx, rules)
    labels.phase = taxonomy.publication_phase(record.publication_types)
    phase_types = [t for t in record.publication_types if "phase" in t.lower()]
    labels.evidence.append(Evidence("phase", labels.phase, "publication_type",
                                    "; ".join(phase_types) or "(no phase publication type)"))
    return labels


def _classify(ctx: _Ctx, rules: Rules) -> Labels:
    ev = ctx.evidence
    relevant, reason, named_hits = _relevance(ctx, rules)
    if not relevant:
        return Labels(False, reason, [], [], [], [], "UNKNOWN", ev)
    groups = _condition_groups(ctx, rules)
    sources = _facet(ctx, rules, rules.sources, "cell_source", taxonomy.CELL_SOURCES,
                     named_hits, "cell_source", single_from_free=True)
    origins = _facet(ctx, rules, rules.origins, "origin", taxonomy.ORIGINS,
                     named_hits, "origin", single_from_free=False)
    products = _products(ctx, rules, named_hits)
    return Labels(True, reason, groups, sources, origins, products, "UNKNOWN", ev)


def _relevance(ctx: _Ctx, rules: Rules) -> tuple[bool, str, list[tuple[str, str, str]]]:
    ev = ctx.evidence
    strong_fields = ctx.structured + ctx.titles
    named_hits: list[tuple[str, str, str]] = []  # (named key, field, matched)
    for hit, f in _scan(rules, rules.named, strong_fields):
        named_hits.append((hit.label, f.name, hit.matched.strip()))
    msc_hits = [(f.name, h.matched.strip()) for h, f in _scan(rules, rules.msc, strong_fields)]
    for label, m in rules.msc.find_mesh(ctx.mesh, ("condition", "intervention", "heading")):
        msc_hits.append((f"{m.kind}_mesh", f"{m.term} ({m.mesh_id})"))
    prod: list[tuple[str, str]] = []
    free_hits: list[tuple[str, str]] = []
    if not (msc_hits or named_hits):
        prod = [(f.name, h.matched.strip()) for h, f in _scan(rules, rules.product_terms,
                                                                strong_fields)]
        free_hits = [(f.name, h.matched.strip()) for h, f in _scan(rules, rules.msc, ctx.free)]
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
    if not found:
        found = _first_hits(rules, rules.groups, ctx.free)
    if not found:
        found = {"other": ("(none)", "no condition group matched")}
    for label, (fname, matched) in found.items():
        ev.append(Evidence("condition_group", label, fname, matched))
    return _ordered(found, rules.condition_groups)


def _facet(ctx: _Ctx, rules: Rules, ls: _LabelSet, family: str, order: tuple[str, ...],
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
        cell = _cell_mention(ctx, rules)
        if cell:
            found["cells"] = cell
    if not found:
        free = _first_hits(rules, rules.products, ctx.free)
        found = free or {"unspecified": ("(none)", "no product stated")}
    for label, (fname, matched) in found.items():
        ev.append(Evidence("product", label, fname, matched))
    return _ordered(found, taxonomy.PRODUCTS)


def _cell_mention(ctx: _Ctx, rules: Rules) -> tuple[str, str] | None:
    """An MSC term used for the administered product itself (not as parent of EVs/medium)."""
    for f in ctx.product_fields:
        if f.name == "acronym":  # an acronym abbreviates the title; it states no product
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
