"""Transfer ids (UUIDv7, RFC 9562) and the SQLite time format of the writer thread."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from cockpit.leaf import _time
from einmal.ids import uuid4, uuid7
from einmal.store import sqlite_time


@given(st.floats(min_value=0, max_value=2**47 / 1000, allow_nan=False))
def test_uuid7_is_a_version_7_rfc_uuid_with_the_millisecond(now: float) -> None:
    value = uuid7(now)
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == int(now * 1000)


def test_uuid7_sorts_by_time_and_is_random_within_a_millisecond() -> None:
    assert uuid7(1000.0) < uuid7(1000.002) < uuid7(2000.0)
    assert len({uuid7(1000.0) for _ in range(1000)}) == 1000


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), None])))
def test_sqlite_time_is_what_sqlalchemy_stores(value: datetime) -> None:
    stored = DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    utc = value.astimezone(UTC) if value.tzinfo is not None else value
    assert sqlite_time(value) == stored(utc)
    # the leaf's RFC 3339 form (decision 0009) keeps its exact shape
    if value.tzinfo is not None:
        assert _time(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = [uuid4() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
