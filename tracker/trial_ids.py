"""Find clinical-trial registry ids in free text and normalise declared accessions.

``extract_trial_ids`` scans titles, abstracts and registry cross-references for the id formats
of ClinicalTrials.gov and the WHO ICTRP primary registries, and returns each id once, in its
canonical form, in order of first appearance. ``normalize_accession`` does the same for one
PubMed ``DataBankList`` entry, where the bank name says which registry is meant.

Canonical forms keep each registry's own spelling: upper-case prefixes (``NCT01234567``,
``ISRCTN12345678``, ``DRKS00012345``), but ``ChiCTR``, ``jRCT``/``JapicCTI`` and ReBec's
``RBR-`` suffix keep the registry's mixed case because the registries print them that way.
ICTRP's wrapper prefixes (``EUCTR``…``-ES``, ``CTIS``, ``JPRN-``) are dropped so that every
source yields the same key.

Precision over recall: an id that needs surrounding context to be believed (a bare Dutch
``NL1234``, an unprefixed 8-digit number) is not reported from free text.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = ["REGISTRIES", "TrialId", "extract_trial_ids", "normalize_accession"]


@dataclass(frozen=True, slots=True)
class TrialId:
    """One registry id: ``registry`` slug, canonical ``registry_id``, and the text it came from."""

    registry: str
    registry_id: str
    matched: str


# slug -> human name (the registry slugs the rest of the project uses)
REGISTRIES: dict[str, str] = {
    "ctgov": "ClinicalTrials.gov",
    "isrctn": "ISRCTN registry",
    "euctr": "EU Clinical Trials Register (EudraCT)",
    "ctis": "EU Clinical Trials Information System",
    "chictr": "Chinese Clinical Trial Registry",
    "anzctr": "Australian New Zealand Clinical Trials Registry",
    "jprn": "Japan Primary Registries Network (jRCT, UMIN-CTR, JapicCTI, JMACCT)",
    "drks": "German Clinical Trials Register",
    "ctri": "Clinical Trials Registry - India",
    "irct": "Iranian Registry of Clinical Trials",
    "cris": "Clinical Research Information Service (Korea)",
    "ntr": "Netherlands Trial Register / Overview of Medical Research in the Netherlands",
    "pactr": "Pan African Clinical Trials Registry",
    "slctr": "Sri Lanka Clinical Trials Registry",
    "tctr": "Thai Clinical Trials Registry",
    "rpcec": "Cuban Public Registry of Clinical Trials",
    "lbctr": "Lebanese Clinical Trials Registry",
    "rebec": "Brazilian Clinical Trials Registry",
    "itmctr": "International Traditional Medicine Clinical Trial Registry",
    "repec": "Peruvian Clinical Trials Registry",
}

_EUDRACT_YEARS = range(2004, 2024)  # EudraCT numbers were issued 2004-2023; CTIS took over
_CTIS_FIRST_YEAR = 2022  # CTIS went live on 31 January 2022

# "NCT 01234567", "NCT-01234567", "NCT: 01234567" are all seen in abstracts.
_SEP = r"[\s:#-]{0,2}"
# Not glued to a preceding letter/digit ("XNCT..." / "12NCT..." are not ids).
_LB = r"(?<![A-Za-z0-9])"
# Not followed by another digit: NCT + 9 digits is not an NCT id with a trailing digit.
_ND = r"(?!\d)"

# One alternation, scanned once: order matters where formats overlap (CTIS before EudraCT).
_PATTERNS: list[tuple[str, str]] = [
    ("ctgov", _LB + r"NCT" + _SEP + r"(?P<ctgov>\d{8})" + _ND),
    ("isrctn", _LB + r"ISRCTN" + _SEP + r"(?P<isrctn>\d{8})" + _ND),
    # CTIS: YYYY-5NNNNN-NN-NN; ICTRP writes "CTIS2023-507385-11-00"
    ("ctis", r"(?<![0-9-])(?:(?<=CTIS)|(?<![A-Za-z]))"
             r"(?P<ctis>(?P<ctis_y>20\d{2})-5\d{5}-\d{2}-\d{2})" + _ND),
    # EudraCT: YYYY-NNNNNN-NN; ICTRP writes "EUCTR2021-000037-14-ES" (country suffix)
    ("euctr", (r"(?<![0-9-])(?:(?<=EUCTR)|(?<=EudraCT)|(?<![A-Za-z]))"
              r"(?P<euctr>(?P<euctr_y>(?:19|20)\d{2})-\d{6}-\d{2})(?!\d|-\d)")),
    ("chictr", _LB + r"ChiCTR(?:-?(?P<chictr_t>[A-Za-z]{2,5})-?(?P<chictr_o>\d{8})"
                     r"|(?P<chictr_n>\d{10}))" + _ND),
    ("anzctr", _LB + r"ACTRN" + _SEP + r"(?P<anzctr>\d{14})" + _ND),
    ("jrct", r"(?<![A-Za-z0-9])(?:JPRN-)?jRCT(?P<jrct_k>[a-z]?)(?P<jrct>\d{9,10})" + _ND),
    ("umin", r"(?<![A-Za-z0-9])(?:JPRN-)?UMIN" + _SEP + r"(?P<umin>\d{9})" + _ND),
    ("japic", r"(?<![A-Za-z0-9])(?:JPRN-)?JapicCTI-?(?P<japic>\d{6})" + _ND),
    ("jma", r"(?<![A-Za-z0-9])(?:JPRN-)?JMA-?(?P<jma>II[AB]\d{5})" + _ND),
    ("drks", _LB + r"DRKS" + _SEP + r"(?P<drks>\d{8})" + _ND),
    ("ctri", _LB + r"CTRI\s*/\s*(?P<ctri_y>\d{4})\s*/\s*(?P<ctri_m>\d{2,3})\s*/\s*(?P<ctri_n>\d{6})"
             + _ND),
    ("irct", _LB + r"IRCT" + _SEP + r"(?P<irct>\d{6,20}N\d{1,3})" + _ND),
    ("cris", _LB + r"KCT" + _SEP + r"(?P<cris>\d{7})" + _ND),
    ("ntr", _LB + r"(?:NTR" + _SEP + r"(?P<ntr>\d{3,5})|NL-OMON(?P<omon>\d{1,7}))" + _ND),
    ("pactr", _LB + r"PACTR" + _SEP + r"(?P<pactr>\d{15})" + _ND),
    ("slctr", _LB + r"SLCTR\s*/\s*(?P<slctr_y>\d{4})\s*/\s*(?P<slctr_n>\d{3})" + _ND),
    ("tctr", _LB + r"TCTR" + _SEP + r"(?P<tctr>\d{11})" + _ND),
    ("rpcec", _LB + r"RPCEC" + _SEP + r"(?P<rpcec>\d{8})" + _ND),
    ("lbctr", _LB + r"LBCTR" + _SEP + r"(?P<lbctr>\d{10})" + _ND),
    ("rebec", _LB + r"RBR-(?P<rebec>[0-9A-Za-z]{6,8})(?![0-9A-Za-z])"),
    ("itmctr", _LB + r"ITMCTR" + _SEP + r"(?P<itmctr>\d{10,13})" + _ND),
    # Peru (REPEC): "PER-012-19"; case-sensitive below, "per-" in prose is common
    ("repec", _LB + r"(?-i:PER)-(?P<repec>\d{3}-\d{2})" + _ND),
]
_SCANNER = re.compile(
    "|".join(f"(?P<_{name}>{pattern})" for name, pattern in _PATTERNS), re.IGNORECASE
)


# Nearly every id holds a run of six or more digits; the few that may not (NTR, NL-OMON, JMA,
# SLCTR, REPEC, ReBec) start with a fixed upper-case prefix, as registries write them. Most
# abstracts name no trial, and these checks cost microseconds where the full scanner
# (look-behinds at every position of a 25-way alternation) costs a millisecond, so the full
# scanner runs only in windows around what they find.
_DIGITS = re.compile(r"[0-9]{6}")
_SHORT_PREFIXES = ("NTR", "NL-OMON", "JMA-", "SLCTR", "PER-", "RBR-")
_SHORT = re.compile(r"NTR[\s:#-]{0,2}[0-9]|NL-OMON|JMA-|SLCTR|PER-[0-9]|RBR-")
_REACH = 32  # characters an id may extend before and after its anchor


# Digits -> "0", everything else -> " ": on the UTF-8 bytes, ``b"000000" in ...`` then tells at
# memory speed whether any six-digit run exists (the regex scan costs ~10 ns a character).
_DIGIT_MASK = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))


def _has_digit_run(text: str) -> bool:
    # UTF-8 holds ASCII digits as themselves and every other character as bytes >= 128.
    return b"000000" in text.encode("utf-8", "surrogatepass").translate(_DIGIT_MASK)


def _windows(text: str) -> list[tuple[int, int]]:
    anchors = [m.span() for m in _DIGITS.finditer(text)] if _has_digit_run(text) else []
    if any(p in text for p in _SHORT_PREFIXES):
        anchors = sorted(anchors + [m.span() for m in _SHORT.finditer(text)])
    spans: list[tuple[int, int]] = []
    for start, end in anchors:
        a, b = max(0, start - _REACH), min(len(text), end + _REACH)
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return spans


def _canonical(m: re.Match[str]) -> TrialId | None:
    """The TrialId for one scanner match, or None when a plausibility check rejects it."""
    kind = m.lastgroup
    g = m.group
    matched = m.group(0)
    if kind == "_ctgov":
        return TrialId("ctgov", "NCT" + g("ctgov"), matched)
    if kind == "_isrctn":
        return TrialId("isrctn", "ISRCTN" + g("isrctn"), matched)
    if kind == "_ctis":
        if not _CTIS_FIRST_YEAR <= int(g("ctis_y")) <= dt.date.today().year + 1:
            return None
        return TrialId("ctis", g("ctis"), matched)
    if kind == "_euctr":
        if int(g("euctr_y")) not in _EUDRACT_YEARS:
            return None
        return TrialId("euctr", g("euctr"), matched)
    if kind == "_chictr":
        if g("chictr_n"):
            return TrialId("chictr", "ChiCTR" + g("chictr_n"), matched)
        return TrialId("chictr", f"ChiCTR-{g('chictr_t').upper()}-{g('chictr_o')}", matched)
    if kind == "_anzctr":
        return TrialId("anzctr", "ACTRN" + g("anzctr"), matched)
    if kind == "_jrct":
        return TrialId("jprn", f"jRCT{g('jrct_k').lower()}{g('jrct')}", matched)
    if kind == "_umin":
        return TrialId("jprn", "UMIN" + g("umin"), matched)
    if kind == "_japic":
        return TrialId("jprn", "JapicCTI-" + g("japic"), matched)
    if kind == "_jma":
        return TrialId("jprn", "JMA-" + g("jma").upper(), matched)
    if kind == "_drks":
        return TrialId("drks", "DRKS" + g("drks"), matched)
    if kind == "_ctri":
        return TrialId("ctri", f"CTRI/{g('ctri_y')}/{g('ctri_m')}/{g('ctri_n')}", matched)
    if kind == "_irct":
        return TrialId("irct", "IRCT" + g("irct").upper(), matched)
    if kind == "_cris":
        return TrialId("cris", "KCT" + g("cris"), matched)
    if kind == "_ntr":
        if g("omon"):
            return TrialId("ntr", "NL-OMON" + g("omon"), matched)
        return TrialId("ntr", "NTR" + g("ntr"), matched)
    if kind == "_pactr":
        return TrialId("pactr", "PACTR" + g("pactr"), matched)
    if kind == "_slctr":
        return TrialId("slctr", f"SLCTR/{g('slctr_y')}/{g('slctr_n')}", matched)
    if kind == "_tctr":
        return TrialId("tctr", "TCTR" + g("tctr"), matched)
    if kind == "_rpcec":
        return TrialId("rpcec", "RPCEC" + g("rpcec"), matched)
    if kind == "_lbctr":
        return TrialId("lbctr", "LBCTR" + g("lbctr"), matched)
    if kind == "_rebec":
        return TrialId("rebec", "RBR-" + g("rebec").lower(), matched)
    if kind == "_itmctr":
        return TrialId("itmctr", "ITMCTR" + g("itmctr"), matched)
    if kind == "_repec":
        return TrialId("repec", "PER-" + g("repec"), matched)
    return None  # pragma: no cover - every alternative is handled above


def extract_trial_ids(text: str | None) -> list[TrialId]:
    """Every trial registry id in ``text``: canonical, de-duplicated, in order of first appearance.

    >>> [t.registry_id for t in extract_trial_ids("Registered as NCT 01234567 and ISRCTN12345678.")]
    ['NCT01234567', 'ISRCTN12345678']

    Never raises; ``None`` or empty text gives an empty list.
    """
    if not text:
        return []
    seen: set[tuple[str, str]] = set()
    out: list[TrialId] = []
    # finditer(text, a, b) keeps the whole string visible to look-behinds at ``a``.
    matches = (m for a, b in _windows(text) for m in _SCANNER.finditer(text, a, b))
    for m in matches:
        tid = _canonical(m)
        if tid is None:
            continue
        key = (tid.registry, tid.registry_id)
        if key not in seen:
            seen.add(key)
            out.append(tid)
    return out


# PubMed DataBankName values (lower-cased, punctuation-insensitive) -> registry slug.
_BANKS: dict[str, str] = {
    "clinicaltrialsgov": "ctgov",
    "isrctn": "isrctn",
    "eudract": "euctr",
    "euctr": "euctr",
    "euclinicaltrialsregister": "euctr",
    "ctis": "ctis",
    "euct": "ctis",
    "chictr": "chictr",
    "anzctr": "anzctr",
    "actrn": "anzctr",
    "jprn": "jprn",
    "jrct": "jprn",
    "umin": "jprn",
    "uminctr": "jprn",
    "japiccti": "jprn",
    "drks": "drks",
    "ctri": "ctri",
    "irct": "irct",
    "cris": "cris",
    "kct": "cris",
    "ntr": "ntr",
    "dutchtrialregister": "ntr",
    "netherlandstrialregister": "ntr",
    "pactr": "pactr",
    "slctr": "slctr",
    "tctr": "tctr",
    "rpcec": "rpcec",
    "lbctr": "lbctr",
    "rebec": "rebec",
    "itmctr": "itmctr",
    "repec": "repec",
}


def normalize_accession(bank: str, accession: str) -> TrialId | None:
    """One PubMed ``DataBank`` entry as a TrialId, or None when the bank is not a trial registry.

    The id's own format decides the registry when it is recognisable (an "EudraCT" bank holding
    a CTIS number yields ``ctis``); otherwise a registry bank's accession is kept with its
    whitespace removed, since NLM curated it. GenBank, GEO, PDB, Dryad and the like give None.
    """
    registry = _BANKS.get(re.sub(r"[^a-z]", "", bank.lower()))
    if registry is None or not accession or not accession.strip():
        return None
    found = extract_trial_ids(accession)
    if found:
        return found[0]
    if registry == "ntr":
        m = re.fullmatch(r"\s*(NL)\s*-?\s*(\d{1,6})\s*", accession, re.IGNORECASE)
        if m:  # the old Dutch register's bare "NL1234" form, trusted because the bank says so
            return TrialId("ntr", "NL" + m.group(2), accession)
    if registry == "euctr":
        return None  # a EudraCT bank entry that fails the year/shape check is a typo, not an id
    compact = "".join(accession.split())
    return TrialId(registry, compact, accession)
