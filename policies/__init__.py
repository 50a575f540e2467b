"""Policies: declarative documents (TOML) saying which online service may fetch which proof,
for which purpose, on which legal basis, with which fields.

Errors:
* PolicyError   a document is invalid (message: ``FILE: FIELD: problem``)
"""

from policies._loader import (
    PolicyError,
    PolicySet,
    check_directory,
    load_policies,
    load_policy_file,
)
from policies._model import Jwk, Permission, PolicyDocument

__all__ = ["Jwk", "Permission", "PolicyDocument", "PolicyError", "PolicySet",
           "check_directory", "load_policies", "load_policy_file"]
