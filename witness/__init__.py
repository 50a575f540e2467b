"""The witness: a C2SP tlog-witness that cosigns a transparency log's checkpoints (tlog-cosignature
v1) only if each is consistent with the last one it cosigned. Its own process, key, state and
database, meant to be run by someone other than the log's operator (decision 0026).

    errors.py    why a checkpoint gets no cosignature (the HTTP status of each)
    protocol.py  the add-checkpoint request: parse, check the log's signature and consistency
    store.py     the latest cosigned checkpoint per log, compare-and-swap (SQLite, PostgreSQL)
    identity.py  the witness's name and Ed25519 key in its data dir
    service.py   ``Witness``: one add-checkpoint request from bytes to a cosignature line
    app.py       ``WitnessComponent`` (router, start, stop) and a stand-alone Litestar app
"""

from witness.app import WitnessComponent, WitnessConfig, create_app
from witness.errors import WitnessConfigError, WitnessError

__all__ = ["WitnessComponent", "WitnessConfig", "WitnessConfigError", "WitnessError",
           "create_app"]
