"""The cosigner: shows each new signed checkpoint to the log's witnesses and publishes it once
a quorum of them cosigned it (C2SP tlog-witness, decision 0030).

One round:
    1. the latest signed checkpoint; nothing to do if the published one is as large
    2. every witness is asked in parallel, each within the timeout: ``old <the size it last
       cosigned>``, the consistency proof from there, the signed checkpoint
    3. each answer is checked: only a valid cosignature by the witness's configured key counts
    4. at least ``quorum`` of them: the checkpoint with their cosignature lines is published
       (stored); fewer: ``QuorumError`` - the worker retries with backoff, and a new checkpoint
       wakes it early. Entries are accepted and integrated meanwhile; only publication waits.

The witnesses' answers (tlog-witness):

    200 text/plain          the cosignature line(s)
    409 text/x.tlog.size    the size the witness last cosigned: asked once more from there
    409 problem, 422        the witness holds a checkpoint of this log that this one does not
                            extend: an alarm (a fork, or a rolled-back store), not retried
    403, 404                the witness does not trust this log's key or know its origin
    anything else, no answer in time, a garbage answer: not counted (logged)
"""

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog

from cockpit.errors import TreeIntegrityError
from cockpit.log.proofs import Proofs
from cockpit.log.witnesses import WitnessEndpoint, WitnessPolicy
from cockpit.store.base import LogStore
from einmal.store import StoreError
from einmal.worker import BackgroundWorker
from einmal_client import tlog
from einmal_client.cosignature import (
    MAX_NOTE_SIGNATURES,
    parse_signature_line,
    split_note,
    verify_cosignature,
)

__all__ = ["COSIGN_INTERVAL_S", "MAX_ANSWER_BYTES", "SIZE_MEDIA_TYPE", "CosignRound",
           "Cosigner", "QuorumError"]

log = structlog.get_logger()

#: the witness's "ask me from this size" answer; compared as a string (no parameters)
SIZE_MEDIA_TYPE = "text/x.tlog.size"
#: a cosignature line is ~130 bytes; a longer answer is not one
MAX_ANSWER_BYTES = 16 * 1024
#: a round at least this often while there is something to publish (new checkpoints wake it)
COSIGN_INTERVAL_S = 2.0
#: a burst of new checkpoints is cosigned in one round (the latest)
COALESCE_S = 0.02
#: after a round short of the quorum: back off from 0.5 s up to this long
MAX_BACKOFF_S = 8.0
_SIZE = re.compile(r"(0|[1-9][0-9]{0,18})\n")


class QuorumError(Exception):
    """Fewer witnesses than the quorum cosigned the checkpoint: it is not published."""


@dataclass(frozen=True, slots=True)
class CosignRound:
    """How the last round ended."""

    at: datetime
    tree_size: int
    #: the witnesses whose valid cosignatures it collected
    cosigned: tuple[str, ...]
    published: bool


def _consistency(old: int, size: int) -> Callable[[tlog.HashAt], list[bytes]]:
    return lambda hash_at: tlog.consistency_proof(old, size, hash_at)


class Cosigner:
    """``cosign`` is one round; ``worker`` runs rounds in the server (``notify`` on every new
    checkpoint). ``http``: the client the witnesses are asked with (made here if None)."""

    def __init__(self, store: LogStore, proofs: Proofs, policy: WitnessPolicy, *,
                 http: httpx.AsyncClient | None = None, timeout_s: float = 5.0,
                 interval_s: float = COSIGN_INTERVAL_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._proofs = proofs
        self.policy = policy
        self._timeout = timeout_s
        self._clock = clock
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False)
        #: the size each witness last cosigned, as far as this process knows (0: unknown; a
        #: 409 with its size corrects it)
        self._sizes: dict[str, int] = {}
        #: the last round's outcome (None: no round yet)
        self.last: CosignRound | None = None
        self.worker = BackgroundWorker(
            "cosigner", self._step, interval_s=interval_s, coalesce_s=COALESCE_S,
            retry_on=(QuorumError, StoreError, TreeIntegrityError, OSError),
            min_backoff_s=0.5, max_backoff_s=MAX_BACKOFF_S)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def _step(self) -> None:
        await self.cosign()

    async def cosign(self) -> bool:
        """One round: True if it published a checkpoint, False if there was nothing new;
        ``QuorumError`` if fewer witnesses than the quorum cosigned (nothing published)."""
        latest = await self._store.latest_checkpoint()
        if latest is None:
            return False
        size, note = latest
        published = await self._store.published_checkpoint()
        if published is not None and published[0] >= size:
            return False
        text, _ = split_note(note)
        witnesses = self.policy.witnesses
        answers = await asyncio.gather(*(self._ask(w, size, note, text) for w in witnesses),
                                       return_exceptions=True)
        lines: dict[str, str] = {}
        for witness, answer in zip(witnesses, answers, strict=True):
            if isinstance(answer, BaseException):  # the store failed computing a proof
                raise answer
            if answer is not None:
                lines[witness.name] = answer
        cosigned = tuple(lines)
        if len(lines) < self.policy.quorum:
            self.last = CosignRound(at=self._clock(), tree_size=size, cosigned=cosigned,
                                    published=False)
            log.warning("log.cosigning_short", tree_size=size, cosigned=len(lines),
                        quorum=self.policy.quorum, witnesses=len(witnesses))
            msg = (f"{len(lines)} of {len(witnesses)} witnesses cosigned the checkpoint of "
                   f"size {size}; {self.policy.quorum} are needed")
            raise QuorumError(msg)
        await self._store.publish_checkpoint(tree_size=size, note=note + "".join(lines.values()),
                                             cosignatures=len(lines), now=self._clock())
        self.last = CosignRound(at=self._clock(), tree_size=size, cosigned=cosigned,
                                published=True)
        log.info("log.published", tree_size=size, cosigned=len(lines), witnesses=len(witnesses))
        return True

    async def status(self) -> str:
        """For readiness: ``error: ...`` while publication waits for a quorum it did not get."""
        size, _ = await self._store.log_status()
        published = await self._store.published_checkpoint()
        last = self.last
        count, quorum = len(self.policy.witnesses), self.policy.quorum
        done = len(last.cosigned) if last is not None else 0
        behind = size - published[0] if published is not None else size
        where = ("no checkpoint published yet" if published is None
                 else f"published checkpoint is {behind} entries behind")
        failing = (last is not None and not last.published and quorum > 0
                   and (published is None or behind > 0))
        state = "error" if failing else "ok"
        return f"{state}: {done} of {count} cosigned (quorum {quorum}), {where}"

    # -- one witness ---------------------------------------------------------------------------
    async def _ask(self, witness: WitnessEndpoint, size: int, note: str, text: str,
                   ) -> str | None:
        """The witness's verified cosignature line, or None (logged why)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._ask_within(witness, size, note, text)
        except TimeoutError:
            log.warning("log.witness_unreachable", witness=witness.name, error="timeout",
                        timeout_s=self._timeout)
        except httpx.HTTPError as exc:
            log.warning("log.witness_unreachable", witness=witness.name,
                        error=type(exc).__name__)
        return None

    async def _ask_within(self, witness: WitnessEndpoint, size: int, note: str, text: str,
                          ) -> str | None:
        old = self._sizes.get(witness.name, 0)
        for attempt in (1, 2):
            if old > size:
                # NOTE: the witness cosigned a larger tree of this origin than the log has: the
                # log's store was rolled back, or another log signs under this origin.
                log.error("log.witness_ahead", witness=witness.name, witness_size=old,
                          tree_size=size)
                return None
            status, media_type, body = await self._post(witness, await self._body(old, size,
                                                                                  note))
            if status == 200:
                line = self._verified(witness, text, body)
                if line is not None:
                    self._sizes[witness.name] = size
                return line
            if status == 409 and media_type == SIZE_MEDIA_TYPE and attempt == 1:
                found = _SIZE.fullmatch(body.decode("ascii", "replace"))
                if found is None:
                    log.error("log.witness_bad_answer", witness=witness.name, status=status)
                    return None
                old = self._sizes[witness.name] = int(found[1])
                continue
            _refused(witness, status, media_type, size, old)
            return None
        return None

    async def _body(self, old: int, size: int, note: str) -> bytes:
        proof = [] if old in (0, size) else await self._proofs.computed(_consistency(old, size))
        return ("\n".join([f"old {old}", *tlog.hashes_b64(proof)]) + "\n\n" + note).encode()

    async def _post(self, witness: WitnessEndpoint, body: bytes) -> tuple[int, str, bytes]:
        """(status, media type as sent, body up to MAX_ANSWER_BYTES + 1 bytes)."""
        async with self._http.stream("POST", witness.add_checkpoint_url, content=body,
                                     headers={"content-type": "text/plain; charset=utf-8"},
                                     timeout=self._timeout) as response:
            received = bytearray()
            async for chunk in response.aiter_bytes():
                received += chunk
                if len(received) > MAX_ANSWER_BYTES:
                    break
            return (response.status_code, response.headers.get("content-type", ""),
                    bytes(received))

    @staticmethod
    def _verified(witness: WitnessEndpoint, text: str, body: bytes) -> str | None:
        """The witness's cosignature line (by its configured key) in its answer, verified."""
        try:
            if len(body) > MAX_ANSWER_BYTES:
                msg = "the answer is too long"
                raise tlog.NoteError(msg)
            answer = body.decode("utf-8")
            lines = answer[:-1].split("\n")
            if not answer.endswith("\n") or len(lines) > MAX_NOTE_SIGNATURES:
                msg = "the answer is not signature lines, each ending in a newline"
                raise tlog.NoteError(msg)
            found = None
            for raw in lines:
                signature = parse_signature_line(raw)
                if (signature.name, signature.key_id) == (witness.key.name, witness.key.key_id):
                    verify_cosignature(text, signature, witness.key)
                    found = signature.line()
            if found is None:
                msg = "no cosignature by the witness's configured key"
                raise tlog.NoteError(msg)
        except (UnicodeDecodeError, tlog.NoteError) as exc:
            # NOTE: not counted, never published: a garbage answer or a wrong key/signature
            log.error("log.witness_bad_cosignature", witness=witness.name,
                      error=str(exc)[:200])
            return None
        return found


def _refused(witness: WitnessEndpoint, status: int, media_type: str, size: int,
             old: int) -> None:
    if status == 409 and media_type == SIZE_MEDIA_TYPE:  # again: another process raced us
        log.warning("log.witness_busy", witness=witness.name, tree_size=size, old_size=old)
    elif status in (409, 422):
        # NOTE: an alarm: the witness cosigned a checkpoint of this log that this one does not
        # extend (a fork, a rolled-back store) - it will never cosign this history
        log.error("log.witness_refused", witness=witness.name, status=status, tree_size=size,
                  old_size=old)
    elif status in (403, 404):
        log.error("log.witness_misconfigured", witness=witness.name, status=status,
                  hint="the witness does not know this log's origin or trust its key")
    else:
        log.warning("log.witness_failed", witness=witness.name, status=status)
