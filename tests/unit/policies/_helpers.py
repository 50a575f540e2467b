"""A valid document to break, one edit per test."""

from pathlib import Path

from einmal.demo_keys import demo_public_jwk

_KEY = demo_public_jwk("familienkasse-test")

GOOD = f"""\
id = "familienkasse-test"
name = "Kindergeld online"
authority = "Familienkasse"
land = "DE"

[[keys]]
kty = "OKP"
crv = "Ed25519"
x = "{_KEY["x"]}"
kid = "{_KEY["kid"]}"

[[permissions]]
proof_type = "birth"
purpose = "kindergeld-antrag"
purpose_text = "Wir prüfen Ihren Antrag auf Kindergeld."
legal_basis = "§ 67 EStG"
consent_required = true
fields = ["child_given_names", "birth_date", "parents"]
retention_days = 2190
"""

PERMISSION = GOOD[GOOD.index("[[permissions]]"):]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
