"""Searching a registry's index: filters and the ranking of hits.

:func:`rank_entries` is what ``modelzoo search`` runs over the entries of every
registry's :class:`~modelzoo.hub.index.LoadedIndex`; it reads only the index, never a
manifest.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from .index import IndexEntry

__all__ = ["rank_entries"]


def _term_score(term: str, entry: IndexEntry) -> int | None:
    """How well one lowercase search term matches (lower is better), None for no match."""
    name = entry.name
    if name == term:
        return 0
    if name.startswith(term):
        return 1
    if term in name:
        return 2
    family, tags, summary = entry._haystack
    if term == family or term in tags:
        return 3
    if term in family or any(term in t for t in tags):
        return 4
    if term in summary:
        return 5
    return None


def rank_entries(
    entries: list[IndexEntry],
    query: str | None = None,
    *,
    task: str | None = None,
    tag: str | None = None,
    family: str | None = None,
) -> list[IndexEntry]:
    """Filter and order ``entries`` for a search.

    A query with ``*``, ``?`` or ``[`` is a glob on the name. Otherwise every
    whitespace-separated term must match the name, family, tags or summary
    (case-insensitive); hits rank exact name > name prefix > name substring >
    family/tag > summary, then by name.
    """
    q = (query or "").strip().lower()
    is_glob = any(c in q for c in "*?[")
    terms = q.split()
    task_l = task.lower() if task else None
    tag_l = tag.lower() if tag else None
    family_l = family.lower() if family else None
    hits = []
    for entry in entries:
        if task_l is not None and entry.task.lower() != task_l:
            continue
        if tag_l is not None and tag_l not in entry._haystack[1]:
            continue
        if family_l is not None and entry._haystack[0] != family_l:
            continue
        if is_glob:
            if fnmatchcase(entry.name, q):
                hits.append((0, entry.name, entry))
            continue
        scores = [_term_score(term, entry) for term in terms]
        if None not in scores:
            hits.append((sum(scores), entry.name, entry))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [h[2] for h in hits]
