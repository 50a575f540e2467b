"""Domain types shared by broker, cockpit and connectors. Imports only stdlib and msgspec."""

from einmal.domain.idnr import InvalidIdNrError, is_valid_idnr, validate_idnr
from einmal.domain.proofs import ProofType

__all__ = ["InvalidIdNrError", "ProofType", "is_valid_idnr", "validate_idnr"]
