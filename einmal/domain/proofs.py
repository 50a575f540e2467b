"""Proof types and the data fields each one can carry (the vocabulary of policies)."""

import enum

__all__ = ["PROOF_FIELDS", "ProofType"]


class ProofType(enum.StrEnum):
    """A kind of proof that a register can provide."""

    BIRTH = "birth"
    CUSTODY = "custody"
    INCOME = "income"


#: Top-level fields of each proof's data. Policies allow a subset (minimisation);
#: connectors must produce exactly these keys (a test pins it).
PROOF_FIELDS: dict[ProofType, frozenset[str]] = {
    ProofType.BIRTH: frozenset({
        "register_number",
        "child_given_names",
        "child_family_name",
        "child_sex",
        "birth_date",
        "birth_place",
        "birth_place_ags",
        "parents",
    }),
    ProofType.CUSTODY: frozenset({
        "as_of",
        "custody",          # "joint" | "sole" | "none"
        "holders",          # [{idnr, given_names, family_name, role}]
        "basis",            # "marriage_at_birth" | "declaration" | "marriage" | "court" | "law"
        "since",
        "register_land",
    }),
    ProofType.INCOME: frozenset({
        "period_from",
        "period_to",
        "months",           # [{month: "YYYY-MM", gross_eur: "1234.56", employment: ...}]
        "total_gross_eur",
    }),
}
