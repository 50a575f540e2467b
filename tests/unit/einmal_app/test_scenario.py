"""run_scenario's failure paths that need no server."""

import io
import socket

import pytest
from rich.console import Console

from einmal_app.scenario import run_scenario

CREDENTIALS = {"services": [], "citizens": []}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_unknown_scenario_is_a_value_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'.*elfe.*uvo.*dsc"):
        await run_scenario("nope", "http://127.0.0.1:1", CREDENTIALS, console=Console())


@pytest.mark.parametrize("name", ["elfe", "uvo", "dsc"])
async def test_no_server_is_one_clear_line_and_false(name: str) -> None:
    url = closed_port_url()
    credentials = {
        "services": [], "citizens": [
            {"idnr": "86095742719", "given_names": "A", "family_name": "B", "role": role,
             "family": family, "home_land": "HB", "birth_date": "2026-10-12",
             "place_of_birth": "04011000"}
            for family in ("elfe", "uvo") for role in ("parent", "parent", "child")]}
    out = io.StringIO()
    ok = await run_scenario(name, url, credentials, console=Console(file=out, width=200))
    assert ok is False
    assert f"no Einmal server at {url}" in out.getvalue()
    assert "Traceback" not in out.getvalue()
