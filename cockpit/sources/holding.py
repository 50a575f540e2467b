"""What the desk holds per web session, in this process's memory only (issue 15 §4).

Keyed by HMAC-SHA256(a secret made at start, session id): the session id itself is never
kept. A session's answers go when it ends (``expires_at``), at ``drop`` (logout), or when more
than ``max_sessions`` are held (the least recently used first). Expired ones are swept on
access. Nothing is written anywhere.
"""

import asyncio
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cockpit.sources.model import SessionAnswers

__all__ = ["Holding", "Slot"]

_SWEEP_EVERY_S = 5.0


@dataclass(slots=True)
class Slot:
    """One session's answers and the work still running for it (late sources)."""

    answers: SessionAnswers
    #: which query the result belongs to: a late answer of an earlier one is not folded in
    generation: int = 0
    tasks: set["asyncio.Task[Any]"] = field(default_factory=set)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()


class Holding:
    def __init__(self, *, max_sessions: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        if max_sessions < 1:
            msg = "max_sessions must be at least 1"
            raise ValueError(msg)
        self._secret = os.urandom(32)
        self._slots: OrderedDict[bytes, Slot] = OrderedDict()
        self._max = max_sessions
        self._clock = clock
        self._swept = 0.0

    def __len__(self) -> int:
        return len(self._slots)

    def _ref(self, session_id: str) -> bytes:
        return hmac.digest(self._secret, session_id.encode(), hashlib.sha256)

    def _sweep(self, now: float) -> None:
        if now - self._swept < _SWEEP_EVERY_S:
            return
        self._swept = now
        for ref in [r for r, s in self._slots.items() if s.answers.expires_at <= now]:
            self._slots.pop(ref).cancel()

    def get(self, session_id: str) -> Slot | None:
        """The session's slot, if held and not expired (then the most recently used)."""
        now = self._clock()
        self._sweep(now)
        ref = self._ref(session_id)
        slot = self._slots.get(ref)
        if slot is None:
            return None
        if slot.answers.expires_at <= now:
            self._slots.pop(ref).cancel()
            return None
        self._slots.move_to_end(ref)
        return slot

    def put(self, session_id: str, slot: Slot) -> None:
        """Hold ``slot`` for the session; the least recently used go beyond the bound."""
        ref = self._ref(session_id)
        old = self._slots.pop(ref, None)
        if old is not None and old is not slot:
            old.cancel()
        self._slots[ref] = slot
        while len(self._slots) > self._max:
            _, evicted = self._slots.popitem(last=False)
            evicted.cancel()

    def drop(self, session_id: str) -> None:
        slot = self._slots.pop(self._ref(session_id), None)
        if slot is not None:
            slot.cancel()

    def clear(self) -> None:
        for slot in self._slots.values():
            slot.cancel()
        self._slots.clear()
