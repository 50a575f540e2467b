"""The desk's holding (issue 15 §4): per session, in memory, keyed so that the session id is
not kept, bounded, gone at the session's end or logout; and its bounds on an answer."""

import asyncio
from datetime import UTC, datetime

import pytest

from cockpit.sources.desk import MAX_ENTRIES, _check_entries, _TooMuchError
from cockpit.sources.holding import Holding, Slot
from cockpit.sources.model import SessionAnswers
from einmal_client.sources import InvalidSourceAnswerError, SessionKey, SourceEntry


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _slot(expires_at: float) -> Slot:
    return Slot(SessionAnswers(session_key=SessionKey(), expires_at=expires_at))


class TestHolding:
    def test_the_session_id_itself_is_not_kept(self) -> None:
        holding = Holding(clock=Clock())
        holding.put("the-session-id", _slot(2_000))
        keys = list(holding._slots)  # the holding's only index
        assert len(keys) == 1
        assert b"the-session-id" not in keys[0]
        assert len(keys[0]) == 32  # HMAC-SHA256

    def test_an_expired_session_is_gone_on_access(self) -> None:
        clock = Clock()
        holding = Holding(clock=clock)
        holding.put("a", _slot(1_010))
        assert holding.get("a") is not None
        clock.now = 1_010
        assert holding.get("a") is None
        assert len(holding) == 0

    def test_expired_sessions_are_swept_when_others_are_used(self) -> None:
        clock = Clock()
        holding = Holding(clock=clock)
        holding.put("old", _slot(1_001))
        holding.put("current", _slot(5_000))
        clock.now = 1_100
        assert holding.get("current") is not None
        assert len(holding) == 1

    def test_the_least_recently_used_go_beyond_the_bound(self) -> None:
        holding = Holding(max_sessions=2, clock=Clock())
        holding.put("a", _slot(9_000))
        holding.put("b", _slot(9_000))
        assert holding.get("a") is not None  # a is now the most recently used
        holding.put("c", _slot(9_000))
        assert holding.get("b") is None
        assert holding.get("a") is not None
        assert holding.get("c") is not None

    async def test_drop_forgets_and_stops_late_work(self) -> None:
        holding = Holding(clock=Clock())
        slot = _slot(9_000)
        task = asyncio.create_task(asyncio.sleep(10))
        slot.tasks.add(task)
        holding.put("a", slot)
        holding.drop("a")
        assert holding.get("a") is None
        await asyncio.sleep(0)
        assert task.cancelled()

    def test_a_bound_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            Holding(max_sessions=0)


def _entries(count: int, *, same_id: bool = False) -> tuple[SourceEntry, ...]:
    now = datetime.now(UTC)
    return tuple(SourceEntry(id="e" if same_id else f"e{n}", occurred_at=now, source="s")
                 for n in range(count))


class TestAnswerBounds:
    def test_more_than_the_bound_is_too_much(self) -> None:
        _check_entries(_entries(MAX_ENTRIES))
        with pytest.raises(_TooMuchError):
            _check_entries(_entries(MAX_ENTRIES + 1))

    def test_an_entry_id_twice_is_refused(self) -> None:
        with pytest.raises(InvalidSourceAnswerError):
            _check_entries(_entries(2, same_id=True))
