"""The matching engine under the classifier: text normalisation and compiled term sets.

A rules file's terms become one trie-shaped regular expression per label family
(:class:`LabelSet`), scanned over normalised text (:class:`Field`): lower case, punctuation as
spaces, sentence ends as "|" so that no term or negation reaches across a sentence. A scan
costs about one character-class test per word whatever the number of terms.
``tracker.classify`` (labels) and ``tracker.role`` (how MSCs figure) both read records through
it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from db.records import Mesh
from tracker.errors import ConfigError


class RulesError(ConfigError):
    """The rules file is missing, unreadable or malformed."""



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


# Text that is not pure ASCII ("≥ 18 years", "Cartistem®") goes through the same bytes
# table as UTF-8 (multi-byte sequences are all bytes >= 128, which the table keeps), then the
# few non-ASCII punctuation marks are replaced where they occur: str.translate with a dict
# costs ~35 ns a character on such text, a whole record's protocol ~150 us.
_WIDE = {c: v for c, v in ((chr(k), v) for k, v in _TEXT_TABLE.items()) if ord(c) > 127}
_WIDE_RX = re.compile("[" + re.escape("".join(_WIDE)) + "]")


def _wide(m: re.Match[str]) -> str:
    return _WIDE[m.group(0)] or ""


def norm_words(text: str) -> list[str]:
    """The normalised words of a text ("|" marks a sentence end)."""
    low = text.lower()
    if low.isascii():
        low = low.encode().translate(_ASCII_TABLE, _ASCII_DELETE).decode()
    else:
        low = low.encode().translate(_ASCII_TABLE, _ASCII_DELETE).decode()
        low = _WIDE_RX.sub(_wide, low)
    return low.replace("|", " | ").split()


def norm_text(text: str) -> str:
    return " " + " ".join(norm_words(text)) + " "


def norm_term(term: str) -> str:
    return " ".join(term.lower().translate(_TERM_TABLE).split())


@functools.lru_cache(maxsize=65536)
def norm_mesh_id(mesh_id: str | None) -> str | None:
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
PLURAL = r"(?:e?s)?"


def trie_pattern(terms: Iterable[str]) -> str:
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


def compile_terms(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    return re.compile(r"\b" + trie_pattern(terms) + PLURAL + r"\b")


def compile_exact(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alts = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(r"(?<![\w])(?:" + alts + r")(?![\w])")


@dataclass(slots=True)
class Hit:
    label: str
    matched: str
    start: int
    end: int


class LabelSet:
    """Compiled matcher for one label family (e.g. all condition groups)."""

    __slots__ = (
        "always_scan",
        "anchors",
        "exact",
        "exact_literals",
        "exact_map",
        "exact_probe",
        "excl_mesh",
        "exclude",
        "full",
        "gates",
        "labels",
        "mesh",
        "needs",
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
            terms = [norm_term(t) for t in str_list(spec, "terms", ctx)]
            terms = [t for t in terms if t]
            patterns = str_list(spec, "patterns", ctx)
            pat_src = []
            if terms:
                pat_src.append(trie_pattern(terms) + PLURAL)
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise RulesError(f"{ctx}: bad pattern {p!r}: {exc}") from None
                pat_src.append("(?:" + p + ")")
            if pat_src:
                self.full[label] = re.compile("(?:" + "|".join(pat_src) + ")")
                all_terms.extend(terms)
            for t in str_list(spec, "exact_case", ctx):
                exact_terms.append(t)
                self.exact_map.setdefault(t, []).append(label)
            excl = [norm_term(t) for t in str_list(spec, "exclude", ctx)]
            if excl:
                # An exclusion phrase may straddle a list separator ("Uterus; Scar").
                body = trie_pattern(excl).replace("\\ ", "(?: \\|)? ")
                self.exclude[label] = re.compile(r"\b" + body + PLURAL + r"\b")
            for mid in str_list(spec, "mesh_ids", ctx):
                self.mesh.setdefault(norm_mesh_id(mid) or mid, []).append(label)
            for tree in str_list(spec, "mesh_trees", ctx):
                self.trees.append((tree, label))
            ex_ids = str_list(spec, "exclude_mesh_ids", ctx)
            if ex_ids:
                self.excl_mesh[label] = frozenset(norm_mesh_id(x) or x for x in ex_ids)
        # A term can only match where each of its words stands as a word of the text (its
        # last word possibly plural, a wildcard word as a prefix). Each term is gated on its
        # longest plain word, the rarest in practice ("cure" of "c cure", "asc" of "allo
        # asc"): a field holding none of the gate words is skipped without running the
        # scanner. Custom patterns, and terms whose every word is a wildcard, cannot be ruled
        # out this way.
        self.needs: dict[str, set[frozenset[str]]] = {}  # gate word -> other words required
        wild_prefixes: list[str] = []
        # Patterns are opaque, but a set whose every pattern-bearing spec lists
        # ``pattern_anchors`` (literals each of its patterns needs) is scanned only where one
        # of them occurs.
        anchored = [spec for spec in specs.values() if spec.get("patterns")]
        self.always_scan = any(not spec.get("pattern_anchors") for spec in anchored)
        self.anchors = tuple(a.lower() for spec in anchored
                             for a in spec.get("pattern_anchors") or ())
        for term in all_terms:
            words = term.split(" ")
            plain = [(w not in _COMMON and not w.isdigit(), len(w), i)
                     for i, w in enumerate(words) if "*" not in w]
            if not plain:
                prefix = words[0].split("*", 1)[0]
                if prefix:
                    wild_prefixes.append(prefix)
                else:
                    self.always_scan = True
                continue
            *_, i = max(plain)
            gate = words[i]
            # The term's other plain words (not its last, which may be plural): all must be
            # words of the text too ("met inhibitor" needs "met" beside "inhibitor").
            needs = frozenset(w for j, w in enumerate(words[:-1]) if j != i and "*" not in w)
            keys = (gate, gate + "s", gate + "es") if i == len(words) - 1 else (gate,)
            for key in keys:
                self.needs.setdefault(key, set()).add(needs)
        self.gates = frozenset(self.needs)  # the gate words, for one C-level intersection
        self.wild = (re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(set(wild_prefixes))))
                                + ")") if wild_prefixes else None)
        scan_parts = []
        if all_terms:
            scan_parts.append(trie_pattern(all_terms) + PLURAL)
        for label, spec in specs.items():
            for p in spec.get("patterns", []) or []:
                scan_parts.append("(?:" + p + ")")
        self.scan = re.compile(r"\b(?:" + "|".join(scan_parts) + r")\b") if scan_parts else None
        self.exact = compile_exact(exact_terms)
        # The exact-case regex starts with a look-behind, which defeats the regex engine's
        # literal search (20 us on an abstract); a substring test for the shortest literals
        # every term contains rules most texts out first.
        self.exact_literals = tuple(sorted(
            t for t in set(exact_terms) if not any(u != t and u in t for u in exact_terms)))
        # One C-level search for any of them (a Python loop over dozens of literals cost more
        # than the scan itself once the product dictionary's codes joined the set).
        self.exact_probe = (re.compile("|".join(map(re.escape, self.exact_literals)))
                            if self.exact_literals else None)

    def may_match(self, words: frozenset[str], norm: str) -> bool:
        """False when no term of this set can occur in a text with these words."""
        return self.always_scan or words_may_match(
            self.gates, self.needs, self.anchors, () if self.wild is None else (self.wild,),
            words, norm)

    def find(self, norm: str, raw: str | None = None,
             words: frozenset[str] | None = None) -> list[Hit]:
        """All label hits in a normalised text (and exact-case hits in ``raw``)."""
        hits: list[Hit] = []
        if (self.scan is not None and len(norm) > 2
                and (words is None or self.may_match(words, norm))):
            for m in self.scan.finditer(norm):
                matched = m.group(0)
                s, e = m.span()
                for label, rx in self.full.items():
                    if rx.fullmatch(matched) and not self._excluded(label, norm, s, e):
                        hits.append(Hit(label, matched, s, e))
        if self.exact is not None and raw and self.exact_probe is not None and \
                self.exact_probe.search(raw) is not None:
            for m in self.exact.finditer(raw):
                for label in self.exact_map.get(m.group(0), ()):
                    hits.append(Hit(label, m.group(0), -1, -1))
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
            mid = norm_mesh_id(m.mesh_id)
            labels = self.mesh.get(mid, []) if mid else []
            for label in labels:
                if m.ancestor:
                    if own is None:
                        own = {norm_mesh_id(x.mesh_id) for x in mesh if not x.ancestor}
                    if own & self.excl_mesh.get(label, frozenset()):
                        continue
                out.append((label, m))
        return out


class Probe:
    """Can any term of these sets occur in a text? One normalisation and one set test for a
    whole record, instead of a scan per field: each set's gate words (``LabelSet.may_match``)
    pooled, with their anchors, wildcard prefixes and exact-case literals. ``False`` is
    certain (a term that matches in a field of the text passes here); ``True`` means read on.
    """

    __slots__ = ("always", "anchors", "exact", "gates", "needs", "wild")

    def __init__(self, sets: Iterable[LabelSet]) -> None:
        sets = [ls for ls in sets if ls.scan is not None or ls.exact_probe is not None]
        self.always = any(ls.scan is not None and ls.always_scan for ls in sets)
        self.needs: dict[str, set[frozenset[str]]] = {}
        for ls in sets:
            if ls.scan is not None:
                for gate, needs in ls.needs.items():
                    self.needs.setdefault(gate, set()).update(needs)
        self.gates = frozenset(self.needs)
        self.anchors = tuple(a for ls in sets if ls.scan is not None for a in ls.anchors)
        self.wild = [ls.wild for ls in sets if ls.scan is not None and ls.wild is not None]
        self.exact = [ls.exact_probe for ls in sets if ls.exact_probe is not None]

    def may_match(self, raw: str) -> bool:
        if self.always or any(rx.search(raw) is not None for rx in self.exact):
            return True
        words = norm_words(raw)
        # Most records hold no gate word: their words need no set, and without anchors or
        # wildcards no joined text either.
        gated = not self.gates.isdisjoint(words)
        if not (gated or self.anchors or self.wild):
            return False
        return words_may_match(self.gates, self.needs, self.anchors, self.wild,
                               frozenset(words) if gated else frozenset(),
                               " " + " ".join(words) + " ")


def words_may_match(gates: frozenset[str], needs: dict[str, set[frozenset[str]]],
                    anchors: tuple[str, ...], wild: Iterable[re.Pattern[str]],
                    words: frozenset[str], norm: str) -> bool:
    """The word test of a term set (``LabelSet``) or of several pooled (``Probe``): a gate
    word of the text with the other words its term needs, an anchor of a pattern, or a
    wildcard prefix."""
    for gate in gates.intersection(words):
        if any(need <= words for need in needs[gate]):
            return True
    return any(a in norm for a in anchors) or any(rx.search(norm) is not None for rx in wild)


_ELIG = re.compile(r"(?i)\b(?:inclusion|exclusion|eligibility)\s+criteria\b")


def strip_eligibility(text: str | None) -> str | None:
    """A summary up to its embedded eligibility section ("Inclusion criteria: ..."), which
    never says what a study is about. The heading needs the word "criteria": a substring test
    rules most texts out before the (slow, case-blind) heading search."""
    if not text or "criteria" not in text.lower():
        return text
    m = _ELIG.search(text)
    return text[: m.start()] if m else text


def str_list(spec: dict[str, Any], key: str, ctx: str) -> list[str]:
    value = spec.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{ctx}.{key} must be a list of strings")
    return value



def negated_before(negation: re.Pattern[str], f: Field, hit: Hit) -> bool:
    """A negation cue closely before ``hit`` in the same sentence of ``f`` ("no history
    of", "without"): the classifier's and the role reader's one test."""
    if hit.start < 0:
        return False
    window = f.norm[max(0, hit.start - 80): hit.start]
    bar = window.rfind("|")
    if bar >= 0:
        window = window[bar + 1:]
    return negation.search(window) is not None


# Words too common in records to gate a term on (a term holding a rarer one is gated on that):
# "derived" of "bone marrow derived stem cell", "cells" of "multipotent stromal cells", ...
_COMMON = frozenset({
    "cell", "cells", "stem", "derived", "bone", "marrow", "human", "tissue", "factor",
    "factors", "health", "concentration", "therapy", "treatment", "product", "molecules",
    "from", "with", "and", "of", "the", "for", "in", "medium", "media", "blood", "culture",
    "patients", "study", "injection", "infusion", "transplantation", "stromal", "adult",
})


# --------------------------------------------------------------------------------------------
# Record -> fields
# --------------------------------------------------------------------------------------------
class Field:
    """One text field of a record, normalised lazily (free-text fields may never be needed)."""

    __slots__ = ("_norm", "_words", "free", "name", "raw")

    def __init__(self, name: str, raw: str, free: bool) -> None:
        self.name = name
        self.raw = raw
        self._norm: str | None = None
        self._words: frozenset[str] | None = None
        self.free = free  # free text: negation applies

    def _normalise(self) -> None:
        words = norm_words(self.raw)
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


