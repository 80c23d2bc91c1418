"""How MSCs figure in a record (the MSC role), read the way a systematic reviewer reads.

The question is *what is administered*. A registration is read from where its text sits:

1. **What is given**: intervention names, other names and types, and the labels and
   descriptions of the arms that receive something (not placebo, sham or no-intervention
   arms). An MSC term or a product of the dictionary here is an administration.
2. **An intervention's description**, when the intervention's own name does not say what it
   is ("Stem cells", "Biological: XYZ-101"): the description then says what the cells are.
   The description of a named non-MSC product (platelet-rich plasma, mononuclear cells) is
   never read as an administration of MSCs.
3. **Titles**, when they name what is given ("Umbilical cord MSCs for knee osteoarthritis")
   and the interventions do not contradict them.
4. **Summaries, detailed descriptions and keywords** only as support: they may say what a
   vaguely named cell product is, never make a record an MSC trial alone.
5. Outcomes, eligibility and references never decide; they can only make a record a
   ``mention``.

Around every MSC term the sentence is read for the vocabulary of the other roles
(``[role]`` in the rules file): mobilisation, circulating levels and marrow stimulation
(``endogenous``), feeder layers and co-culture (``manufacturing``), isolation, culture and
characterisation (``laboratory``), marker staining (``mention``). A negation before the term
cancels it. An observational study gives nothing: MSCs named as its exposure or object make it
``laboratory`` (the cells of MSC-treated patients or donors are what it studies).

Papers are read from the title, MeSH headings, keywords and abstract: administration words near
the MSC term (injected, transplanted, treated with) make ``therapy``; isolation and culture with
no administration make ``laboratory``; reviews of MSC therapy count as ``therapy``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from db.records import PublicationRecord, StudyRecord
from tracker.matching import (
    Field,
    Hit,
    RulesError,
    compile_terms,
    negated_before,
    norm_term,
    str_list,
    strip_eligibility,
)

if TYPE_CHECKING:
    from tracker.classify import Evidence, Rules

ROLES = ("therapy", "laboratory", "manufacturing", "endogenous", "mention", "none")
RELEVANT_ROLES = frozenset({"therapy", "laboratory"})

# Arms that receive nothing of the study's own (their descriptions name what others receive).
_PASSIVE_ARMS = frozenset({"PLACEBO_COMPARATOR", "SHAM_COMPARATOR", "NO_INTERVENTION"})
_NOT_CELLS = frozenset({"DRUG", "DIETARY_SUPPLEMENT", "BEHAVIORAL", "RADIATION"})
CUE_KINDS = ("endogenous", "manufacturing", "laboratory", "marker", "administration", "given")


@dataclass(slots=True)
class RoleRules:
    """The ``[role]`` section, compiled."""

    window: int
    cues: dict[str, re.Pattern[str] | None]
    vague: re.Pattern[str] | None       # intervention names that do not say what is given
    non_msc: re.Pattern[str] | None     # named products that are not MSCs
    minimal: re.Pattern[str] | None     # minimally manipulated preparations


def build_role_rules(doc: dict[str, Any]) -> RoleRules:
    spec = doc.get("role", {}) or {}
    if not isinstance(spec, dict):
        raise RulesError("[role] must be a table")

    def terms(key: str) -> re.Pattern[str] | None:
        values = [norm_term(t) for t in str_list(spec, key, "role")]
        return compile_terms([t for t in values if t])

    cues = {kind: terms(kind) for kind in CUE_KINDS}
    try:
        window = int(spec.get("window_words", 8))
    except (TypeError, ValueError):
        raise RulesError("role.window_words must be a whole number") from None
    codes = spec.get("code_pattern", r"^ ?[a-z]{1,8} ?\d+[a-z0-9 ]{0,12}$")
    try:
        re.compile(codes)
    except re.error as exc:
        raise RulesError(f"role.code_pattern: {exc}") from None
    vague = terms("vague_intervention")
    vague_rx = re.compile("|".join(p for p in ((vague.pattern if vague else None), codes) if p))
    return RoleRules(window=window, cues=cues, vague=vague_rx, non_msc=terms("non_msc_products"),
                     minimal=terms("minimally_manipulated"))


@dataclass(slots=True)
class Role:
    """The verdict: role, a one-line reason, evidence and what the facets may read."""

    role: str
    reason: str
    minimally_manipulated: bool = False
    evidence: list[Evidence] = field(default_factory=list)
    named: list[tuple[str, str, str]] = field(default_factory=list)  # (product key, field, term)
    # The fields that say what is given: the facets (source, origin, product) read them first.
    given: list[Field] = field(default_factory=list)


@dataclass(slots=True)
class _Mention:
    field: Field
    hit: Hit
    kind: str       # msc | named | product
    rr: RoleRules
    _cues: frozenset[str] | None = None

    @property
    def matched(self) -> str:
        return self.hit.matched.strip()

    @property
    def cues(self) -> frozenset[str]:
        """The cue kinds around the mention, read when first asked for."""
        if self._cues is None:
            self._cues = _cues(self.rr, self.field, self.hit)
        return self._cues


def _cues(rr: RoleRules, f: Field, hit: Hit) -> frozenset[str]:
    """The cue kinds in the sentence around a hit (``window`` words either side)."""
    if hit.start < 0:
        return frozenset()
    norm = f.norm
    lo = norm.rfind("|", 0, hit.start) + 1
    hi = norm.find("|", hit.end)
    hi = len(norm) if hi < 0 else hi
    before = norm[lo:hit.start].split()[-rr.window:]
    after = norm[hit.end:hi].split()[:rr.window]
    text = " " + " ".join(before + [hit.matched.strip()] + after) + " "
    return frozenset(k for k, rx in rr.cues.items() if rx is not None and rx.search(text))


def _negated(rules: Rules, f: Field, hit: Hit) -> bool:
    """A negation closely before the term in the same sentence of free text (a name such as
    "surgical treatment of non union with MSCs" is not negated)."""
    return f.free and negated_before(rules.negation, f, hit)


def _mentions(rules: Rules, fields: Iterable[Field], negate: bool = True,
              named: bool = True) -> list[_Mention]:
    """Every MSC term, MSC-derived product and (``named``) dictionary product in ``fields``."""
    rr = rules.role
    sets = ((("named", rules.named),) if named else ()) + (
        ("msc", rules.msc), ("product", rules.product_terms))
    out: list[_Mention] = []
    for f in fields:
        norm, raw, words = f.norm, f.raw, f.words
        for kind, ls in sets:
            for hit in ls.find(norm, raw, words):
                if negate and _negated(rules, f, hit):
                    continue
                out.append(_Mention(f, hit, kind, rr))
    return out


def _admin(m: _Mention) -> bool:
    """A mention that reads as MSCs given, not measured, mobilised, cultured or stained."""
    return not (m.cues & {"endogenous", "manufacturing", "marker"})


def _is(rx: re.Pattern[str] | None, text: str) -> bool:
    return rx is not None and rx.search(text) is not None


_NAMES = frozenset({"intervention", "intervention_other_name", "arm", "keyword", "condition"})


def _field(name: str, text: str | None) -> Field | None:
    return Field(name, text, name not in _NAMES) if text and text.strip() else None


# --------------------------------------------------------------------------------------------
# Registrations
# --------------------------------------------------------------------------------------------
def _can_name_msc(rules: Rules, record: StudyRecord) -> bool:
    """False when no field the role reads can hold an MSC term, an MSC-derived product or a
    dictionary product: the record is ``none`` without reading it field by field. Most
    records a registry search returns name none, and one test of the whole text
    (``rules.msc_probe``) costs a fraction of reading each intervention and arm."""
    texts: list[str] = [t for t in (record.title, record.official_title) if t]
    for iv in record.interventions:
        texts += [t for t in (iv.name, iv.description, *iv.other_names) if t]
    for a in record.arms:
        texts += [t for t in (a.label, a.description) if t]
    texts += [t for t in (_cut(record.brief_summary), _cut(record.detailed_description),
                          _cut(record.eligibility)) if t]
    texts += record.keywords + record.conditions + record.primary_outcomes
    texts += [r.citation for r in record.references if r.citation]
    return rules.msc_probe.may_match(" | ".join(texts)) or bool(
        rules.msc.find_mesh(record.mesh, ("condition", "intervention")))


_NO_TERM = "no MSC term where the record says what is given or studied"


def study_role(record: StudyRecord, rules: Rules) -> Role:
    from tracker.classify import Evidence

    # Every text this function reads below must be among _can_name_msc's, or the probe could
    # rule out a record the reading would not (tests/test_role.py checks it on real records).
    if not _can_name_msc(rules, record):
        return Role("none", _NO_TERM)
    rr = rules.role
    # 1. what is given, intervention by intervention
    names: list[Field] = []
    descriptions: list[tuple[Field, bool]] = []  # (description, its intervention is vague)
    # Descriptions of named non-MSC products (PRP "stimulating resident MSCs"): a mention.
    passing: list[Field] = []
    specific_non_msc = vague_given = drug_like = 0
    described: dict[int, Field] = {}  # id of a name field -> its intervention's description
    for iv in record.interventions:
        nf = _field("intervention", iv.name)
        others = [f for f in (_field("intervention_other_name", o) for o in iv.other_names)
                  if f is not None]
        label = " ".join(f.norm for f in ([nf] if nf else []) + others)
        df = _field("intervention_description", iv.description)
        non_msc = _is(rr.non_msc, label) and not _is(rules.msc.scan, label)
        # A name that does not say what it is ("Stem cells", "EXO 1", "LDLR mRNA exosomes"),
        # or whose description opens by saying it is cells or vesicles.
        vague = not non_msc and (_is(rr.vague, label) or (df is not None and _is(
            rr.vague, df.norm[:160])) or (iv.type or "").upper() in (
            "BIOLOGICAL", "GENETIC", "COMBINATION_PRODUCT"))
        if nf is not None:
            names.append(nf)
        names.extend(others)
        specific_non_msc += non_msc
        vague_given += vague
        # a drug, supplement, behaviour or radiation that names itself ("Semaglutide"): a
        # trial of it may name MSCs in its title as what it measures
        drug_like += not vague and (iv.type or "").upper() in _NOT_CELLS
        if df is not None:
            (passing.append(df) if non_msc else descriptions.append((df, vague)))
            for f in ([nf] if nf else []) + others:
                described[id(f)] = df
    arms = [f for a in record.arms if (a.type or "").upper() not in _PASSIVE_ARMS
            for f in (_field("arm", a.label), _field("arm_description", a.description))
            if f is not None]
    titles = [f for f in (_field("title", record.title),
                          _field("official_title", record.official_title)) if f is not None]
    support = [f for f in (_field("brief_summary", _cut(record.brief_summary)),
                           _field("detailed_description", _cut(record.detailed_description)),
                           _field("keyword", " | ".join(record.keywords)))
               if f is not None]
    observational = (record.study_type or "").upper().startswith("OBSERV")

    given = _mentions(rules, names + arms)
    title = _mentions(rules, titles)
    counts = {"observational": observational, "n_interventions": len(record.interventions),
              "specific_non_msc": specific_non_msc, "vague_given": vague_given,
              "drug_like": drug_like}
    # What is given and the titles decide most records; the long descriptions and summaries
    # are read only when they did not (they cost most of the reading).
    desc: list[tuple[_Mention, bool]] = []
    aside: list[_Mention] = []
    role, reason, used = _decide(rules, given=given, desc=desc, title=title, support=[],
                                 **counts)
    if role not in RELEVANT_ROLES:
        desc = [(m, vague) for df, vague in descriptions for m in _mentions(rules, [df])]
        aside = _mentions(rules, passing)
        more = _mentions(rules, support, named=bool(vague_given))
        role, reason, used = _decide(rules, given=given, desc=desc, title=title,
                                     support=more, **counts)
    mesh = rules.msc.find_mesh(record.mesh, ("condition", "intervention")) \
        if role == "none" else []
    if role == "none" and aside:
        role, used = "mention", aside[:1]
        reason = (f"MSCs only mentioned: '{aside[0].matched}' in the description of a "
                  "product that is not MSCs")
    if role == "none":
        # anything at all in the other readable fields (outcomes, eligibility, conditions)
        rest = [f for f in (_field("condition", " | ".join(record.conditions)),
                            _field("primary_outcome", " | ".join(record.primary_outcomes)),
                            _field("eligibility", _cut(record.eligibility)),
                            _field("reference", " | ".join(
                                r.citation for r in record.references if r.citation)))
                if f is not None]
        found = _mentions(rules, rest, negate=False, named=False)
        if found or mesh:
            role = "mention"
            where = (found[0].field.name, found[0].matched) if found else (
                f"{mesh[0][1].kind}_mesh", mesh[0][1].term)
            reason = f"MSCs only mentioned: '{where[1]}' in {where[0]}"
            used = found[:1]
    out = Role(role, reason)
    for m in used[:3]:
        out.evidence.append(Evidence("relevance", role, m.field.name,
                                     ("product dictionary: " if m.kind == "named" else "")
                                     + m.matched))
    if role in RELEVANT_ROLES:
        out.named = [(m.hit.label, m.field.name, m.matched)
                     for m in given + [d for d, _ in desc] + title if m.kind == "named"]
        # The description of an intervention that names MSCs says what they are ("allogeneic
        # umbilical cord-derived ..." of "UC-MSC"): the facets read it beside the name.
        own = [described[id(m.field)] for m in given if id(m.field) in described]
        out.given = _unique(names + arms + own + [m.field for m in used if m.field.name in (
            "intervention_description", "title", "official_title")])
        out.minimally_manipulated = any(
            _is(rr.minimal, m.field.norm[max(0, m.hit.start - 40):m.hit.end + 40]
                if m.hit.start >= 0 else m.field.norm) for m in used) or any(
            _is(rr.minimal, f.norm) for f in names) or any(
            rules.named_info[key].minimally_manipulated for key, _f, _m in out.named)
        if out.minimally_manipulated:
            out.evidence.append(Evidence("relevance", "minimally_manipulated", used[0].field.name,
                                         used[0].matched))
    return out


def _decide(rules: Rules, *, given: list[_Mention], desc: list[tuple[_Mention, bool]],
            title: list[_Mention], support: list[_Mention], observational: bool,
            n_interventions: int, specific_non_msc: int, vague_given: int,
            drug_like: int = 0) -> tuple[str, str, list[_Mention]]:
    admin_given = [m for m in given if _admin(m)]
    admin_desc = [m for m, vague in desc if vague and _admin(m)]
    admin_title = [m for m in title if _admin(m) and "laboratory" not in m.cues]
    named = [m for m in given + [d for d, _ in desc] + title if m.kind == "named"]
    give = "laboratory" if observational else "therapy"
    if named:
        m = named[0]
        return give, f"MSC product '{m.matched}' (product dictionary) in {m.field.name}", [m]
    if admin_given:
        m = admin_given[0]
        return give, f"MSCs given: '{m.matched}' in {m.field.name}", admin_given
    if admin_desc:
        m = admin_desc[0]
        return give, f"MSCs given: '{m.matched}' in the description of an intervention", \
            admin_desc
    all_mentions = given + [m for m, _ in desc] + title + support
    # A title naming MSCs as the treatment ("MSCs for ..."), beside interventions that are
    # procedures of delivery ("Bronchoscopy", "bone marrow aspirate", "tissue engineering"),
    # is an MSC trial; beside nothing but named non-MSC products or drugs, it is not.
    contradicted = n_interventions > 0 and not vague_given and (
        specific_non_msc + drug_like >= n_interventions)
    if admin_title and (observational or not contradicted
                        or any("given" in m.cues for m in admin_title)):
        m = admin_title[0]
        return give, f"the title names MSCs as what is given: '{m.matched}'", admin_title
    admin_support = [m for m in support if _admin(m) and m.field.name != "keyword"
                     and "laboratory" not in m.cues]
    if admin_support and vague_given and not observational:
        m = admin_support[0]
        return "therapy", (f"a cell product of unstated kind, which the {m.field.name.replace('_', ' ')} "
                           f"says is '{m.matched}'"), admin_support
    for kind, role in (("manufacturing", "manufacturing"), ("endogenous", "endogenous")):
        hits = [m for m in all_mentions if kind in m.cues]
        if hits:
            m = hits[0]
            return role, f"MSCs {_WHAT[role]}: '{m.matched}' in {m.field.name}", hits
    lab = [m for m in title + given + (support if observational else [])
           if "laboratory" in m.cues and "marker" not in m.cues]
    if lab:
        m = lab[0]
        return "laboratory", f"isolated MSCs studied: '{m.matched}' in {m.field.name}", lab
    if observational and (title or given):
        m = (title or given)[0]
        return "laboratory", f"an observational study of MSCs: '{m.matched}' in {m.field.name}", \
            [m]
    if all_mentions:
        m = all_mentions[0]
        return "mention", f"MSCs only mentioned: '{m.matched}' in {m.field.name}", [m]
    return "none", _NO_TERM, []


_WHAT = {"manufacturing": "used to make another product",
         "endogenous": "of the patient's own, measured or mobilised"}


def _unique(fields: list[Field]) -> list[Field]:
    seen: set[int] = set()
    out = []
    for f in fields:
        if id(f) not in seen:
            seen.add(id(f))
            out.append(f)
    return out


_CUT = 4000


def _cut(text: str | None) -> str | None:
    """Long free text is read up to its eligibility section and its first 4,000 characters."""
    text = strip_eligibility(text)
    return text[:_CUT] if text else text


# --------------------------------------------------------------------------------------------
# Papers
# --------------------------------------------------------------------------------------------
_PAPER_CUES = 8
def paper_role(record: PublicationRecord, rules: Rules, relevant: bool,
               found: list[tuple[Hit, Field, str]]) -> Role:
    """The role of a paper the relevance reading judged; ``found`` holds the MSC terms and
    products it read (title, keywords, MeSH headings, abstract), which are not scanned again."""
    from tracker.classify import Evidence

    types = " ".join(record.publication_types).lower()
    if not relevant:
        found = found[:1]
    # The sentences around the first mentions say enough (an abstract may name MSCs twenty
    # times); reading each costs a few microseconds.
    mentions = [_Mention(f, h, kind, rules.role) for h, f, kind in found[:_PAPER_CUES]]
    mesh_ids = {m.mesh_id for m in record.mesh}
    if not relevant:
        if mentions:
            m = mentions[0]
            return Role("mention", f"MSCs only mentioned: '{m.matched}' in {m.field.name}",
                        evidence=[Evidence("relevance", "mention", m.field.name, m.matched)])
        return Role("none", "no MSC term in title, keywords, MeSH or abstract")
    given = [m for m in mentions if "administration" in m.cues and _admin(m)]
    if "D045164" in mesh_ids or given or "clinical trial" in types:
        m = given[0] if given else (mentions[0] if mentions else None)
        why = (f"MSCs given: '{m.matched}' in {m.field.name}" if given and m else
               "MSC transplantation (MeSH) or a clinical trial")
        return Role("therapy", why, evidence=[Evidence("relevance", "therapy", m.field.name,
                                                       m.matched)] if m else [])
    for kind, role in (("endogenous", "endogenous"), ("manufacturing", "manufacturing")):
        hits = [m for m in mentions if kind in m.cues]
        if hits and len(hits) * 2 >= len(mentions):
            m = hits[0]
            return Role(role, f"MSCs {_WHAT[role]}: '{m.matched}' in {m.field.name}",
                        evidence=[Evidence("relevance", role, m.field.name, m.matched)])
    lab = [m for m in mentions if "laboratory" in m.cues]
    if not lab and mentions and all(m.field.name == "abstract" for m in mentions):
        # named only in the abstract, neither given nor studied there: in passing
        m = mentions[0]
        return Role("mention", f"MSCs only mentioned: '{m.matched}' in the abstract",
                    evidence=[Evidence("relevance", "mention", m.field.name, m.matched)])
    if lab and "review" not in types:
        m = lab[0]
        return Role("laboratory", f"isolated MSCs studied: '{m.matched}' in {m.field.name}",
                    evidence=[Evidence("relevance", "laboratory", m.field.name, m.matched)])
    m = mentions[0] if mentions else None
    return Role("therapy", "about MSC therapy" + (f": '{m.matched}' in {m.field.name}" if m
                                                   else ""),
                evidence=[Evidence("relevance", "therapy", m.field.name, m.matched)] if m else [])
