"""Full-text queries: what users type for ``--query``, read once and asked of either engine.

The language, as people type it into search boxes:

* words: every one must match (``knee cartilage``); ``AND`` between them says the same;
* ``"a phrase"``: the words next to each other, in this order;
* ``OR`` between alternatives: ``knee OR hip``;
* ``NOT`` (or ``-``) before a word, phrase or group leaves out what matches it:
  ``osteoarthritis NOT dog``;
* ``chondro*``: words starting with ``chondro``;
* ``( )`` to group: ``"wharton jelly" (knee OR hip)``.

Operators are upper case (``or`` is a word). Precedence: NOT, then AND, then OR. Words are
tokenised as the index is (``db.search.tokens``: ``MSC-derived`` is the phrase "msc derived",
``Wharton's`` is "wharton s"). ``parse_query`` reads the text into a tree; ``fts5`` and
``tsquery`` write it for SQLite FTS5 ``MATCH`` and PostgreSQL ``tsquery`` (both bound as
parameters, never pasted into SQL); ``matches`` is the (id, score) subquery of either engine:
``bm25`` on SQLite (negated, so higher is better), ``ts_rank`` on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, text
from sqlalchemy.engine import Connection

from db.search import MAX_TOKEN, TABLES, tokens
from tracker.errors import ConfigError

HOW = ('write words that must all match, "a phrase" in double quotes, OR between '
       'alternatives, NOT before what to leave out, chondro* for words starting so, ( ) to '
       'group; e.g. --query \'"wharton jelly" (knee OR hip) NOT dog\'')
MAX_QUERY = 1000  # characters
MAX_WORD = 200


class UsageError(ConfigError):
    """A command-line value that cannot be used as given: one line, exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class Term:
    """A word (one token), a phrase (several), ``prefix``: the last token starts a word."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class Not:
    child: Any


@dataclass(frozen=True)
class And:
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    """A parsed ``--query``: its text as given and its tree."""

    text: str
    tree: Any

    def fts5(self) -> str:
        """The SQLite FTS5 MATCH expression."""
        return _fts5(self.tree)

    def tsquery(self) -> str:
        """The PostgreSQL tsquery (input syntax; lexemes as the index holds them)."""
        return _tsquery(self.tree)


def _error(value: str, problem: str) -> UsageError:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return UsageError(f"--query {shown!r}: {problem}; {HOW}")


def _lex(value: str) -> list[tuple[str, Any]]:
    """(kind, value) tokens: word, phrase, ( ) AND OR NOT."""
    out: list[tuple[str, Any]] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            out.append((ch, ch))
            i += 1
        elif ch == '"':
            end = value.find('"', i + 1)
            if end < 0:
                raise _error(value, "a double quote is not closed (quote a phrase at both "
                                    "ends)")
            prefix = end + 1 < n and value[end + 1] == "*"
            out.append(("phrase", (value[i + 1 : end], prefix)))
            i = end + 1 + prefix
        elif ch == "-" and i + 1 < n and not value[i + 1].isspace() and value[i + 1] != "-":
            out.append(("NOT", "-"))
            i += 1
        else:
            j = i
            while j < n and not value[j].isspace() and value[j] not in '()"':
                j += 1
            word = value[i:j]
            out.append((word, word) if word in ("AND", "OR", "NOT") else ("word", word))
            i = j
    return out


def _term(value: str, words: str, prefix: bool) -> Term | None:
    toks = tokens(words)
    for tok in toks:
        if len(tok) > MAX_WORD:
            raise _error(value, f"a word of {len(tok):,} characters is longer than the "
                                f"{MAX_WORD} allowed")
    if not toks:
        return None
    return Term(tuple(toks), prefix)


class _Parser:
    def __init__(self, value: str) -> None:
        self.value = value
        self.items = _lex(value)
        self.pos = 0

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def take(self) -> tuple[str, Any]:
        item = self.items[self.pos]
        self.pos += 1
        return item

    def parse(self) -> Any:
        node = self.or_expr()
        if self.peek() is not None:
            kind = self.peek()
            raise _error(self.value, "a ')' has no '(' before it" if kind == ")"
                         else f"unexpected {kind}")
        if node is None:
            raise _error(self.value, "there is no word to search for")
        return node

    def or_expr(self) -> Any:
        parts = []
        while True:
            if self.peek() == "OR":
                raise _error(self.value, "OR needs something to search for on both sides")
            node = self.and_expr()
            if node is None:
                if parts or self.peek() == "OR":
                    raise _error(self.value, "OR needs something to search for on both sides")
                return None
            parts.append(node)
            if self.peek() != "OR":
                break
            self.take()
            if self.peek() in (None, ")"):
                raise _error(self.value, "OR needs something to search for on both sides")
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Any:
        parts: list[Any] = []
        while self.peek() not in (None, ")", "OR"):
            if self.peek() == "AND":
                self.take()
                if not parts or self.peek() in (None, ")", "OR", "AND"):
                    raise _error(self.value, "AND needs something to search for on both "
                                             "sides")
                continue
            node = self.unary()
            if node is not None:
                parts.append(node)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Any:
        kind, _ = self.take()
        if kind == "NOT":
            if self.peek() in (None, ")", "OR", "AND"):
                raise _error(self.value, "NOT needs something after it to leave out")
            child = self.unary()
            if child is None:
                return None
            return child.child if isinstance(child, Not) else Not(child)
        if kind == "(":
            node = self.or_expr()
            if self.peek() != ")":
                raise _error(self.value, "a '(' is not closed")
            self.take()
            return node
        if kind == ")":  # pragma: no cover - and_expr stops before ")"
            raise _error(self.value, "a ')' has no '(' before it")
        _, item = self.items[self.pos - 1]
        if kind == "phrase":
            words, prefix = item
            return _term(self.value, words, prefix)
        prefix = item.endswith("*")
        return _term(self.value, item.rstrip("*"), prefix)


def _check_positive(value: str, node: Any) -> None:
    """Every alternative must match something: NOT alone leaves out, it does not find."""
    if isinstance(node, Not):
        raise _error(value, "NOT only leaves out: give something to find as well "
                            "(e.g. osteoarthritis NOT dog)")
    if isinstance(node, And):
        if all(isinstance(c, Not) for c in node.children):
            _check_positive(value, node.children[0])
        for c in node.children:
            _check_positive(value, c.child if isinstance(c, Not) else c)
    elif isinstance(node, Or):
        for c in node.children:
            _check_positive(value, c)


def parse_query(value: str) -> Query:
    """Read ``--query`` text; raises UsageError (one line, how to write it) when it cannot."""
    if len(value) > MAX_QUERY:
        raise UsageError(f"--query: {len(value):,} characters is longer than the "
                         f"{MAX_QUERY:,} allowed")
    if any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise _error(value.encode("unicode_escape").decode(), "it holds control characters")
    tree = _Parser(value).parse()
    _check_positive(value, tree)
    return Query(value, tree)


def _fts5(node: Any) -> str:
    if isinstance(node, Term):
        return '"' + " ".join(node.tokens) + '"' + ("*" if node.prefix else "")
    if isinstance(node, Or):
        return " OR ".join(_group(_fts5(c), c) for c in node.children)
    if isinstance(node, And):
        pos = [c for c in node.children if not isinstance(c, Not)]
        neg = [c.child for c in node.children if isinstance(c, Not)]
        out = " AND ".join(_group(_fts5(c), c) for c in pos)
        if neg:
            out = "(" + out + ")" + "".join(" NOT " + _group(_fts5(c), c) for c in neg)
        return out
    raise TypeError(node)  # pragma: no cover


def _group(rendered: str, node: Any) -> str:
    return rendered if isinstance(node, Term) else "(" + rendered + ")"


def _tsquery(node: Any) -> str:
    if isinstance(node, Term):
        toks = [t for t in node.tokens if len(t) <= MAX_TOKEN]
        parts = [f"'{t}'" for t in toks]
        if node.prefix:
            parts[-1] += ":*"
        return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(_tsquery(c) for c in node.children) + ")"
    if isinstance(node, And):
        return "(" + " & ".join(("!" + _tsquery(c.child)) if isinstance(c, Not)
                                else _tsquery(c) for c in node.children) + ")"
    raise TypeError(node)  # pragma: no cover


def matches(conn: Connection, kind: str, query: Query) -> Any:
    """The records of ``kind`` ("study" or "publication") that match ``query``: a subquery
    of (``id``, ``score``), higher scores better."""
    name, _, bm25, _ = TABLES[kind]
    param = f"q_{kind}"
    if conn.dialect.name == "sqlite":
        weights = ", ".join(str(w) for w in bm25)
        sql = (f"SELECT rowid AS id, -bm25({name}, {weights}) AS score FROM {name} "
               f"WHERE {name} MATCH :{param}")
        value = query.fts5()
    else:
        sql = (f"SELECT id, ts_rank(document, CAST(:{param} AS tsquery), 1) AS score "
               f"FROM {name} WHERE document @@ CAST(:{param} AS tsquery)")
        value = query.tsquery()
    return text(sql).bindparams(**{param: value}).columns(id=Integer, score=Float).subquery(
        f"match_{kind}")


SEARCH_COLUMNS = ("kind", "id", "score", "date", "phase", "status", "title",
                  "condition_groups", "cell_sources", "origins", "products", "msc_relevant",
                  "msc_role", "url")


def search_all(conn: Connection, flt: Any) -> list[dict[str, Any]]:
    """Trials and papers matching ``flt`` (a ``StudyFilter`` with a query), best first (or
    in its sort), at most its limit in all. Papers are left out when ``flt`` asks for a
    status or a country (papers have neither)."""
    from dataclasses import replace

    from tracker.history import sort_rows
    from tracker.reports import PaperFilter, query_papers, query_studies

    rows: list[dict[str, Any]] = []
    for s in query_studies(conn, flt):
        rows.append({"kind": "trial", "id": s["registry_id"], "score": s["score"],
                     "date": s["first_posted"], "last_update": s["last_update_posted"],
                     "phase": s["phase"], "status": s["status"], "title": s["title"],
                     "enrollment": s["enrollment"], **_labels(s), "url": s["url"]})
    if not flt.statuses and not flt.countries:
        paper_flt = flt if flt.sort != "enrollment" else replace(flt, sort=None, desc=False)
        for p in query_papers(conn, PaperFilter(labels=paper_flt)):
            pid = (f"PMID:{p['pmid']}" if p.get("pmid") else p.get("pmcid")
                   or (f"DOI:{p['doi']}" if p.get("doi") else p.get("url")))
            rows.append({"kind": "paper", "id": pid, "score": p["score"],
                         "date": p["index_date"], "last_update": None, "phase": p["phase"],
                         "status": None, "title": p["title"], "enrollment": None,
                         **_labels(p), "url": p["url"]})
    key = flt.sort or "relevance"
    field = {"first_posted": "date", "relevance": "score"}.get(key, key)
    rows.sort(key=lambda r: (r["kind"], r["id"] or ""))  # ties: trials, then papers, by id
    rows = sort_rows(rows, key, flt.desc, lambda r: r.get(field))
    return rows[: flt.limit] if flt.limit else rows


def _labels(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("condition_groups", "cell_sources", "origins",
                                    "products", "msc_relevant", "msc_role")}


def render_search(rows: list[dict[str, Any]], fmt: str) -> str:
    """``tracker search`` results in ``fmt`` (table, markdown, csv or json)."""
    from tracker.render import render_list

    out = [{k: r.get(k) for k in SEARCH_COLUMNS} for r in rows]
    for r in out:  # the id column links in markdown as the registry id / PMID do
        r["registry_id"] = r["id"]
    return render_list(out, fmt, SEARCH_COLUMNS, ("kind", "registry_id", "date", "phase",
                                                  "title"), "result")
