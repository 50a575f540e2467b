"""The witness's state: per log (origin), the checkpoint it last cosigned. SQLite in its data
dir by default, PostgreSQL when given a URL; its own table, ``witness_logs``.

The one write is a compare-and-swap: the row changes only if it still holds what the request
was checked against (size, root and cosignature time), in one statement and one transaction.
Two requests checked against the same state cannot both win, so the witness never rolls back
(tlog-witness: check and persist atomically). Driver errors become ``StoreError``.
"""

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from einmal.store import StoreError, dispose, writer

__all__ = ["LogState", "WitnessStore", "async_url", "logs_table"]

TABLE = "witness_logs"


def logs_table(metadata: MetaData, name: str = TABLE) -> Table:
    return Table(
        name, metadata,
        Column("origin", Text, primary_key=True),
        Column("size", BigInteger, nullable=False),
        Column("root", LargeBinary(32), nullable=False),
        #: POSIX seconds of the cosignature given for this checkpoint (never goes back)
        Column("cosigned_at", BigInteger, nullable=False),
        #: the checkpoint note: its text, the log's verified signatures, the cosignature
        Column("checkpoint", Text, nullable=False),
    )


@dataclass(frozen=True, slots=True)
class LogState:
    origin: str
    size: int
    root: bytes
    cosigned_at: int
    checkpoint: str


def async_url(url: str) -> str:
    """A plain database URL with the async driver the witness uses."""
    for plain, driver in (("postgresql://", "postgresql+asyncpg://"),
                          ("postgres://", "postgresql+asyncpg://"),
                          ("sqlite:///", "sqlite+aiosqlite:///")):
        if url.startswith(plain):
            return driver + url[len(plain):]
    return url


def _store_error(exc: BaseException) -> StoreError:
    return StoreError(f"witness store failed: {type(exc).__name__}")


class WitnessStore:
    def __init__(self, engine: AsyncEngine, table: Table | None = None) -> None:
        self._engine = engine
        self._table = table if table is not None else logs_table(MetaData())

    @property
    def table(self) -> Table:
        return self._table

    async def create_schema(self) -> None:
        """Create the table if it is missing (one table, no migrations yet: decision 0026)."""
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(self._table.metadata.create_all, tables=[self._table])
        except (SQLAlchemyError, OSError) as exc:
            raise _store_error(exc) from exc

    async def latest(self, origin: str) -> LogState | None:
        t = self._table
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(select(t).where(t.c.origin == origin))).first()
        except (SQLAlchemyError, OSError) as exc:
            raise _store_error(exc) from exc
        if row is None:
            return None
        return LogState(origin=row.origin, size=row.size, root=bytes(row.root),
                        cosigned_at=row.cosigned_at, checkpoint=row.checkpoint)

    async def compare_and_swap(self, expected: LogState | None, new: LogState) -> bool:
        """Store ``new`` if the log's row is still ``expected`` (None: there is no row yet).
        False if another request changed it first (nothing is written then)."""
        t = self._table
        values = {"size": new.size, "root": new.root, "cosigned_at": new.cosigned_at,
                  "checkpoint": new.checkpoint}
        try:
            async with writer(self._engine), self._engine.begin() as conn:
                if expected is None:
                    await conn.execute(insert(t).values(origin=new.origin, **values))
                    return True
                result = await conn.execute(
                    update(t).where(t.c.origin == expected.origin, t.c.size == expected.size,
                                    t.c.root == expected.root,
                                    t.c.cosigned_at == expected.cosigned_at).values(**values))
                return result.rowcount == 1
        except IntegrityError:  # another request created the row first
            return False
        except (SQLAlchemyError, OSError) as exc:
            raise _store_error(exc) from exc

    async def ping(self) -> None:
        await self.latest("")

    async def aclose(self) -> None:
        await dispose(self._engine)
