"""Who may read a transfer-log entry: its subject, the parents the registers named for the
subject, and anyone else the record names. Pure: every store backend decides it the same way.
"""

from collections.abc import Callable, Iterable
from typing import TypeVar

from cockpit.store.base import NewEntry

__all__ = ["readers"]

T = TypeVar("T")


def readers(fresh: Iterable[NewEntry], parents_of: dict[str, list[str]],
            time: Callable[[NewEntry], T],
            ) -> tuple[list[tuple[str, str]], list[tuple[str, str, T, str]]]:
    """The relations learned (parent, child) and the index rows (citizen, transfer id,
    ``time(entry)``, relation) of new entries, in order.

    ``parents_of`` (child -> parents known before these entries) is extended as it goes: a
    relation learned from an entry applies to that entry and to later ones, not to earlier
    ones - the same readers as if the entries had come one by one."""
    relations: list[tuple[str, str]] = []
    rows: list[tuple[str, str, T, str]] = []
    for entry in fresh:
        subject = entry.subject_ref
        seen_by: dict[str, str] = {subject: "self"}
        if entry.names_parents and entry.named_refs:
            known = parents_of.setdefault(subject, [])
            for parent in entry.named_refs:
                relations.append((parent, subject))
                if parent not in known:
                    known.append(parent)
        for parent in parents_of.get(subject, ()):
            seen_by.setdefault(parent, "child")
        for ref in entry.named_refs:
            seen_by.setdefault(ref, "concerned")
        when = time(entry)
        rows.extend((ref, entry.id, when, relation) for ref, relation in seen_by.items())
    return relations, rows
