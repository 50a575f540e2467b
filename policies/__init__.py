"""Policies: declarative TOML documents, one per online service, saying which proofs the
service may fetch, for which purpose, on which legal basis, and which data fields
(minimisation). Onboarding a service or a Land is a new document, not new code.

Load once at start-up with ``load_policies(directory)``; ask the returned ``PolicySet``.
``check_directory`` lists every problem for ``einmal policies check``.

Errors (every message names file, field path and problem: ``FILE: FIELD: problem``):

* PolicyError
  x PolicySyntaxError       the file cannot be read or is not valid TOML
  x PolicySchemaError       unknown, missing or wrongly typed field (from msgspec)
  x PolicyRuleError         well-formed but breaks a rule: a data field the proof does not
                            carry, duplicate purpose, unknown Land, private or unusable key
  x DuplicateServiceError   the same service id in two documents
  x PolicyDirectoryError    the directory is missing, not a directory, or empty
"""

from einmal.domain.policy import LANDS, Jwk, Permission, PolicyDocument
from policies._errors import (
    DuplicateServiceError,
    PolicyDirectoryError,
    PolicyError,
    PolicyRuleError,
    PolicySchemaError,
    PolicySyntaxError,
)
from policies._loader import (
    DOCUMENTS_DIR,
    PolicySet,
    check_directory,
    load_policies,
    load_policy_file,
)

__all__ = [
    "DOCUMENTS_DIR",
    "LANDS",
    "DuplicateServiceError",
    "Jwk",
    "Permission",
    "PolicyDirectoryError",
    "PolicyDocument",
    "PolicyError",
    "PolicyRuleError",
    "PolicySchemaError",
    "PolicySet",
    "PolicySyntaxError",
    "check_directory",
    "load_policies",
    "load_policy_file",
]
