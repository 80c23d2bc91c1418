"""One trial, many registrations: group the stored registrations into trials.

Registrations join when they **declare each other** (never by title alone): a registration's
secondary ids (CT.gov ``secondaryIdInfos``, ISRCTN external refs, EudraCT numbers, CTIS
numbers of transitioned trials, ICTRP ``Secondary_ID``) name another stored registration's
id, or two rows carry the same registry id (an ICTRP copy of a CT.gov record). An editor's
decisions (``tracker merge A B``, ``tracker unmerge A``) are replayed on top, in the order they
were made, so they survive every update and re-import: an unmerge takes a registration out of
every link made before it; a later merge may join it again.

A trial's id is the lowest study id of its group (``trial_member.trial_id``); the evidence
row says what joined each registration. :func:`suggestions` lists likely duplicates that do
not declare each other (similar titles, the same sponsor, close start dates) with a score: a
suggestion is never merged by itself.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from db.models import Study, StudySecondaryId, TrialDecision, TrialMember
from tracker.errors import ConfigError, NotFoundError
from tracker.trial_ids import extract_trial_ids

S = Study.__table__
SEC = StudySecondaryId.__table__
MEMBER = TrialMember.__table__
DECISION = TrialDecision.__table__


def canonical(registry_id: str) -> str:
    """The key two registrations of one trial share: the canonical id trial_ids finds in the
    text (``EUCTR2015-000590-12-DE`` and ``2015-000590-12`` are one EudraCT number), else the
    id upper-cased."""
    found = extract_trial_ids(registry_id)
    return found[0].registry_id.upper() if found else registry_id.strip().upper()


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        lo, hi = sorted((ra, rb))
        self.parent[hi] = lo
        return True


@dataclass(frozen=True)
class _Edge:
    a: int
    b: int
    at: dt.datetime | None  # None: declared by the registries (older than any decision)
    evidence: str


def _label(registry: str, registry_id: str) -> str:
    return f"{registry}:{registry_id}"


def regroup(conn: Connection) -> int:
    """Recompute every registration's trial; returns the number of trials. Runs in the
    caller's transaction."""
    studies = conn.execute(select(S.c.id, S.c.registry, S.c.registry_id)).all()
    label = {sid: _label(reg, rid) for sid, reg, rid in studies}
    by_key: dict[str, list[int]] = defaultdict(list)
    by_reg: dict[tuple[str, str], int] = {}
    for sid, reg, rid in studies:
        by_key[canonical(rid)].append(sid)
        by_reg[(reg, rid.upper())] = sid
    edges: list[_Edge] = []
    for key, ids in by_key.items():
        for other in ids[1:]:
            edges.append(_Edge(ids[0], other, None, f"the same registry id {key}"))
    for sid, value in conn.execute(select(SEC.c.study_id, SEC.c.value)):
        for tid in extract_trial_ids(value) or ():
            for other in by_key.get(tid.registry_id.upper(), ()):
                if other != sid:
                    edges.append(_Edge(sid, other, None,
                                       f"{label[sid]} lists {tid.registry_id} as a secondary id"))
    unmerged: list[tuple[int, dt.datetime]] = []
    for kind, reg, rid, oreg, orid, at in conn.execute(select(
            DECISION.c.kind, DECISION.c.registry, DECISION.c.registry_id,
            DECISION.c.other_registry, DECISION.c.other_registry_id, DECISION.c.decided_at,
    ).order_by(DECISION.c.id)):
        a = by_reg.get((reg, rid.upper()))
        if a is None:
            continue  # the registration is not stored (yet): the decision waits for it
        if kind == "merge":
            b = by_reg.get((oreg or "", (orid or "").upper()))
            if b is not None and b != a:
                edges.append(_Edge(a, b, at, f"merged by an editor on {at:%Y-%m-%d}"))
        elif kind == "unmerge":
            unmerged.append((a, at))

    def cut(edge: _Edge) -> bool:
        """True when an unmerge made after the edge took one of its ends out."""
        return any(x in (edge.a, edge.b) and (edge.at is None or edge.at < at)
                   for x, at in unmerged)

    groups = _Groups()
    why: dict[int, str] = {}
    for edge in edges:
        if cut(edge) or not groups.union(edge.a, edge.b):
            continue
        why.setdefault(edge.a, edge.evidence)
        why.setdefault(edge.b, edge.evidence)
    rows = [{"study_id": sid, "trial_id": groups.find(sid), "evidence": why.get(sid)}
            for sid, _, _ in studies]
    conn.execute(delete(MEMBER))
    for i in range(0, len(rows), 1000):
        conn.execute(insert(MEMBER), rows[i:i + 1000])
    for sid, at in unmerged:
        if groups.find(sid) == sid and sid not in why:
            conn.execute(MEMBER.update().where(MEMBER.c.study_id == sid).values(
                evidence=f"taken out of its trial by an editor on {at:%Y-%m-%d}"))
    return len({r["trial_id"] for r in rows})


def find_registration(conn: Connection, ident: str) -> tuple[int, str, str]:
    """(study id, registry, registry id) for ``NCT01234567`` or ``registry:id``; raises
    NotFoundError, or ConfigError when the id is held by several registries."""
    reg, sep, rid = ident.strip().partition(":")
    if not sep:
        reg, rid = "", ident.strip()
    q = select(S.c.id, S.c.registry, S.c.registry_id)
    rows = conn.execute(q.where(S.c.registry_id == rid) if not reg
                        else q.where(S.c.registry_id == rid, S.c.registry == reg)).all()
    if not rows:
        key = canonical(rid)
        rows = [r for r in conn.execute(q) if canonical(r[2]) == key and (
            not reg or r[1] == reg)]
    if not rows:
        raise NotFoundError(f"no stored registration {ident!r}; give a registry id as "
                            "tracker studies shows it (NCT01234567, ISRCTN12345678, ...)")
    if len(rows) > 1:
        raise ConfigError(f"{ident!r} is held by {len(rows)} registrations ("
                          f"{', '.join(_label(r[1], r[2]) for r in rows)}); name one as "
                          "registry:id")
    return rows[0][0], rows[0][1], rows[0][2]


def merge(conn: Connection, a: str, b: str, note: str | None = None,
          now: dt.datetime | None = None) -> int:
    """Record that registrations ``a`` and ``b`` are one trial and regroup; returns the
    trial id."""
    sa_, rega, rida = find_registration(conn, a)
    sb, regb, ridb = find_registration(conn, b)
    if sa_ == sb:
        raise ConfigError(f"{a!r} and {b!r} are the same registration")
    conn.execute(insert(DECISION).values(
        kind="merge", registry=rega, registry_id=rida, other_registry=regb,
        other_registry_id=ridb, decided_at=now or dt.datetime.now(dt.UTC), note=note))
    regroup(conn)
    return trial_of(conn, sa_)


def unmerge(conn: Connection, a: str, note: str | None = None,
            now: dt.datetime | None = None) -> int:
    """Take registration ``a`` out of its trial (an editor's decision) and regroup."""
    sid, reg, rid = find_registration(conn, a)
    conn.execute(insert(DECISION).values(
        kind="unmerge", registry=reg, registry_id=rid, decided_at=now or dt.datetime.now(dt.UTC),
        note=note))
    regroup(conn)
    return trial_of(conn, sid)


def trial_of(conn: Connection, study_id: int) -> int:
    row = conn.execute(select(MEMBER.c.trial_id).where(MEMBER.c.study_id == study_id)).first()
    return row[0] if row else study_id


def registrations(conn: Connection, study_id: int) -> list[dict[str, object]]:
    """Every registration of ``study_id``'s trial: registry, id, title, status, the evidence
    that joined it."""
    trial = trial_of(conn, study_id)
    rows = conn.execute(select(S.c.id, S.c.registry, S.c.registry_id, S.c.title, S.c.status,
                               MEMBER.c.evidence)
                        .join(MEMBER, MEMBER.c.study_id == S.c.id)
                        .where(MEMBER.c.trial_id == trial).order_by(S.c.id)).mappings().all()
    return [{"registry": r["registry"], "registry_id": r["registry_id"], "title": r["title"],
             "status": r["status"], "joined_by": r["evidence"] or "(the trial's first)"}
            for r in rows] or []


# ---------------------------------------------------------------- suggested duplicates -----

_WORD = re.compile(r"[a-z0-9]{4,}")
_STOP = frozenset(["study", "trial", "phase", "patients", "with", "treatment", "randomized", "randomised", "clinical", "safety", "efficacy", "evaluate", "evaluation", "controlled", "multicenter", "open", "label", "double", "blind", "placebo", "versus", "after", "using", "compared", "comparing"])


def _tokens(title: str | None) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall((title or "").lower()) if w not in _STOP)


@dataclass(frozen=True)
class Suggestion:
    a: str
    b: str
    score: float
    why: str


def suggestions(conn: Connection, min_score: float = 0.6, limit: int = 200
                ) -> list[Suggestion]:
    """Pairs of registrations in different trials that look like one trial: title word
    overlap (Jaccard), the same sponsor, start dates within 90 days. Scored 0-1."""
    rows = conn.execute(select(S.c.id, S.c.registry, S.c.registry_id, S.c.title,
                               S.c.official_title, S.c.sponsor, S.c.start_date,
                               MEMBER.c.trial_id).outerjoin(
        MEMBER, MEMBER.c.study_id == S.c.id)).all()
    toks = {r[0]: _tokens(f"{r[3]} {r[4] or ''}") for r in rows}
    info = {r[0]: r for r in rows}
    index: dict[str, list[int]] = defaultdict(list)
    for sid, words in toks.items():
        for w in words:
            index[w].append(sid)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for ids in index.values():
        if len(ids) > 50:  # a word half the corpus uses says nothing
            continue
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                shared[(a, b)] += 1
    out = []
    for (a, b), n in shared.items():
        ra, rb = info[a], info[b]
        if n < 3 or (ra[7] or a) == (rb[7] or b):
            continue
        jaccard = n / len(toks[a] | toks[b])
        same_sponsor = bool(ra[5] and rb[5] and _sponsor(ra[5]) == _sponsor(rb[5]))
        close = _close_dates(ra[6], rb[6])
        score = round(0.6 * jaccard + 0.25 * same_sponsor + 0.15 * close, 3)
        if score < min_score:
            continue
        why = [f"titles share {jaccard:.0%} of their words"]
        if same_sponsor:
            why.append("the same sponsor")
        if close:
            why.append("start dates within 90 days")
        out.append(Suggestion(_label(ra[1], ra[2]), _label(rb[1], rb[2]), score,
                              ", ".join(why)))
    out.sort(key=lambda s: (-s.score, s.a, s.b))
    return out[:limit]


def _sponsor(name: str) -> str:
    return " ".join(_WORD.findall(name.lower()))


def _close_dates(a: str | None, b: str | None) -> bool:
    try:
        da, db_ = (dt.date.fromisoformat((x + "-01-01")[:10] if len(x) == 4 else
                                         (x + "-01")[:10] if len(x) == 7 else x[:10])
                   for x in (a or "", b or ""))
    except ValueError:
        return False
    return abs((da - db_).days) <= 90


def trial_counts(conn: Connection, study_ids: Iterable[int]) -> int:
    """How many trials the registrations ``study_ids`` are (reports count trials)."""
    ids = list(study_ids)
    if not ids:
        return 0
    seen: set[int] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        found = dict(conn.execute(select(MEMBER.c.study_id, MEMBER.c.trial_id).where(
            MEMBER.c.study_id.in_(chunk))).all())
        seen.update(found.get(s, s) for s in chunk)
    return len(seen)
