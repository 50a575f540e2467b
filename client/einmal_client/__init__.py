"""Einmal's client side, installable on its own (``pip install ./client``): what an online
service, a citizen's tool or an auditor needs, without the server.

* ``einmal_client.client``  typed async clients: ``ServiceClient`` (proofs), ``CitizenClient``
* ``einmal_client.errors``  the client's error hierarchy (problem+json mapped to exceptions)
* ``einmal_client.tlog``    RFC 9162 Merkle trees and proofs, C2SP signed notes (pure, offline)
* ``einmal_client.audit``   auditors: export a bundle of the transfer log, verify it offline

It imports nothing of the server: the server's kernel (``einmal``) imports ``tlog`` from here,
so that broker, cockpit and every verifier share one implementation of the log's maths.
"""

__version__ = "0.1.0"
