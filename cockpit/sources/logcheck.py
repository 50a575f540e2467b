"""The transparency log as the audit layer of the source model (issue 15 §6), read-only.

Both ways, by the cockpit's pseudonym of the citizen (never the IdNr):

* an entry a source reports with the broker's ``transfer_id``: is that transfer one of this
  citizen's in the log, and does its inclusion proof lead to the root of the published,
  signed checkpoint? -> "logged"; in the log but not yet under a published checkpoint (or the
  record is still on its way: within ``grace``) -> "pending"; otherwise "missing" (flagged);
* the log's transfers about this citizen within two years that no source reported although
  the source that should have (the register that answered it, or the broker that passed it)
  was asked and answered -> ``unreported`` (flagged).
"""

import base64
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from cockpit.errors import CockpitError, NotFoundError
from cockpit.leaf import decode_leaf
from cockpit.log import TransferLog
from cockpit.service import VISIBLE_FOR
from cockpit.sources.model import EntryCheck, SourceInfo
from cockpit.store import CockpitStore
from einmal.store import StoreError
from einmal_client import tlog
from einmal_client.sources import SourceEntry

__all__ = ["LogCheck", "Unreported"]

log = structlog.get_logger()

#: (transfer id, occurred_at, register id) - pseudonymous log metadata only
Unreported = tuple[str, datetime, str]
_DELIVERED = "delivered"
#: the feed's relations a source lists as well (a source knows no "child" relation)
_LISTED = frozenset({"self", "concerned"})
#: verified inclusions remembered (32 bytes and an int each)
_MAX_VERIFIED = 100_000


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LogCheck:
    """``store`` and ``log``: the cockpit's; ``pseudonym``: the cockpit's keyed pseudonym of an
    IdNr (``CockpitService.pseudonym``); ``brokers``: the source ids of the brokers whose
    transfers this log holds (None: any broker asked); ``grace``: how long a transfer may be
    on its way from the broker to the log before its absence is flagged; ``max_feed``: the
    most log entries read for the reverse check."""

    def __init__(self, *, store: CockpitStore, log: TransferLog,
                 pseudonym: Callable[[str], str], brokers: Collection[str] | None = None,
                 grace: timedelta = timedelta(minutes=2), max_feed: int = 500,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._brokers = None if brokers is None else frozenset(brokers)
        self._log = log
        self.pseudonym = pseudonym
        self._grace = grace
        self._max_feed = max_feed
        self._clock = clock
        #: log index -> leaf hash whose inclusion under a published, signed checkpoint was
        #: verified: the tree only grows (witnesses and monitors hold it to that), so it stays
        #: included in every later checkpoint. Facts about the log, not about a citizen.
        self._included_at: OrderedDict[int, bytes] = OrderedDict()

    async def _published_root(self) -> tuple[int, bytes] | None:
        """(size, root) of the published checkpoint, its signature checked; None if none."""
        try:
            size, note = await self._log.checkpoint()
        except NotFoundError:
            return None
        for vkey in self._log.verifier_keys:
            name, key = tlog.parse_verifier_key(vkey)
            try:
                checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, name, key))
            except tlog.NoteError:
                continue
            if checkpoint.size == size:
                return size, checkpoint.root
        msg = "the published checkpoint does not verify with the log's keys"
        raise tlog.NoteError(msg)

    async def entry_checks(self, citizen_ref: str, entries: Sequence[SourceEntry],
                           ) -> list[tuple[EntryCheck, int | None]]:
        """The log's view of each entry (``not-applicable`` without a ``transfer_id``), with
        its log index once checked. The log unreadable: "pending" (nothing is claimed)."""
        wanted = [e for e in entries if e.transfer_id]
        checks: list[tuple[EntryCheck, int | None]] = [("not-applicable", None)] * len(entries)
        if not wanted:
            return checks
        try:
            found = await self._checks(citizen_ref, wanted)
        except (StoreError, CockpitError) as exc:
            log.warning("sources.log_check_failed", error=type(exc).__name__)
            found = {e.transfer_id or "": ("pending", None) for e in wanted}
        return [found.get(e.transfer_id, ("not-applicable", None)) if e.transfer_id
                else ("not-applicable", None) for e in entries]

    async def _checks(self, citizen_ref: str, entries: Iterable[SourceEntry],
                      ) -> dict[str, tuple[EntryCheck, int | None]]:
        now = self._clock()
        try:
            published = await self._published_root()
        except tlog.NoteError:
            log.error("sources.log_checkpoint_invalid")
            published = None
            invalid = True
        else:
            invalid = False
        result: dict[str, tuple[EntryCheck, int | None]] = {}
        for entry in entries:
            transfer_id = entry.transfer_id or ""
            if transfer_id in result:
                continue
            readable = await self._store.readable_entry(citizen_ref, transfer_id,
                                                        since=now - VISIBLE_FOR)
            if readable is None:
                recent = entry.occurred_at > now - self._grace
                result[transfer_id] = ("pending" if recent else "missing", None)
                continue
            index, leaf = readable
            if invalid:
                result[transfer_id] = ("missing", index)
            elif index is None or published is None or index >= published[0]:
                result[transfer_id] = ("pending", index)
            else:
                result[transfer_id] = (await self._included(index, leaf, *published), index)
        return result

    async def _included(self, index: int, leaf: bytes | None, size: int, root: bytes,
                        ) -> EntryCheck:
        known = self._included_at.get(index)
        if known is not None and (leaf is None or tlog.leaf_hash(leaf) == known):
            self._included_at.move_to_end(index)
            return "logged"
        proof = await self._log.inclusion(index, size)
        leaf_hash = (tlog.leaf_hash(leaf) if leaf is not None
                     else base64.b64decode(proof.leaf_hash))
        try:
            tlog.verify_inclusion(index, size, leaf_hash,
                                  [base64.b64decode(h) for h in proof.hashes], root)
        except tlog.ProofError:
            log.error("sources.log_inclusion_invalid", index=index, tree_size=size)
            return "missing"
        self._included_at[index] = leaf_hash
        if len(self._included_at) > _MAX_VERIFIED:
            self._included_at.popitem(last=False)
        return "logged"

    async def unreported(self, citizen_ref: str, reported: set[str],
                         answered: Sequence[SourceInfo]) -> tuple[Unreported, ...]:
        """The log's delivered transfers about this citizen (two years, newest first) that no
        reported entry carries, though a source that should report them answered: the register
        that delivered it, or the broker it went through (``brokers``). Only what a source
        lists too: transfers about the citizen or naming them (not a child's that only the
        parent may read here). The log unreadable: none."""
        registers = {s.id for s in answered if s.kind == "register"}
        broker_answered = any(s.kind == "broker" and (self._brokers is None
                                                     or s.id in self._brokers)
                              for s in answered)
        if not registers and not broker_answered:
            return ()
        now = self._clock()
        since = now - VISIBLE_FOR
        found: list[Unreported] = []
        try:
            rows = await self._store.feed(citizen_ref, since=since, limit=self._max_feed)
            for row in rows:
                # no grace here: a register logs before it answers, the log comes after
                if row.transfer_id in reported or row.relation not in _LISTED:
                    continue
                readable = await self._store.readable_entry(citizen_ref, row.transfer_id,
                                                            since=since)
                if readable is None or readable[1] is None:  # shredded: nothing to compare
                    continue
                leaf = decode_leaf(readable[1])
                register = (leaf.get("register") or {}).get("id") or ""
                through_broker = bool(leaf.get("intermediaries"))
                if leaf.get("outcome") == _DELIVERED and (
                        register in registers or (broker_answered and through_broker)):
                    found.append((row.transfer_id, row.occurred_at, register))
        except (StoreError, ValueError) as exc:
            log.warning("sources.log_check_failed", error=type(exc).__name__)
            return ()
        return tuple(found)
