"""Sources are documents (issue 15 §5): another Land's broker becomes a source of the cockpit by
one TOML document with its URL, key and name - no code.

A second broker runs in a process of its own (``einmal serve --demo --components broker``,
own data dir, port and keys) and fetches a birth proof through the demo's registers. The demo
cockpit starts with the shipped source documents plus ``broker-niedersachsen.toml`` naming
that broker; the keys are exchanged as an operator would (the cockpit's public token key into
the broker's keys dir, the broker's public answer key into the cockpit's). A citizen asks the
cockpit: the other broker is listed by its document's name and reports the transfer it
relayed, under its transfer id, signed with its own key.
"""

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.source import ANSWER_KEY
from cockpit.sources import DOCUMENTS_DIR
from einmal.settings import load_settings
from einmal.source_interface import COCKPIT_SOURCES_KEY
from einmal_client.client import CitizenClient, SourceAnswer
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, start_server
from tests.integration.test_broker_source import SecondBroker, _birth, _citizen

NAME = "Vermittlungsstelle Niedersachsen"
KEY_FILE = "broker-niedersachsen.public.json"


def _document(broker: SecondBroker) -> str:
    return (f'[[source]]\nid = "broker:127.0.0.1:{broker.port}"\nname = "{NAME}"\n'
            f'kind = "broker"\ngroup = "Vermittlungsstellen"\n'
            f'url = "{broker.url}/dsc"\nkey_file = "{KEY_FILE}"\n')


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.fixture(name="world", scope="module")
def fx_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port = free_port()
    demo_url = f"http://127.0.0.1:{port}"
    broker = SecondBroker(tmp_path_factory.mktemp("broker-ni"), demo_url)
    sources = tmp_path_factory.mktemp("sources")
    for shipped in DOCUMENTS_DIR.glob("*.toml"):
        shutil.copy(shipped, sources / shipped.name)
    (sources / "broker-niedersachsen.toml").write_text(_document(broker))
    settings = load_settings({}, data_dir=tmp_path_factory.mktemp("demo"), demo=True,
                             simulator_families=60, delivery_interval_s=0.2,
                             database_url=TEST_DATABASE_URL, port=port, sources_dir=sources)
    live: LiveServer | None = None
    try:
        live = start_server(settings)
        broker.wait_live()
        # the key exchange, as two operators do it
        broker_keys = broker.data_dir / "keys"
        _wait_for(broker_keys / f"{ANSWER_KEY}.public.json")
        shutil.copy(broker_keys / f"{ANSWER_KEY}.public.json", live.data_dir / "keys" / KEY_FILE)
        shutil.copy(live.data_dir / "keys" / f"{COCKPIT_SOURCES_KEY}.public.json",
                    broker_keys / f"{COCKPIT_SOURCES_KEY}.public.json")
        child = _citizen(live, "elfe", "child")
        released = _birth(broker.url, child)
        assert released.status_code == 200, released.text
        yield {"live": live, "broker": broker, "child": child,
               "parent": _citizen(live, "elfe", "parent"),
               "transfer_id": released.json()["transfer_id"]}
    finally:
        stderr = broker.stop()
        if live is not None:
            live.stop()
        assert "Traceback" not in stderr, stderr[-3000:]


def _ask(world: dict[str, Any], idnr: str) -> tuple[list[Any], SourceAnswer]:
    live: LiveServer = world["live"]
    source_id = f"broker:127.0.0.1:{world['broker'].port}"

    async def run() -> tuple[list[Any], SourceAnswer]:
        async with await CitizenClient.demo_login(live.base_url, idnr) as citizen:
            offered = await citizen.sources()
            [answer] = await citizen.source_query([source_id], known=offered)
            return offered, answer
    return asyncio.run(run())


def test_the_document_makes_the_other_broker_a_source(world: dict[str, Any]) -> None:
    offered, answer = _ask(world, world["child"]["idnr"])
    listed = {s.id: s for s in offered}
    source_id = f"broker:127.0.0.1:{world['broker'].port}"
    assert listed[source_id].name == NAME
    assert listed[source_id].kind == "broker"
    assert listed[source_id].key is not None
    assert answer.status == "ok", answer.detail
    [entry] = [e for e in answer.entries if e.transfer_id == world["transfer_id"]]
    assert entry.relation == "self"
    assert entry.source == source_id


def test_the_parent_sees_it_too_and_another_family_does_not(world: dict[str, Any]) -> None:
    _, answer = _ask(world, world["parent"]["idnr"])
    assert answer.status == "ok", answer.detail
    assert [e.relation for e in answer.entries
            if e.transfer_id == world["transfer_id"]] == ["concerned"]
    stranger = _citizen(world["live"], "uvo", "parent")
    _, other = _ask(world, stranger["idnr"])
    assert other.status == "ok"
    assert all(e.transfer_id != world["transfer_id"] for e in other.entries)
