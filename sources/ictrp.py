"""WHO ICTRP search-portal XML export ("Export results to XML") to StudyRecord: a file import.

Contract (shared/docs/API_NOTES.md section 7): ICTRP has **no free query API** (its web service
is licensed to partners), so this source never fetches; a user exports a search from
https://trialsearch.who.int and runs ``tracker import ictrp FILE.xml``. The export's root is
``<Trials_downloaded_from_ICTRP>`` with one ``<Trial>`` per registration of every primary
registry (ChiCTR, IRCT, jRCT, CTRI, CRIS, ANZCTR, DRKS, ... and CT.gov, ISRCTN, EUCTR, CTIS).

What the real export looks like (tests/fixtures/ictrp/, 95 trials):

* every value ends with ``"\\n    "``; text carries HTML (``&lt;br&gt;``, ``<p>``), carriage
  returns as ``&#x0D;`` and, now and then, a doubly escaped entity (``&amp;lt;2``);
* ``TrialID`` carries ICTRP's wrappers (``EUCTR2021-000037-14-ES``: one record per EU country,
  ``JPRN-jRCTs031210288``, ``CTIS2023-507385-11-00``); ``tracker.trial_ids`` drops them, so
  the per-country EUCTR copies of one trial share one canonical id;
* ``Phase`` speaks every registry's vocabulary: "Phase 3", "3", "Phase 2/Phase 3",
  "Phase1/Phase2", "Phase III", "Early Phase 1", "0" (ChiCTR), "N/A", "Not selected" (UMIN),
  empty, and EUCTR/CTIS's "Human pharmacology (Phase I): no ... (Phase III): yes" lines;
* ``Recruitment_Status`` is ICTRP's own coarse word ("Recruiting", "Not recruiting" /
  "Not Recruiting", "Authorised" for EUCTR, "Not Available", empty);
* dates: ``Date_registration3`` YYYYMMDD, ``Date_registration`` dd/mm/yyyy (or ISO),
  ``Date_enrollement`` (sic) in the registry's own form ("April 25, 2024", "January 2022",
  "16/04/2024", "2021-09-20", "2016/12/06"), ``Last_Refreshed_on`` "20 May 2024";
* ``Target_size`` is a number or a ChiCTR group list "control group:50;sepsis group:50;".

Registry slugs come from the TrialID, through ``tracker.trial_ids`` (the slugs the rest of the
project uses); ``Source_Register`` (:data:`REGISTRY_OF`) is only the fallback for an id format
trial_ids does not know. Where the two vocabularies disagree:

* ``Source_Register`` "JPRN" covers jRCT, UMIN-CTR, JapicCTI and JMA ids: all ``jprn`` (the
  trial_ids slug), not "jrct" (a UMIN or JapicCTI trial is not a jRCT one);
* "NL-OMON" and "NTR" / the Netherlands Trial Register are both ``ntr``;
* "Clinical Trials Information System" (TrialID ``CTIS...``) is ``ctis``, not ``euctr``: a
  trial moved from EudraCT to CTIS has both, and the TrialID says which record this is;
* "CRIS" registers ``KCT`` ids, "REBEC" ``RBR-`` ids, "REPEC" ``PER-`` ids, "ANZCTR" ``ACTRN``.

Every record says its own registry (``registry``) and ``source="ictrp"``: its raw XML is read
again by :meth:`ICTRP.parse_raw`, not by the registry's own source.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from db.records import Arm, Intervention, SecondaryId, StudyRecord, content_hash
from sources.base import (
    FILE_IMPORT,
    BaseSource,
    Page,
    SourceCount,
    Window,
    iter_xml_children,
    parse_xml,
)
from tracker.countries import normalize_country
from tracker.errors import ConfigError, ParseError, one_line
from tracker.taxonomy import ctgov_phase
from tracker.trial_ids import REGISTRIES, extract_trial_ids, normalize_accession

NAME = "ictrp"
ROOT_TAG = "Trials_downloaded_from_ICTRP"
TRIAL_TAG = "Trial"
PAGE_SIZE = 200
TRIAL_URL = "https://trialsearch.who.int/Trial2.aspx?TrialID={}"
WHAT_TO_DO = ("export the search again from https://trialsearch.who.int (\"Export results to "
              "XML\") and import the whole file with `tracker import ictrp FILE.xml`")

# ICTRP ``Source_Register`` values (as the export spells them) and TrialID prefixes -> slug.
# Keys are compared case- and punctuation-insensitively (``registry_of``).
REGISTRY_OF: dict[str, str] = {
    # Source_Register values
    "ClinicalTrials.gov": "ctgov",
    "ISRCTN": "isrctn",
    "EU Clinical Trials Register": "euctr",
    "EUCTR": "euctr",
    "Clinical Trials Information System": "ctis",
    "CTIS": "ctis",
    "ChiCTR": "chictr",
    "Chinese Clinical Trial Registry": "chictr",
    "IRCT": "irct",
    "Iranian Registry of Clinical Trials": "irct",
    "JPRN": "jprn",
    "Japan Primary Registries Network": "jprn",
    "CTRI": "ctri",
    "Clinical Trials Registry - India": "ctri",
    "CRIS": "cris",
    "Clinical Research Information Service": "cris",
    "ANZCTR": "anzctr",
    "Australian New Zealand Clinical Trials Registry": "anzctr",
    "DRKS": "drks",
    "German Clinical Trials Register": "drks",
    "NL-OMON": "ntr",
    "NTR": "ntr",
    "Netherlands Trial Register": "ntr",
    "PACTR": "pactr",
    "Pan African Clinical Trial Registry": "pactr",
    "TCTR": "tctr",
    "Thai Clinical Trials Registry": "tctr",
    "SLCTR": "slctr",
    "Sri Lanka Clinical Trials Registry": "slctr",
    "RPCEC": "rpcec",
    "Cuban Public Registry of Clinical Trials": "rpcec",
    "LBCTR": "lbctr",
    "Lebanese Clinical Trials Registry": "lbctr",
    "REBEC": "rebec",
    "Brazilian Clinical Trials Registry": "rebec",
    "REPEC": "repec",
    "Peruvian Clinical Trials Registry": "repec",
    "ITMCTR": "itmctr",
    "International Traditional Medicine Clinical Trial Registry": "itmctr",
    # TrialID prefixes (ICTRP's spelling)
    "NCT": "ctgov",
    "jRCT": "jprn",
    "UMIN": "jprn",
    "JapicCTI": "jprn",
    "JMA": "jprn",
    "KCT": "cris",
    "ACTRN": "anzctr",
    "NL": "ntr",
    "RBR": "rebec",
    "PER": "repec",
}

_KEY = re.compile(r"[^a-z0-9]+")
_REGISTRY_KEYS = {_KEY.sub("", k.casefold()): v for k, v in REGISTRY_OF.items()}
_PREFIX = re.compile(r"^\s*([A-Za-z]+(?:-OMON)?)")


def registry_of(value: str | None) -> str | None:
    """The slug of a ``Source_Register`` value or a TrialID prefix ("JPRN-UMIN..." -> jprn);
    None when neither is known."""
    if not value or not value.strip():
        return None
    slug = _REGISTRY_KEYS.get(_KEY.sub("", value.casefold()))
    if slug is None and (m := _PREFIX.match(value)):
        word = m.group(1)
        if word.upper() == "JPRN" and "-" in value:  # the wrapper says less than what follows
            return registry_of(value.split("-", 1)[1]) or "jprn"
        slug = _REGISTRY_KEYS.get(_KEY.sub("", word.casefold()))
    return slug


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
_BREAK = re.compile(r"(?:\r\n|\r)?<\s*br\s*/?\s*>|<\s*/?\s*p\s*>", re.IGNORECASE)
_BLANKS = re.compile(r"\n{3,}")
_SPACE = re.compile(r"\s+")
_NULL_WORDS = frozenset({"", "-", "n/a", "na", "none", "nil", "null", "not applicable",
                         "not available", "not specified", "no"})


def _lines(text: str | None) -> str | None:
    """Multi-line text: HTML breaks and paragraphs as line breaks, carriage returns folded,
    entities decoded, every line stripped, runs of blank lines kept as one; None if empty."""
    if not text:
        return None
    text = _BREAK.sub("\n", text).replace("\r\n", "\n").replace("\r", "\n")
    if "&" in text:
        text = html.unescape(text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANKS.sub("\n\n", text).strip()
    return text or None


def _one_line(text: str | None) -> str | None:
    """Single-line text: markup and every run of whitespace as one space; None if empty."""
    text = _lines(text)
    return _SPACE.sub(" ", text).strip() or None if text else None


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in text.split("\n\n") if b.strip()]


def _unique(values: Iterable[str]) -> list[str]:
    """``values`` without empties and case-insensitive repeats, first spelling kept."""
    seen: set[str] = set()
    out = []
    for v in values:
        key = v.casefold()
        if v and key not in seen:
            seen.add(key)
            out.append(v)
    return out


# --------------------------------------------------------------------------------------------
# Phase, status, study type
# --------------------------------------------------------------------------------------------
_EU_PHASE = re.compile(r"\(\s*phase\s+(iv|iii|ii|i)\s*\)\s*:\s*(yes|no)\b", re.IGNORECASE)
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_PHASE_TEXT = re.compile(
    r"(?:phase|fase|and|or|to|[\s/,+&-]|(?:iv|iii|ii|i|[0-4])[ab]?(?![a-z0-9]))+",
    re.IGNORECASE)
_PHASE_NUMBER = re.compile(r"(?<![a-z0-9])(iv|iii|ii|i|[0-4])[ab]?(?![a-z0-9])")
_PHASE_NA = frozenset({"n/a", "na", "not applicable", "not-applicable", "none"})
_PHASE_UNSET = frozenset({"not selected", "not specified", "unknown", "other"})
_PHASE_NAMES = {0: "EARLY_PHASE1", 1: "PHASE1", 2: "PHASE2", 3: "PHASE3", 4: "PHASE4"}


def _combine(numbers: set[int]) -> str:
    if not numbers:
        return "UNKNOWN"
    return ctgov_phase([_PHASE_NAMES[n] for n in sorted(numbers)])


def ictrp_phase(raw: str | None, observational: bool = False) -> str:
    """One canonical phase for an ICTRP ``Phase`` value of any registry's vocabulary.

    CT.gov ("Phase 2/Phase 3", "Early Phase 1", "N/A"), jRCT and OMON ("3"), UMIN
    ("Phase III", "Not selected"), CRIS ("Phase1/Phase2"), ChiCTR ("0" = phase 0, CT.gov's
    Early Phase 1), EUCTR and CTIS yes/no lines ("Therapeutic exploratory (Phase II): yes").
    An observational study without a phase (empty, "0", N/A) is NOT_APPLICABLE, as CT.gov says
    for its own; an interventional one without a phase is UNKNOWN. Never raises.
    """
    text = _one_line(raw)
    if not text:
        return "NOT_APPLICABLE" if observational else "UNKNOWN"
    low = text.casefold()
    flags = _EU_PHASE.findall(text)
    if flags:
        return _combine({_ROMAN[n.lower()] for n, yes in flags if yes.lower() == "yes"})
    if low in _PHASE_NA:
        return "NOT_APPLICABLE"
    if low in _PHASE_UNSET:
        return "UNKNOWN"
    if low in ("early phase 1", "early phase i"):
        return "EARLY_PHASE1"
    if "post" in low and "market" in low:
        return "PHASE4"
    if _PHASE_TEXT.fullmatch(low):
        words = re.sub(r"phase|fase", " ", low)
        numbers = {_ROMAN[n] if n.isalpha() else int(n) for n in _PHASE_NUMBER.findall(words)}
        if observational and numbers == {0}:
            return "NOT_APPLICABLE"
        return _combine(numbers)
    return "UNKNOWN"


# ICTRP's own recruitment words, and the registries' words it passes on.
_STATUS = {
    "recruiting": "RECRUITING",
    "not recruiting": "OTHER",  # ICTRP's word for not-yet, active, completed and stopped alike
    "authorised": "OTHER",  # EUCTR: approved by the competent authority, recruitment unknown
    "authorized": "OTHER",
    "pending": "NOT_YET_RECRUITING",  # WHO TRDS: participants are not yet being recruited
    "not yet recruiting": "NOT_YET_RECRUITING",
    "active not recruiting": "ACTIVE_NOT_RECRUITING",
    "enrolling by invitation": "ENROLLING_BY_INVITATION",
    "suspended": "SUSPENDED",
    "terminated": "TERMINATED",
    "completed": "COMPLETED",  # "complete" (WHO TRDS: recruitment complete) stays OTHER
    "withdrawn": "WITHDRAWN",
    "unknown": "UNKNOWN",
    "unknown status": "UNKNOWN",
    "not available": "UNKNOWN",
}


def ictrp_status(raw: str | None) -> str:
    """Canonical status of a ``Recruitment_Status`` value; UNKNOWN when empty or unavailable,
    OTHER for a word with no canonical equivalent ("Not recruiting", "Authorised")."""
    text = _one_line(raw)
    if not text:
        return "UNKNOWN"
    key = " ".join(re.sub(r"[^a-z]+", " ", text.casefold()).split())
    return _STATUS.get(key, "OTHER")


def ictrp_study_type(raw: str | None) -> str | None:
    """CT.gov's study-type words where ICTRP's say the same ("Interventional clinical trial of
    medicinal product", "Observational [Patient Registry]", "observational"); another
    registry's word (ChiCTR "Diagnostic test") as given."""
    text = _one_line(raw)
    if not text:
        return None
    low = text.casefold()
    if "expanded access" in low:
        return "EXPANDED_ACCESS"
    if "observ" in low:
        return "OBSERVATIONAL"
    if "interven" in low:
        return "INTERVENTIONAL"
    return text


# --------------------------------------------------------------------------------------------
# Dates and numbers
# --------------------------------------------------------------------------------------------
_MONTHS = {m.casefold(): i for i, m in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"), start=1)}
_MONTHS.update({k[:3]: v for k, v in list(_MONTHS.items())})
_DATE_FORMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(\d{4})(\d{2})(\d{2})"), "ymd"),
    (re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"), "ymd"),
    (re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})"), "dmy"),  # ICTRP writes day first
    (re.compile(r"(\d{1,2})\s+([A-Za-z]+)\.?,?\s+(\d{4})"), "dMy"),
    (re.compile(r"([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})"), "Mdy"),
    (re.compile(r"([A-Za-z]+)\.?,?\s+(\d{4})"), "My"),
    (re.compile(r"(\d{4})[-/](\d{1,2})"), "ym"),
    (re.compile(r"(\d{4})"), "y"),
]


def _iso(text: str | None) -> str | None:
    """An ICTRP date as an ISO (possibly partial) date; None when absent, unreadable, or the
    1900 placeholder some registries send for "no date"."""
    value = _one_line(text)
    if not value:
        return None
    for rx, form in _DATE_FORMS:
        m = rx.fullmatch(value)
        if not m:
            continue
        g = m.groups()
        try:
            if form == "ymd":
                y, mo, d = int(g[0]), int(g[1]), int(g[2])
            elif form == "dmy":
                d, mo, y = int(g[0]), int(g[1]), int(g[2])
            elif form == "dMy":
                d, mo, y = int(g[0]), _MONTHS[g[1].casefold()], int(g[2])
            elif form == "Mdy":
                mo, d, y = _MONTHS[g[0].casefold()], int(g[1]), int(g[2])
            elif form == "My":
                y, mo = int(g[1]), _MONTHS[g[0].casefold()]
                return f"{y:04d}-{mo:02d}" if y > 1900 and 1 <= mo <= 12 else None
            elif form == "ym":
                y, mo = int(g[0]), int(g[1])
                return f"{y:04d}-{mo:02d}" if y > 1900 and 1 <= mo <= 12 else None
            else:
                y = int(g[0])
                return f"{y:04d}" if y > 1900 else None
            day = dt.date(y, mo, d)
        except (KeyError, ValueError):
            return None
        return day.isoformat() if day.year > 1900 else None
    return None


def _date(*texts: str | None) -> dt.date | None:
    """The first of ``texts`` that is a whole date."""
    for text in texts:
        value = _iso(text)
        if value and len(value) == 10:
            return dt.date.fromisoformat(value)
    return None


_GROUP_SIZE = re.compile(r"[^:;]*:\s*(\d+)\s*")


def _target_size(text: str | None) -> int | None:
    """``Target_size`` as a number: "500", or the sum of a group list such as
    "Experimental group:30;Control group:30" or "control group:50;sepsis group:50;"."""
    value = _one_line(text)
    if not value:
        return None
    if value.isdigit():
        return int(value)
    parts = [p for p in value.split(";") if p.strip()]
    sizes = []
    for part in parts:
        m = _GROUP_SIZE.fullmatch(part) or re.fullmatch(r"\s*(\d+)\s*", part)
        if not m:
            return None
        sizes.append(int(m.group(1)))
    return sum(sizes) if sizes else None


# --------------------------------------------------------------------------------------------
# Conditions, outcomes, secondary ids
# --------------------------------------------------------------------------------------------
_CONDITION_SPLIT = re.compile(r";|<\s*br\s*/?\s*>|<\s*/?\s*p\s*>", re.IGNORECASE)
_MEDDRA_TERM = re.compile(r"Term\s*:\s*(.*?)\s*(?:System Organ Class\s*:|\n|$)", re.DOTALL)
_CODE_ONLY = re.compile(
    r"(?:[A-Z]\d{2}(?:\.\d{1,4})?|\d+|(?:ORPHA\s*:\s*\d+\s*)+)", re.IGNORECASE)


def _conditions(text: str | None) -> tuple[list[str], list[str]]:
    """(conditions, keywords) of a ``Condition`` cell. Items are split on ";" and HTML breaks,
    free text on line breaks; an EU MedDRA block gives its Term, "Therapeutic area: ..." goes
    to the keywords, bare codes (ICD-10 "E85.0", MedDRA "10007963", ORPHA) are dropped."""
    if not text:
        return [], []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    conditions: list[str] = []
    keywords: list[str] = []
    for part in _CONDITION_SPLIT.split(text):
        part = html.unescape(part).strip() if "&" in part else part.strip()
        if not part:
            continue
        if "MedDRA version" in part or part.startswith("Level:"):
            m = _MEDDRA_TERM.search(part)
            if m and m.group(1).strip():
                conditions.append(_SPACE.sub(" ", m.group(1)).strip())
            continue
        if part.casefold().startswith("therapeutic area:"):
            keywords.append(_SPACE.sub(" ", part.split(":", 1)[1]).strip())
            continue
        for line in part.split("\n"):
            line = _SPACE.sub(" ", line).strip().lstrip("-•*").strip()
            if line and not _CODE_ONLY.fullmatch(line):
                conditions.append(line)
    return _unique(conditions), _unique(k for k in keywords if k)


_EU_SECTIONS = ("Main Objective", "Secondary Objective", r"Primary end point\(s\)",
                r"Secondary end point\(s\)", r"Timepoint\(s\) of evaluation of this end point")
_EU_SECTION = re.compile(r"(?:^|;)\s*(" + "|".join(_EU_SECTIONS) + r")\s*:\s*", re.IGNORECASE)


def _primary_outcomes(text: str | None) -> list[str]:
    """``Primary_outcome`` as a list: CT.gov's ";"-separated measures, or the "Primary end
    point(s)" section of EUCTR/CTIS "Main Objective: ...;Primary end point(s): ..." text."""
    value = _lines(text)
    if not value:
        return []
    marks = list(_EU_SECTION.finditer(value))
    if marks:
        out = []
        for i, m in enumerate(marks):
            if m.group(1).casefold().startswith("primary end point"):
                end = marks[i + 1].start() if i + 1 < len(marks) else len(value)
                out.append(value[m.end():end].strip())
        return _unique(o for o in out if o)
    return _unique(p.strip() for p in value.split(";") if p.strip())


_UTN = re.compile(r"U1111-\d{4}-\d{4}")
_SECONDARY_TYPE = {"euctr": "EUDRACT_NUMBER", "ctis": "CTIS"}


def _secondary_ids(text: str | None, own: tuple[str, str]) -> list[SecondaryId]:
    """``Secondary_ID``/``SecondaryIDs`` split on ";": registry ids in their canonical form
    (type EUDRACT_NUMBER, CTIS or REGISTRY, as CT.gov types them, domain the registry), a WHO
    Universal Trial Number as UTN, anything else as given; placeholders and the record's own
    id (a per-country EUCTR copy naming another country's copy) left out."""
    value = _one_line(text)
    if not value:
        return []
    out: list[SecondaryId] = []
    seen = {own}
    for part in value.split(";"):
        part = part.strip()
        if part.casefold() in _NULL_WORDS:
            continue
        found = extract_trial_ids(part)
        if found:
            for tid in found:
                key = (tid.registry, tid.registry_id)
                if key not in seen:
                    seen.add(key)
                    out.append(SecondaryId(tid.registry_id,
                                           _SECONDARY_TYPE.get(tid.registry, "REGISTRY"),
                                           REGISTRIES.get(tid.registry)))
            continue
        key = ("", part.casefold())
        if key not in seen:
            seen.add(key)
            out.append(SecondaryId(part, "UTN" if _UTN.fullmatch(part) else None))
    return out


# --------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------
_CTGOV_TYPES = ("Drug", "Device", "Biological", "Procedure", "Radiation", "Behavioral",
                "Behavioural", "Genetic", "Dietary Supplement", "Combination Product",
                "Diagnostic Test", "Other")
_TYPED = re.compile(r"(" + "|".join(_CTGOV_TYPES) + r")\s*:\s*(\S.*)", re.IGNORECASE | re.DOTALL)
_PRODUCT_KEYS = ("Trade Name", "Product Name", "INN or Proposed INN", "Product Code",
                 "Current Sponsor code", "Other descriptive name", "Pharmaceutical Form",
                 "CAS Number", "Strength", "Concentration unit", "Concentration type",
                 "Concentration number", "Pharmaceutical form of the placebo",
                 "Route of administration of the placebo")
_PRODUCT = re.compile(r"^(?:Product Name|Trade Name|INN or Proposed INN|Product Code|"
                      r"Pharmaceutical Form)\s*:", re.MULTILINE)
# CTIS writes one product on one line: "Product Name: X,Product Code: Y,Pharmaceutical Form: ..."
_CTIS_FIELD = re.compile(r",\s*(?=(?:" + "|".join(map(re.escape, _PRODUCT_KEYS)) + r")\s*:)")
_CTIS_PRODUCT = re.compile(r";\s*(?=Product Name\s*:)")
_NAME_ORDER = ("Product Name", "Trade Name", "INN or Proposed INN", "Current Sponsor code",
               "Product Code", "Other descriptive name", "Pharmaceutical Form")
_OTHER_NAMES = ("Trade Name", "Product Name", "INN or Proposed INN", "Product Code",
                "Current Sponsor code", "Other descriptive name")
_JP_NAME = re.compile(r"^Generic name etc\s*:", re.MULTILINE)
_ARM_TYPES = {"experimental": "EXPERIMENTAL", "active comparator": "ACTIVE_COMPARATOR",
              "placebo comparator": "PLACEBO_COMPARATOR", "sham comparator": "SHAM_COMPARATOR",
              "no intervention": "NO_INTERVENTION"}
_LABEL = re.compile(
    r"(?:(?P<arm>Experimental|Active Comparator|Placebo Comparator|Sham Comparator|"
    r"No Intervention)|(?P<group>(?:Control\s+)?Intervention\s*\d*|Arm\s*\d+|Group\s*\d+))"
    r"\s*:\s*(?P<rest>.*)", re.IGNORECASE)
_CHICTR_PAIR = re.compile(r"([^:;\n]+):([^;\n]*)")


def _fields(block: str) -> dict[str, str]:
    """"Key: value" lines of a block, first occurrence of each key."""
    out: dict[str, str] = {}
    for line in block.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _usable(value: str | None) -> bool:
    return bool(value) and value.casefold() not in _NULL_WORDS  # type: ignore[union-attr]


def _products(text: str) -> list[Intervention]:
    """EUCTR (one "Key: value" line each, products apart by a blank line) and CTIS (one
    product a line, fields apart by commas) medicinal products. The name is the product name,
    else trade name, INN, ...; the other names the product's other designations."""
    out = []
    for block in _blocks(_CTIS_PRODUCT.sub("\n\n", text)):
        if "\n" not in block:
            block = _CTIS_FIELD.sub("\n", block)
        fields = _fields(block)
        name = next((fields[k] for k in _NAME_ORDER if _usable(fields.get(k))), None)
        if name is None:
            continue
        others = _unique(fields[k] for k in _OTHER_NAMES
                         if _usable(fields.get(k)) and fields[k].casefold() != name.casefold())
        out.append(Intervention(type=None, name=name, description=block, other_names=others))
    return out


def _japan(text: str) -> list[Intervention]:
    """jRCT "investigational material(s) / Generic name etc : X / INN of investigational
    material : Y" blocks (control material blocks of "-" only are left out)."""
    out = []
    for block in _blocks(text):
        fields = _fields(block)
        generic = fields.get("Generic name etc")
        inn = fields.get("INN of investigational material")
        names = [n for n in (generic, inn) if _usable(n)]
        if not names:
            continue
        others = _unique(n for n in names[1:] if n.casefold() != names[0].casefold())
        out.append(Intervention(type=None, name=names[0], description=block, other_names=others))
    return out


def _labelled(text: str) -> tuple[list[Intervention], list[Arm]] | None:
    """Entries that start at labelled lines ("Group 1:", "Arm 2:", "Intervention1:",
    "Experimental: X", "Active Comparator: Y"): one intervention each (named by the rest of its
    first line) and an arm; None when no line is labelled."""
    lines = [ln for ln in text.split("\n")]
    starts = [i for i, ln in enumerate(lines) if _LABEL.match(ln)]
    if not starts:
        return None
    if starts[0] != 0:
        starts.insert(0, 0)
    interventions: list[Intervention] = []
    arms: list[Arm] = []
    for n, i in enumerate(starts):
        chunk = "\n".join(lines[i:starts[n + 1] if n + 1 < len(starts) else len(lines)]).strip()
        if not chunk:
            continue
        first, _, rest = chunk.partition("\n")
        m = _LABEL.match(first)
        if m is None:  # text before the first label
            interventions.append(Intervention(type=None, name=first, description=chunk))
            continue
        name = m.group("rest").strip() or rest.strip().split("\n")[0].strip()
        if not name:
            continue
        interventions.append(Intervention(type=None, name=name, description=chunk))
        if m.group("arm"):
            arms.append(Arm(label=name, type=_ARM_TYPES[" ".join(m.group("arm").lower().split())],
                            description=rest.strip() or None))
        elif not m.group("group").casefold().replace(" ", "").startswith(
                ("intervention", "controlintervention")):
            label = " ".join(first[:m.start("rest")].rstrip().rstrip(":").split())
            arms.append(Arm(label=label, description=chunk[m.start("rest"):].strip() or None))
    return interventions, arms


def _chictr(text: str) -> tuple[list[Intervention], list[Arm]] | None:
    """ChiCTR "group:intervention;" lists: an arm per group, an intervention per named one
    ("No" is none)."""
    parts = [p.strip() for p in text.replace("\n", ";").split(";") if p.strip()]
    pairs = [_CHICTR_PAIR.fullmatch(p) for p in parts]
    if not pairs or not all(pairs):
        return None
    interventions, arms = [], []
    for part, m in zip(parts, pairs, strict=True):
        group, given = m.group(1).strip(), m.group(2).strip()  # type: ignore[union-attr]
        named = _usable(given)
        arms.append(Arm(label=group, interventions=[given] if named else []))
        if named:
            interventions.append(Intervention(type=None, name=given, description=part))
    return interventions, arms


def _interventions(raw: str | None, registry: str) -> tuple[list[Intervention], list[Arm]]:
    """``Intervention`` split into entries, each keeping its own text verbatim (markup as line
    breaks) in ``description``: CT.gov "Type: name;Type: name" lists, EUCTR/CTIS medicinal
    products, jRCT material blocks, ChiCTR group lists, labelled groups and arms (DRKS, jRCT,
    CTRI, IRCT), else one entry per paragraph."""
    text = _lines(raw)
    if not text:
        return [], []
    arms: list[Arm] = []
    parts = [p.strip() for p in text.split(";") if p.strip()]
    typed = [m for p in parts if (m := _TYPED.fullmatch(p))]
    if parts and len(typed) == len(parts):
        interventions = []
        for part, m in zip(parts, typed, strict=True):
            kind = m.group(1).upper().replace(" ", "_").replace("BEHAVIOURAL", "BEHAVIORAL")
            name = m.group(2).split("\n")[0].strip()
            interventions.append(Intervention(type=kind, name=name, description=part))
    elif _PRODUCT.search(text) or text.startswith("Product Name:"):
        interventions = _products(text)
    elif _JP_NAME.search(text):
        interventions = _japan(text)
    elif registry == "chictr" and (pairs := _chictr(text)) is not None:
        interventions, arms = pairs
    elif (labelled := _labelled(text)) is not None:
        interventions, arms = labelled
    else:
        interventions = [Intervention(type=None, name=b.split("\n")[0], description=b)
                         for b in _blocks(text)]
    seen: set[tuple[str | None, str, str | None]] = set()
    unique = []
    for iv in interventions:
        key = (iv.type, iv.name, iv.description)
        if key not in seen:
            seen.add(key)
            unique.append(iv)
    return unique, arms


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
def _serialise(element: Any) -> bytes:
    """A ``<Trial>`` element as compact UTF-8 bytes (no declaration, no trailing text)."""
    return etree.tostring(element, encoding="utf-8", xml_declaration=False, with_tail=False)


def _text(element: Any, *tags: str) -> str | None:
    """The stripped text of the first of ``tags`` that ``element`` has with text."""
    for tag in tags:
        value = element.findtext(tag)
        if value is not None and value.strip():
            return value.strip()
    return None


def trial_key(trial_id: str | None, register: str | None) -> tuple[str, str] | None:
    """(registry slug, canonical registry id) of an ICTRP TrialID: the id ``tracker.trial_ids``
    finds in it, else (an id format trial_ids lacks) the ``Source_Register``'s or prefix's slug
    with the id as NLM-style compact text, ICTRP's "JPRN-" wrapper dropped; None when neither
    says which registry it is."""
    if not trial_id or not trial_id.strip():
        return None
    found = extract_trial_ids(trial_id)
    if found:
        return found[0].registry, found[0].registry_id
    slug = registry_of(register) or registry_of(trial_id)
    if slug is None:
        return None
    bare = re.sub(r"^\s*JPRN-", "", trial_id) if slug == "jprn" else trial_id
    tid = normalize_accession(slug, bare)
    if tid is None or not _FALLBACK_ID.fullmatch(tid.registry_id):
        return None
    return tid.registry, tid.registry_id


# What an id of a format trial_ids lacks may look like: letters, digits, "-/._", a digit, at
# most the 64 characters ``study.registry_id`` holds.
_FALLBACK_ID = re.compile(r"(?=[^0-9]*[0-9])[A-Za-z0-9][A-Za-z0-9/._-]{1,63}")


# Export_date is the moment of the export, the same for every trial of a file: it is left out
# of the content hash, so a newer export of an unchanged trial is not a new version.
_EXPORT_DATE = re.compile(rb"<Export_date>[^<]*</Export_date>|<Export_date\s*/>")


def record_hash(raw: bytes) -> str:
    """The content hash of a ``<Trial>``'s bytes, without its ``Export_date``."""
    return content_hash(_EXPORT_DATE.sub(b"", raw))


def _element(trial: Any) -> tuple[Any, bytes]:
    if isinstance(trial, bytes | bytearray | memoryview):
        raw = bytes(trial)
        element = parse_xml(raw, "ictrp: a trial record")
    else:
        element, raw = trial, _serialise(trial)
    if not isinstance(element.tag, str) or element.tag != TRIAL_TAG:
        raise ParseError(f"ictrp: a trial record is a <{element.tag}> element, not <{TRIAL_TAG}>")
    return element, raw


def parse_trial(trial: Any) -> StudyRecord:
    """Normalise one ``<Trial>`` (an lxml element or its bytes) to a StudyRecord of its primary
    registry (``registry`` = the registry's slug, ``source`` = "ictrp").

    Only a TrialID of a known registry and a title are required; every other part may be
    missing (None or empty). Raises ParseError, and nothing else, when the record cannot be
    read or keyed.
    """
    element, raw = _element(trial)
    trial_id = _text(element, "TrialID")
    try:
        return _record(element, raw, trial_id)
    except ParseError:
        raise
    except Exception as exc:  # the contract: a bad record is a ParseError, nothing else
        raise ParseError(one_line(f"ictrp: trial {trial_id or '(no TrialID)'} could not be "
                                  f"read: {type(exc).__name__}: {exc}")[:500]) from exc


def _record(element: Any, raw: bytes, trial_id: str | None) -> StudyRecord:
    if not trial_id:
        raise ParseError("ictrp: a trial has no TrialID; the export is damaged, export it again")
    register = _one_line(_text(element, "Source_Register"))
    key = trial_key(trial_id, register)
    if key is None:
        raise ParseError(
            f"ictrp: trial {trial_id!r} (register {register!r}) has an id of no registry "
            "tracker.trial_ids knows")
    registry, registry_id = key
    title = _one_line(_text(element, "Public_title")) or _one_line(
        _text(element, "Scientific_title"))
    if not title:
        raise ParseError(f"ictrp: trial {trial_id} has no title")

    study_type = ictrp_study_type(_text(element, "Study_type"))
    observational = study_type == "OBSERVATIONAL"
    phase_raw = _text(element, "Phase")
    status_raw = _text(element, "Recruitment_Status")
    conditions, keywords = _conditions(_text(element, "Condition"))
    interventions, arms = _interventions(_text(element, "Intervention"), registry)
    inclusion = _lines(_text(element, "Inclusion_Criteria"))
    exclusion = _lines(_text(element, "Exclusion_Criteria"))
    eligibility = "\n\n".join(t for t in (inclusion, exclusion) if t) or None
    countries = _unique(c for part in (_one_line(_text(element, "Countries")) or "").split(";")
                        if (c := normalize_country(part)))
    results = (_one_line(_text(element, "results_yes_no")) or "").casefold()
    url = _one_line(_text(element, "web_address"))
    return StudyRecord(
        registry=registry,
        registry_id=registry_id,
        title=title,
        url=url if url and url.startswith(("http://", "https://")) else TRIAL_URL.format(
            trial_id),
        raw=raw,
        content_hash=record_hash(raw),
        official_title=_one_line(_text(element, "Scientific_title")),
        acronym=_one_line(_text(element, "Acronym")),
        study_type=study_type,
        phase=ictrp_phase(phase_raw, observational),
        phase_raw=phase_raw,
        status=ictrp_status(status_raw),
        status_raw=status_raw,
        conditions=conditions,
        keywords=keywords,
        interventions=interventions,
        enrollment=_target_size(_text(element, "Target_size")),
        sponsor=_one_line(_text(element, "Primary_sponsor")),
        first_posted=_date(_text(element, "Date_registration3"),
                           _text(element, "Date_registration")),
        last_update_posted=_date(_text(element, "Last_Refreshed_on")),
        start_date=_iso(_text(element, "Date_enrollement", "Date_enrollment")),
        completion_date=_iso(_text(element, "results_date_completed")),
        has_results=results in ("yes", "y", "true"),
        results_first_posted=_date(_text(element, "results_date_posted")),
        arms=arms,
        primary_outcomes=_primary_outcomes(_text(element, "Primary_outcome")),
        countries=countries,
        eligibility=eligibility,
        secondary_ids=_secondary_ids(_text(element, "Secondary_ID", "SecondaryIDs"), key),
        source=NAME,
    )


def read_export(body: bytes) -> list[tuple[str | None, bytes]]:
    """The trials of an ICTRP XML export: (TrialID as the export writes it, stripped, or None;
    the ``<Trial>`` element's bytes), in file order. A UTF-8 BOM and Windows line ends are
    fine (XML folds line ends, so the bytes are the same either way).

    Raises one ParseError line when ``body`` is empty, cut short, not XML or not an ICTRP
    export, saying so and what to do. An export of a search with no results gives [].
    """
    try:
        root = parse_xml(body, "its text")
    except ParseError as exc:
        raise ParseError(one_line(
            f"ictrp: the file is not a complete ICTRP export ({exc}); {WHAT_TO_DO}")) from None
    if root.tag != ROOT_TAG:
        raise ParseError(one_line(
            f"ictrp: the file is not a complete ICTRP export (its root element is "
            f"<{root.tag}>, not <{ROOT_TAG}>); {WHAT_TO_DO}"))
    return [(_text(el, "TrialID"), _serialise(el)) for el in root.iterchildren(TRIAL_TAG)]


def _trials_in(path: str | Path) -> Iterator[Any]:
    """The ``<Trial>`` elements of an export file, streamed (``sources.base.iter_xml_children``),
    with ``read_export``'s one-line errors."""
    try:
        yield from iter_xml_children(path, "its text", ROOT_TAG, TRIAL_TAG)
    except ParseError as exc:
        raise ParseError(one_line(
            f"ictrp: the file is not a complete ICTRP export ({exc}); {WHAT_TO_DO}")) from None


def _trial_of(element: Any, trial_id: str | None = None) -> RawTrial:
    """A trial's id (``trial_id`` if given, else its TrialID), key and refresh date, read
    from its element; its bytes are left empty for the caller."""
    trial_id = trial_id if trial_id is not None else _text(element, "TrialID")
    key = refreshed = None
    try:
        key = trial_key(trial_id, _one_line(_text(element, "Source_Register")))
        refreshed = _date(_text(element, "Last_Refreshed_on"))
    except ParseError:
        pass
    return RawTrial(trial_id, key, b"", refreshed)


@dataclass(slots=True)
class RawTrial:
    """One ``<Trial>`` of an export: its TrialID as written, its canonical (registry,
    registry id) when they can be read, and its bytes."""

    trial_id: str | None
    key: tuple[str, str] | None
    raw: bytes
    refreshed: dt.date | None = None


def _raw_trial(trial_id: str | None, raw: bytes) -> RawTrial:
    """The item of a trial's bytes, its TrialID as the export wrote it (``_trial_of``)."""
    try:
        element = parse_xml(raw, "ictrp: a trial record")
    except ParseError:
        return RawTrial(trial_id, None, raw)
    item = _trial_of(element, trial_id)
    item.raw = raw
    return item


def distinct_trials(items: Iterable[RawTrial]) -> tuple[list[RawTrial], list[str]]:
    """One item per registration: ICTRP lists a EUCTR trial once per member state
    (``EUCTR2021-000037-14-ES``, ``-PL``, ...), all one EudraCT number. The copy refreshed last
    is kept (the first in the file on a tie), in the place of the first copy; returns (kept,
    TrialIDs left out). Items whose id cannot be read are all kept (they are quarantined)."""
    best: dict[tuple[str, str], int] = {}
    kept: list[RawTrial | None] = []
    dropped: list[str] = []
    for item in items:
        if item.key is None:
            kept.append(item)
            continue
        at = best.get(item.key)
        if at is None:
            best[item.key] = len(kept)
            kept.append(item)
            continue
        old = kept[at]
        if old is not None and (item.refreshed or dt.date.min) > (old.refreshed or dt.date.min):
            kept[at] = item
            dropped.append(old.trial_id or "?")
        else:
            dropped.append(item.trial_id or "?")
    return [k for k in kept if k is not None], dropped


class ICTRP(BaseSource):
    """The WHO ICTRP export import (``ictrp``): a file import, never a fetch. Its records say
    their own registry (``registry`` here is only the source's)."""

    name = NAME
    kind = "study"
    registry = NAME
    capabilities = frozenset({FILE_IMPORT})
    page_size = PAGE_SIZE

    def __init__(self, settings: Any = None, page_size: int | None = None) -> None:
        self.settings = settings
        if page_size is not None:
            self.page_size = max(1, page_size)

    @classmethod
    def from_settings(cls, settings: Any) -> ICTRP:
        """An ICTRP import needs no settings (no URL, no query, no rate)."""
        return cls(settings)

    @staticmethod
    def parse_raw(raw: bytes) -> StudyRecord:
        return parse_trial(raw)

    def records_of_file(self, path: str | Path) -> Iterator[Page]:
        """The trials of the export at ``path`` as pages of ``page_size`` items for
        ``tracker.pipeline.ingest_page``: one item per registration (``distinct_trials``), the
        first page announcing their number as ``total`` and, in ``extra``, the trials in the
        file and the TrialIDs of copies left out. A file without trials gives one empty page.

        The file is read twice, as a stream: first every trial's id and refresh date (which
        copy of a registration to keep, and that the file is a complete export), then the
        kept trials, a page at a time. An export of any size takes the memory of one page.
        Raises ConfigError when the file cannot be read and ParseError when it is not a
        complete export, before any page is yielded; ParseError after some when the file
        changed between the two readings.
        """
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise ConfigError(f"ictrp: cannot read {str(path)!r}: {exc.strerror or exc}; give "
                              "the path of an ICTRP XML export") from None
        seen = [_trial_of(el) for el in _trials_in(path)]
        kept, dropped = distinct_trials(seen)
        order = {id(item): n for n, item in enumerate(seen)}
        keep = {order[id(item)] for item in kept}
        extra = {"trials": len(seen), "duplicates": dropped}
        if not kept:
            yield Page(items=[], total=0, extra=extra)
            return
        size, page, first, n = self.page_size, [], True, -1
        for n, el in enumerate(_trials_in(path)):
            if n not in keep:
                continue
            item = seen[n] if n < len(seen) else None
            if item is None or _text(el, "TrialID") != item.trial_id:
                raise ParseError(f"ictrp: {str(path)!r} changed while it was read; import it "
                                 "again")
            page.append(RawTrial(item.trial_id, item.key, _serialise(el), item.refreshed))
            if len(page) == size:
                yield Page(items=page, total=len(kept) if first else None,
                           extra=extra if first else {})
                page, first = [], False
        if n + 1 != len(seen):
            raise ParseError(f"ictrp: {str(path)!r} changed while it was read; import it again")
        if page:
            yield Page(items=page, total=len(kept) if first else None,
                       extra=extra if first else {})

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        """ICTRP cannot be fetched: ConfigError saying how to import an export instead."""
        raise ConfigError(self._no_api())

    def count(self, http: Any, window: Window) -> SourceCount:
        """ICTRP cannot be counted without an export: ConfigError, as ``fetch``."""
        raise ConfigError(self._no_api())

    @staticmethod
    def _no_api() -> str:
        return ("ictrp: the WHO ICTRP has no free API (its web service is licensed to partners), "
                "so it cannot be updated; export a search from https://trialsearch.who.int "
                "(\"Export results to XML\") and run `tracker import ictrp FILE.xml`")

    def parse(self, item: RawTrial) -> StudyRecord:
        """Normalise one trial of a page (see ``parse_trial``)."""
        return parse_trial(item.raw)

    def record_id(self, item: RawTrial) -> str | None:
        """The canonical registry id of a trial (what its record's ``registry_id`` will be)."""
        return item.key[1] if item.key else None

    def item_bytes(self, item: RawTrial) -> bytes:
        """The ``<Trial>`` element's bytes (stored as the record's raw and in the quarantine)."""
        return item.raw

    def item_from_bytes(self, raw: bytes) -> RawTrial:
        """Rebuild an item from stored or quarantined bytes."""
        trial_id = None
        try:
            trial_id = _text(parse_xml(raw, "ictrp: a trial record"), "TrialID")
        except ParseError:
            pass
        return _raw_trial(trial_id, raw)
