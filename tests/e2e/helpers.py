"""Small helpers shared by the end-to-end tests."""

from typing import Any

ELTERNGELD = "elterngeldstelle-bremen"
FAMILIENKASSE = "familienkasse"
NAMENSDIENST = "standesamt-namensdienst-bremen"
UVO = "unterhaltsvorschussstelle-hamburg"


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:einmal:problem:{slug}", body
    assert body["status"] == status
    return body


def birth_request(demo: Any, purpose: str = "elterngeld-antrag") -> dict[str, Any]:
    child = demo.citizen("elfe", "child")
    return {"proof_type": "birth", "subject": child["idnr"], "purpose": purpose,
            "parameters": {"place_of_birth": child["place_of_birth"],
                           "birth_date": child["birth_date"]}}
