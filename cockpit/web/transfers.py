"""Transfer detail: who received what (categories, never values), from where, when, why, on
which basis, how long it is kept, where to complain, and its place in the signed log - with a
receipt to download (the entry, its inclusion proof and the cosigned checkpoint in one C2SP
tlog-proof file, decision 0030)."""

import re
from typing import Any

import httpx
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from cockpit.web.api import ApiError
from cockpit.web.core import WebView
from cockpit.web.session import WebSession

__all__ = ["ROUTES", "SUPERVISORY_AUTHORITIES", "supervisory_authority"]

#: a receipt is a few KB; a bigger answer is not one
_MAX_RECEIPT_BYTES = 256 * 1024

_TRANSFER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")

#: Land of the receiving authority -> data protection supervisory authority (name, website).
#: Federal bodies (DE, e.g. the Familienkasse) answer to the BfDI.
SUPERVISORY_AUTHORITIES: dict[str, tuple[str, str]] = {
    "DE": ("Die Bundesbeauftragte für den Datenschutz und die Informationsfreiheit (BfDI)",
           "https://www.bfdi.bund.de"),
    "BW": ("Der Landesbeauftragte für den Datenschutz und die Informationsfreiheit "
           "Baden-Württemberg", "https://www.baden-wuerttemberg.datenschutz.de"),
    "BY": ("Der Bayerische Landesbeauftragte für den Datenschutz", "https://www.datenschutz-bayern.de"),
    "BE": ("Berliner Beauftragte für Datenschutz und Informationsfreiheit",
           "https://www.datenschutz-berlin.de"),
    "BB": ("Die Landesbeauftragte für den Datenschutz und für das Recht auf Akteneinsicht "
           "Brandenburg", "https://www.lda.brandenburg.de"),
    "HB": ("Die Landesbeauftragte für Datenschutz und Informationsfreiheit Bremen",
           "https://www.datenschutz.bremen.de"),
    "HH": ("Der Hamburgische Beauftragte für Datenschutz und Informationsfreiheit (HmbBfDI)",
           "https://datenschutz-hamburg.de"),
    "HE": ("Der Hessische Beauftragte für Datenschutz und Informationsfreiheit",
           "https://datenschutz.hessen.de"),
    "MV": ("Der Landesbeauftragte für Datenschutz und Informationsfreiheit "
           "Mecklenburg-Vorpommern", "https://www.datenschutz-mv.de"),
    "NI": ("Der Landesbeauftragte für den Datenschutz Niedersachsen", "https://www.lfd.niedersachsen.de"),
    "NW": ("Landesbeauftragte für Datenschutz und Informationsfreiheit Nordrhein-Westfalen",
           "https://www.ldi.nrw.de"),
    "RP": ("Der Landesbeauftragte für den Datenschutz und die Informationsfreiheit "
           "Rheinland-Pfalz", "https://www.datenschutz.rlp.de"),
    "SL": ("Unabhängiges Datenschutzzentrum Saarland", "https://www.datenschutz.saarland.de"),
    "SN": ("Die Sächsische Datenschutz- und Transparenzbeauftragte",
           "https://www.datenschutz.sachsen.de"),
    "ST": ("Der Landesbeauftragte für den Datenschutz Sachsen-Anhalt",
           "https://datenschutz.sachsen-anhalt.de"),
    "SH": ("Unabhängiges Landeszentrum für Datenschutz Schleswig-Holstein",
           "https://www.datenschutzzentrum.de"),
    "TH": ("Der Thüringer Landesbeauftragte für den Datenschutz und die Informationsfreiheit",
           "https://www.tlfdi.de"),
}


def supervisory_authority(land: str) -> tuple[str, str]:
    return SUPERVISORY_AUTHORITIES.get(land, SUPERVISORY_AUTHORITIES["DE"])


@get("/transfers/{transfer_id:str}", name="transfer", include_in_schema=False)
async def transfer_detail(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                          login: NamedDependency[WebSession],
                          transfer_id: FromPath[str]) -> Response[Any]:
    if not _TRANSFER_ID.fullmatch(transfer_id):
        raise NotFoundException
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    # Only the citizen's own list is searched: another citizen's transfer is "not found".
    item = await web.api.transfer(login.access_token, transfer_id)
    if item is None:
        raise NotFoundException
    authority, authority_url = supervisory_authority(item["service"].get("land", "DE"))
    categories = [(name, web.catalogs.has(f"field.{name}")) for name in item["data_categories"]]
    return web.page(request, "transfer.html", session=login, item=item,
                    categories=categories, authority=authority, authority_url=authority_url,
                    log_entry_url=f"{web.settings.cockpit_base_url}/v1/log/entries/{item['id']}",
                    checkpoint_url=f"{web.settings.cockpit_base_url}/v1/log/checkpoint",
                    receipt_url=f"/transfers/{item['id']}/receipt")


@get("/transfers/{transfer_id:str}/receipt", name="transfer_receipt", include_in_schema=False)
async def transfer_receipt(web: NamedDependency[WebView], login: NamedDependency[WebSession],
                           transfer_id: FromPath[str]) -> Response[bytes]:
    """The citizen's receipt, fetched from the cockpit API with the session's token (so it is
    authorised there, as every page is: only a transfer of the citizen's own list)."""
    if not _TRANSFER_ID.fullmatch(transfer_id):
        raise NotFoundException
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    url = f"{web.api.cockpit_url}/v1/me/transfers/{transfer_id}/receipt"
    try:
        response = await web.api.http.get(
            url, headers={"authorization": f"Bearer {login.access_token}"})
    except httpx.HTTPError as exc:
        raise ApiError(0) from exc
    if response.status_code != 200 or len(response.content) > _MAX_RECEIPT_BYTES:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        refused = ApiError(response.status_code, problem if isinstance(problem, dict) else None)
        await web.on_api_error(refused, login)
        raise refused
    return Response(content=response.content, media_type="text/plain", headers={
        "content-disposition": response.headers.get(
            "content-disposition", 'attachment; filename="einmal-receipt.tlog-proof"'),
        "cache-control": "no-store"})


ROUTES = [transfer_detail, transfer_receipt]
