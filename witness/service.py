"""``Witness``: one add-checkpoint request, from its bytes to the cosignature line.

    1. parse the body (400)
    2. the origin is a log this witness follows (404)
    3. a trusted key of that log signed the checkpoint (403)
    4. consistency with the checkpoint last cosigned (400, 409, 422)
    5. cosign, then persist by compare-and-swap (409 if another request won), then answer

NOTE: the cosignature leaves the witness only after its checkpoint is stored, and it is stored
only if the stored state is still the one step 4 checked against: the witness never cosigns
two checkpoints that are not consistent with each other.
"""

import time
from collections.abc import Callable, Mapping, Sequence

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal_client.cosignature import cosign, witness_vkey
from witness.errors import ForkError, InconsistentCheckpointError, StaleSizeError, UnknownLogError
from witness.protocol import (
    LogKey,
    Recorded,
    check_consistency,
    parse_add_checkpoint,
    verify_log_signature,
)
from witness.store import LogState, WitnessStore

__all__ = ["Witness"]

log = structlog.get_logger()


class Witness:
    def __init__(self, *, name: str, private_key: Ed25519PrivateKey,
                 logs: Mapping[str, Sequence[LogKey]], store: WitnessStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.vkey = witness_vkey(name, private_key.public_key())
        self._key = private_key
        self._logs = dict(logs)
        self._store = store
        self._clock = clock

    @property
    def origins(self) -> list[str]:
        return sorted(self._logs)

    async def add_checkpoint(self, unverified_body: bytes) -> str:
        """The cosignature line(s) for a valid request; a ``WitnessError`` (nothing stored)
        or a ``StoreError`` otherwise."""
        request = parse_add_checkpoint(unverified_body)
        checkpoint = request.checkpoint
        keys = self._logs.get(checkpoint.origin)
        if not keys:
            msg = "this witness does not follow a log with that origin"
            raise UnknownLogError(msg)
        log_signatures = verify_log_signature(request, keys)
        latest = await self._store.latest(checkpoint.origin)
        recorded = Recorded(size=latest.size, root=latest.root) if latest else None
        try:
            check_consistency(request, recorded)
        except (ForkError, InconsistentCheckpointError) as exc:
            # signed by the log and not consistent with what it showed this witness before:
            # evidence of misbehaviour (tlog-witness: MAY log it; never cosign it)
            log.warning("witness.inconsistent_checkpoint", origin=checkpoint.origin,
                        cosigned_size=recorded.size if recorded else 0,
                        size=checkpoint.size, error=type(exc).__name__)
            raise
        # a cosignature says "as of this time, the largest tree seen": time never goes back
        timestamp = max(int(self._clock()), latest.cosigned_at if latest else 0)
        line = cosign(request.text, self.name, self._key, timestamp)
        note = request.text + "\n" + "".join(s.line() for s in log_signatures) + line
        new = LogState(origin=checkpoint.origin, size=checkpoint.size, root=checkpoint.root,
                       cosigned_at=timestamp, checkpoint=note)
        if not await self._store.compare_and_swap(latest, new):
            now = await self._store.latest(checkpoint.origin)
            raise StaleSizeError(now.size if now else 0)
        log.info("witness.cosigned", origin=checkpoint.origin, size=checkpoint.size,
                 old_size=request.old_size)
        return line
