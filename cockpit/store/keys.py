"""Citizen-key maintenance for the master-key rotation (``einmal keys rotate cockpit-master``).

Runs offline - the cockpit stopped - through SQLAlchemy on either database, so it is not part
of ``CockpitStore``: nothing hot, one backend is enough. The driver's errors propagate as they
are (the CLI names them in its one-line message).
"""

from collections.abc import Callable

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.tables import CITIZEN_KEY

__all__ = ["count_citizen_keys", "rewrap_keys"]


async def count_citizen_keys(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(CITIZEN_KEY)))
                   .scalar_one())


async def rewrap_keys(engine: AsyncEngine, rewrap: Callable[[bytes], bytes | None], *,
                      batch: int = 500,
                      progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Replace every wrapped key by ``rewrap(wrapped)`` (None: leave it as it is), one
    transaction per ``batch`` keys in key order; an exception from ``rewrap`` rolls its batch
    back and stops. Returns (replaced, left)."""
    replaced = left = 0
    after = ""
    change = (update(CITIZEN_KEY).where(CITIZEN_KEY.c.citizen_ref == bindparam("ref"))
              .values(wrapped_key=bindparam("wrapped")))
    while True:
        async with engine.begin() as conn:
            rows = (await conn.execute(
                select(CITIZEN_KEY.c.citizen_ref, CITIZEN_KEY.c.wrapped_key)
                .where(CITIZEN_KEY.c.citizen_ref > after).order_by(CITIZEN_KEY.c.citizen_ref)
                .limit(batch))).all()
            if not rows:
                return replaced, left
            updates = []
            for ref, wrapped in rows:
                new = rewrap(wrapped)
                if new is None:
                    left += 1
                else:
                    updates.append({"ref": ref, "wrapped": new})
            if updates:
                await conn.execute(change, updates)
            replaced += len(updates)
            after = rows[-1].citizen_ref
        if progress is not None:
            progress(len(rows))
