"""No IdNr at rest (issue 13 §3, decision 0031).

* A real demo server plays both stories (``einmal_app.scenario`` elfe and uvo), delivers
  every transfer record, stops; then every file of its data dir (WAL included) is read byte by
  byte for each demo citizen's IdNr and names - no hit. On PostgreSQL (EINMAL_TEST_DATABASE_URL)
  every text, JSON and bytea column of every table too. Folders are owner-only, SQLite files
  0600.
* A store from before migration 0004 holds plain records: after ``einmal db upgrade`` and
  ``einmal broker shred`` its file holds none (sealed, or reduced to the protocol entry; the
  freed bytes zeroed).
* ``einmal broker shred``: one line per table; bad input is a clear error, no traceback.
"""

import asyncio
import io
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from alembic import command
from rich.console import Console
from sqlalchemy import Connection, text

from broker.protocol import OutboxSeal, Pseudonyms
from broker.store import SqliteBrokerStore, StoredConsent
from einmal.domain.transfer import Concerned, Outcome, ServiceRef, TransferRecord
from einmal.keys import load_or_create_secret
from einmal.migrate import _config
from einmal.store import create_engine, dispose
from einmal_app.scenario import run_scenario
from tests.conftest import TEST_DATABASE_URL, LiveServer
from tests.waiting import wait_until

EINMAL = [sys.executable, "-m", "einmal_app"]
#: The demo's published population (GET /demo/credentials serves the same list): the one file
#: of the data dir that names the demo citizens by design. It exists only with --demo.
DEMO_FIXTURE = "demo-credentials.json"
_LETTER = rb"A-Za-z\xc0-\xff"


@dataclass(frozen=True)
class Needle:
    what: str
    value: bytes
    pattern: re.Pattern[bytes]


def _needles(citizens: list[dict[str, Any]]) -> list[Needle]:
    """Each demo citizen's IdNr, names and name parts; a name only as a whole word (a short
    given name is three bytes: inside another word it is no name)."""
    found: list[Needle] = []
    for citizen in citizens:
        who = f"{citizen['family']} {citizen['role']}"
        idnr = citizen["idnr"].encode()
        found.append(Needle(f"IdNr of {who}", idnr, re.compile(re.escape(idnr))))
        names = {citizen["given_names"], citizen["family_name"],
                 *citizen["given_names"].split()}
        for name in sorted(names):
            raw = name.encode()
            found.append(Needle(f"name {name!r} of {who}", raw, re.compile(
                rb"(?<![" + _LETTER + rb"])" + re.escape(raw) + rb"(?![" + _LETTER + rb"])")))
    return found


def _hits(where: str, data: bytes, needles: list[Needle]) -> list[str]:
    hits = []
    for needle in needles:
        for match in needle.pattern.finditer(data):
            start = max(0, match.start() - 24)
            hits.append(f"{where} @ {match.start()}: {needle.what}: "
                        f"{data[start:match.end() + 24]!r}")
    return hits


def _files(folder: Path) -> Iterator[Path]:
    return (path for path in sorted(folder.rglob("*")) if path.is_file())


def _scan_files(folder: Path, needles: list[Needle], *, skip: frozenset[str] = frozenset(),
                ) -> list[str]:
    hits: list[str] = []
    for path in _files(folder):
        if path.name not in skip:
            hits += _hits(str(path.relative_to(folder)), path.read_bytes(), needles)
    return hits


async def _scan_database(url: str, needles: list[Needle]) -> list[str]:
    """Every text, JSON and bytea column of every table of the current schema."""
    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    hits: list[str] = []
    try:
        async with engine.connect() as conn:
            columns = (await conn.execute(text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type IN ('text', "
                "'character varying', 'character', 'json', 'jsonb', 'bytea') "
                "ORDER BY table_name, ordinal_position"))).all()
            tables: dict[str, list[tuple[str, str]]] = {}
            for table, column, kind in columns:
                tables.setdefault(table, []).append((column, kind))
            for table, cols in tables.items():
                listed = ", ".join(
                    f'"{c}"' if kind == "bytea" else f'"{c}"::text' for c, kind in cols)
                rows = await conn.execute(text(
                    f'SELECT {listed} FROM "{table}"'))  # noqa: S608 - names from the catalogue
                for row in rows:
                    for (column, _), value in zip(cols, row, strict=True):
                        if value is not None:
                            raw = bytes(value) if not isinstance(value, str) else value.encode()
                            hits += _hits(f"{table}.{column}", raw, needles)
    finally:
        await dispose(engine)
    return hits


def _outbox_empty(live: LiveServer) -> bool:
    broker = live.component("broker")
    future = asyncio.run_coroutine_threadsafe(broker.store.outbox_status(), live.loop)
    pending, _ = future.result(10)
    return pending == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_both_stories_leave_no_idnr_or_name_at_rest(
        start_live_server: Callable[..., LiveServer]) -> None:
    live = start_live_server()
    credentials = json.loads((live.data_dir / DEMO_FIXTURE).read_text())
    for story in ("elfe", "uvo"):
        console = Console(file=io.StringIO(), width=120)
        assert asyncio.run(run_scenario(story, live.base_url, credentials, console=console)), (
            story, console.file.getvalue())  # type: ignore[attr-defined]  # a StringIO
    wait_until(lambda: _outbox_empty(live), what="every transfer record delivered")
    sweeper = live.component("broker").retention_sweeper
    assert sweeper is not None and sweeper.running  # started with the broker
    published = httpx.get(f"{live.base_url}/demo/credentials", timeout=10).json()
    live.stop()

    citizens = [c for c in credentials["citizens"] if c.get("family")]
    assert {c["family"] for c in citizens} == {"elfe", "uvo"} and len(citizens) == 5
    needles = _needles(citizens)
    data_dir = live.data_dir
    # the demo fixture is the published population, nothing the server learned meanwhile
    assert credentials["citizens"] == published["citizens"]
    hits = _scan_files(data_dir, needles, skip=frozenset({DEMO_FIXTURE}))
    if TEST_DATABASE_URL:
        hits += asyncio.run(_scan_database(TEST_DATABASE_URL, needles))
    assert not hits, "citizen data at rest:\n" + "\n".join(hits)

    files = [p.name for p in _files(data_dir)]
    if not TEST_DATABASE_URL:
        assert {"broker.db", "cockpit.db"} <= set(files)
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "keys") == 0o700
    for path in _files(data_dir):
        if re.search(r"\.db(-wal|-shm)?$|\.key$|\.token$|\.jwk\.json$", path.name):
            assert _mode(path) == 0o600, path


# -- a store from before migration 0004 ---------------------------------------------------------
CHILD, PARENT = "84953625010", "81709656328"
T_OLD = datetime.now(UTC) - timedelta(days=3 * 365)


def _old_record(n: int, at: datetime) -> TransferRecord:
    return TransferRecord(
        id=f"00000000-0000-7000-8000-{n:012d}", occurred_at=at, outcome=Outcome.DELIVERED,
        proof_type="birth", purpose="p", subject=CHILD,
        service=ServiceRef(id="svc", name="S", authority="A", land="HB"),
        concerned=(Concerned(idnr=CHILD, relation="self"),
                   Concerned(idnr=PARENT, relation="concerned")))


def _einmal(*args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, on its own SQLite files (whatever the suite's
    database: no EINMAL_* variable reaches it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EINMAL_")}
    return subprocess.run([*EINMAL, *args], capture_output=True, text=True, timeout=60,
                          env=env, input=answer, check=False)


def _legacy_store(data_dir: Path) -> dict[int, bytes]:
    """broker.db at revision 0003 with plain records: delivered 1 (three years ago), 2
    (lately), pending 3 - as an older Einmal left them."""
    url = f"sqlite+aiosqlite:///{data_dir / 'broker.db'}"
    now = datetime.now(UTC)
    records = {1: _old_record(1, T_OLD), 2: _old_record(2, now), 3: _old_record(3, now)}
    plain = {n: msgspec.json.encode(r) for n, r in records.items()}

    def build(connection: Connection) -> None:
        command.upgrade(_config("broker", connection), "0003")
        for n, record in records.items():
            connection.execute(text(
                "INSERT INTO broker_transfer (id, created_at, record, delivered_at, attempts) "
                "VALUES (:id, :at, :record, :delivered, 0)"),
                {"id": record.id, "at": record.occurred_at, "record": plain[n],
                 "delivered": record.occurred_at if n < 3 else None})

    async def go() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(build)
        finally:
            await dispose(engine)

    asyncio.run(go())
    load_or_create_secret(data_dir / "keys", "broker-pseudonym")
    return plain


def test_a_store_from_before_0004_keeps_no_idnr_after_upgrade_and_shred(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    plain = _legacy_store(data_dir)
    assert CHILD.encode() in (data_dir / "broker.db").read_bytes()

    upgraded = _einmal("db", "upgrade", "--data-dir", str(data_dir), "--components", "broker")
    assert upgraded.returncode == 0, upgraded.stderr
    shredded = _einmal("broker", "shred", "--yes", "--data-dir", str(data_dir))
    assert shredded.returncode == 0, shredded.stderr
    lines = shredded.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("broker_transfer: 1 protocol entries delivered before ")
    assert lines[0].endswith("deleted (3 rows from before migration 0004 sealed)")

    needles = [Needle(f"IdNr {idnr}", idnr.encode(), re.compile(idnr.encode()))
               for idnr in (CHILD, PARENT)]
    assert _scan_files(data_dir, needles) == []

    async def pending() -> list[tuple[int, bytes]]:
        keys = data_dir / "keys"
        seal = OutboxSeal(key=load_or_create_secret(keys, "broker-outbox"),
                          pseudonyms=Pseudonyms(load_or_create_secret(keys, "broker-pseudonym")))
        engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'broker.db'}")
        store = SqliteBrokerStore(engine, seal)
        try:
            return await store.pending_transfers(10)
        finally:
            await store.aclose()
            await dispose(engine)

    assert asyncio.run(pending()) == [(3, plain[3])]  # the pending one still delivers


# -- the operator command ------------------------------------------------------------------------
class TestBrokerShred:
    def test_a_bad_date_is_one_clear_error(self, tmp_path: Path) -> None:
        result = _einmal("broker", "shred", "--before", "yesterday", "--yes",
                         "--data-dir", str(tmp_path))
        assert result.returncode == 2
        assert "--before" in result.stderr and "YYYY-MM-DD" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_date_within_two_years_is_refused(self, tmp_path: Path) -> None:
        load_or_create_secret(tmp_path / "keys", "broker-pseudonym")
        last_year = (datetime.now(UTC) - timedelta(days=365)).date().isoformat()
        result = _einmal("broker", "shred", "--before", last_year, "--yes",
                         "--data-dir", str(tmp_path))
        assert result.returncode == 2
        assert "§ 9 (3) IDNrG" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "broker.db").exists()  # refused before anything was opened

    def test_a_data_dir_without_a_broker_is_refused(self, tmp_path: Path) -> None:
        result = _einmal("broker", "shred", "--yes", "--data-dir", str(tmp_path))
        assert result.returncode == 1
        assert "no broker data" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_store_that_is_behind_is_named_not_a_traceback(self, tmp_path: Path) -> None:
        _legacy_store(tmp_path)  # at 0003
        result = _einmal("broker", "shred", "--yes", "--data-dir", str(tmp_path))
        assert result.returncode == 1
        assert "cannot shred" in result.stderr and "einmal db upgrade" in result.stderr
        assert "Traceback" not in result.stderr

    def test_without_yes_it_asks_and_a_no_changes_nothing(self, tmp_path: Path) -> None:
        _legacy_store(tmp_path)
        before = (tmp_path / "broker.db").read_bytes()
        result = _einmal("broker", "shred", "--data-dir", str(tmp_path), answer="n\n")
        assert result.returncode == 1
        assert "This cannot be undone" in result.stdout
        assert (tmp_path / "broker.db").read_bytes() == before

    def test_it_reports_one_line_per_table(self, tmp_path: Path) -> None:
        keys = tmp_path / "keys"
        seal = OutboxSeal(key=load_or_create_secret(keys, "broker-outbox"),
                          pseudonyms=Pseudonyms(load_or_create_secret(keys, "broker-pseudonym")))
        old, now = T_OLD, datetime.now(UTC)

        async def fill() -> None:
            engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}")
            store = SqliteBrokerStore(engine, seal)
            try:
                await store.create_schema()
                for n, at in ((1, old), (2, old), (3, now)):
                    await store.commit_transfer(_old_record(n, at))
                await store.mark_delivered([1, 2], old)  # 3 stays pending
                for consent_id, until in (("ended", old), ("active", now + timedelta(days=9))):
                    await store.add_consent(StoredConsent(
                        id=consent_id, citizen_ref="r", subject_ref="r",
                        subject_masked="84*******10", service_id="svc", proof_types=("birth",),
                        purpose="p", granted_at=old - timedelta(days=1), valid_until=until,
                        max_uses=None, uses=0, revoked_at=None))
                await store.remember_jti("svc", "j", old, old)
                await store.claim_idempotency("svc", "k", "h", old, old + timedelta(days=1))
            finally:
                await store.aclose()
                await dispose(engine)

        asyncio.run(fill())
        result = _einmal("broker", "shred", "--yes", "--data-dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
        counts = {line.split(":")[0]: int(line.split()[1]) for line in result.stdout.splitlines()}
        assert counts == {"broker_transfer": 2, "broker_consent": 1, "broker_idempotency": 1,
                          "broker_assertion_jti": 1, "broker_preview": 0, "broker_bucket": 0}
        again = _einmal("broker", "shred", "--yes", "--data-dir", str(tmp_path))
        assert [int(line.split()[1]) for line in again.stdout.splitlines()] == [0] * 6

