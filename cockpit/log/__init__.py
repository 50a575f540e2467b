"""The tamper-evident transfer log, by job:

* ``sequencer`` - integrates new entries in batches, signs a checkpoint each (the background
  worker of the server);
* ``checkpoints`` - the signed notes (C2SP tlog-checkpoint) and the verifier keys;
* ``witnesses`` and ``cosigner`` - the witnesses' cosignatures (C2SP tlog-witness): a
  checkpoint is published once a quorum cosigned it (a second background worker);
* ``proofs`` - the published checkpoint, a transfer's place, inclusion and consistency proofs;
* ``receipts`` - a citizen's receipt of a transfer (C2SP tlog-proof);
* ``export`` - the auditors' export and retention (shredding).

The tree's maths is ``cockpit.tree``, its storage the cockpit's store (``cockpit.store``).
``TransferLog`` puts the parts together for the app, the HTTP layer and the CLI.
"""

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.log.checkpoints import CheckpointSigner
from cockpit.log.cosigner import COSIGN_INTERVAL_S, Cosigner, QuorumError
from cockpit.log.export import EXPORT_CHUNK, Export, Retention
from cockpit.log.proofs import ConsistencyProof, EntryPosition, InclusionProof, Proofs
from cockpit.log.receipts import Receipts
from cockpit.log.sequencer import Sequencer
from cockpit.log.witnesses import NO_WITNESSES, WitnessPolicy
from cockpit.store import LogStore, open_store
from einmal.keys import SigningKey

__all__ = ["ConsistencyProof", "EntryPosition", "InclusionProof", "TransferLog"]


class TransferLog:
    """The log of one cockpit. ``store``: the cockpit's store (``cockpit.store.open_store``);
    tools may give an ``engine`` instead, whose store is then opened here. ``witnesses``:
    who cosigns its checkpoints and how many must before one is published (none: every
    signed checkpoint is published at once); ``http`` the client they are asked with."""

    def __init__(self, *, key: SigningKey, origin: str, store: LogStore | None = None,
                 engine: AsyncEngine | None = None, batch_size: int = 5000,
                 interval_s: float = 0.5, retention_days: int = 730,
                 retired_keys: Sequence[dict[str, Any]] = (),
                 witnesses: WitnessPolicy = NO_WITNESSES, witness_timeout_s: float = 5.0,
                 cosign_interval_s: float = COSIGN_INTERVAL_S,
                 http: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if store is None:
            if engine is None:
                msg = "give a store or an engine"
                raise TypeError(msg)
            store = open_store(engine)
        elif engine is not None:
            msg = "give a store or an engine, not both"
            raise TypeError(msg)
        self._store = store
        signer = CheckpointSigner(key=key, origin=origin, retired_keys=retired_keys)
        self.origin = origin
        self.verifier_key = signer.verifier_key
        #: the current verifier key first, then retired ones (older checkpoints verify)
        self.verifier_keys = signer.verifier_keys
        self._clock = clock
        self.witnesses = witnesses
        self.proofs = Proofs(store, witnesses)
        self.retention = Retention(store, retention_days=retention_days)
        self._export = Export(store, self.proofs)
        self._receipts = Receipts(store, self.proofs)
        #: only with witnesses: shows new checkpoints to them, publishes the cosigned ones
        self.cosigner = Cosigner(store, self.proofs, witnesses, http=http,
                                 timeout_s=witness_timeout_s, interval_s=cosign_interval_s,
                                 clock=clock) if witnesses.enabled else None
        self.sequencer = Sequencer(store, signer, self.retention, batch_size=batch_size,
                                   interval_s=interval_s, clock=clock,
                                   on_integrated=self._integrated)

    # -- the sequencer and the cosigner ------------------------------------------------------
    async def initialise(self) -> None:
        await self.sequencer.initialise()

    def notify(self) -> None:
        """New entries: integrate soon."""
        self.sequencer.worker.notify()

    def _integrated(self) -> None:
        if self.cosigner is not None:
            self.cosigner.worker.notify()

    def start(self) -> None:
        self.sequencer.worker.start()
        if self.cosigner is not None:
            self.cosigner.worker.start()

    async def stop(self) -> None:
        await self.sequencer.worker.stop()
        if self.cosigner is not None:
            await self.cosigner.worker.stop()
            await self.cosigner.aclose()

    async def integrate(self) -> int:
        return await self.sequencer.integrate()

    async def first_round(self) -> None:
        """Before serving: one cosigning round, so that a (re)started log publishes at once.
        Witnesses away delay the start by at most their timeout and are only logged: the
        cosigner keeps asking once started."""
        if self.cosigner is not None:
            with contextlib.suppress(QuorumError):
                await self.cosigner.cosign()

    async def cosign(self) -> bool:
        """One cosigning round (True: a checkpoint was published); ``QuorumError`` if fewer
        witnesses than the quorum cosigned. Without witnesses: nothing to do (False)."""
        return await self.cosigner.cosign() if self.cosigner is not None else False

    async def witness_status(self) -> str | None:
        """For readiness (None without witnesses): ``ok: ...`` or ``error: ...``."""
        return await self.cosigner.status() if self.cosigner is not None else None

    async def status(self) -> tuple[int, int]:
        """(integrated tree size, entries waiting for the sequencer)."""
        return await self._store.log_status()

    # -- reading -----------------------------------------------------------------------------
    async def checkpoint(self) -> tuple[int, str]:
        return await self.proofs.checkpoint()

    async def entry_of(self, transfer_id: str) -> EntryPosition:
        return await self.proofs.entry_of(transfer_id)

    async def inclusion(self, index: int, tree_size: int) -> InclusionProof:
        return await self.proofs.inclusion(index, tree_size)

    async def consistency(self, first: int, second: int) -> ConsistencyProof:
        return await self.proofs.consistency(first, second)

    async def receipt(self, citizen_ref: str, transfer_id: str, *,
                      visible_for: timedelta) -> str:
        """A citizen's receipt of a transfer they may see - one of their feed that occurred
        within ``visible_for`` - in the C2SP tlog-proof format."""
        since = self._clock() - visible_for
        return await self._receipts.receipt(citizen_ref, transfer_id, since=since)

    # -- export and retention ----------------------------------------------------------------
    async def export_bounds(self, tree_size: int | None, after: int) -> tuple[int, int]:
        return await self._export.bounds(tree_size, after)

    def export(self, *, tree_size: int, after: int = -1, since: datetime | None = None,
               until: datetime | None = None, service: str | None = None,
               register: str | None = None, chunk: int = EXPORT_CHUNK) -> AsyncIterator[bytes]:
        return self._export.lines(tree_size=tree_size, after=after, since=since, until=until,
                                  service=service, register=register, chunk=chunk)

    async def shred(self, before: datetime) -> int:
        return await self.retention.shred(before)
