"""The monitor (einmal_client.monitor) against crafted logs over a mock transport: a log that
only grows passes, every kind of misbehaviour fails with one line and leaves its evidence, and
the entry format is checked against the cockpit's own leaves and every malformed variant."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cockpit.leaf import encode_leaf
from einmal.domain.transfer import Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal_client import tlog
from einmal_client.monitor import (
    EntryFormError,
    LogMisbehaved,
    Monitor,
    MonitorError,
    MonitorUnavailable,
    check_entry,
)
from einmal_client.tiles import TileClient
from tests.tiled_log import CraftedLog, entry_leaf

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Served:
    """What the mock log serves: the files of ``leaves`` (switch them to fork the log)."""

    def __init__(self, log: CraftedLog, leaves: list[bytes]) -> None:
        self.log = log
        self.leaves = leaves
        self.override: dict[str, bytes | int] = {}
        self.requests: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/log/")
        self.requests.append(path)
        found = self.override.get(path, self.log.files(self.leaves).get(path))
        if isinstance(found, int):
            return httpx.Response(found)
        return httpx.Response(200, content=found) if found is not None else httpx.Response(404)


def _monitor(served: Served, state: Path, **options: Any) -> Monitor:
    client = TileClient("http://log.test/log",
                        http=httpx.Client(transport=httpx.MockTransport(served.handle)))
    return Monitor(client, state, clock=lambda: NOW, **options)


@pytest.fixture(name="log")
def fx_log() -> CraftedLog:
    return CraftedLog()


LEAVES = [entry_leaf(n) for n in range(700)]


class TestMisbehaviour:
    def test_a_fork_is_a_split_view(self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        _monitor(served, tmp_path).check()
        served.leaves = [*LEAVES[:299], entry_leaf(9999), *LEAVES[300:500]]
        with pytest.raises(LogMisbehaved, match=r"^split view: the checkpoint of size 500 "
                                                r"does not extend the checkpoint of size 300"):
            _monitor(served, tmp_path).check()
        evidence = next((tmp_path / "evidence").iterdir())
        assert sorted(p.name for p in evidence.iterdir()) == ["checkpoint-1", "checkpoint-2"]
        assert (evidence / "checkpoint-2").read_text() == log.note(served.leaves)
        # the state still holds the checkpoint it accepted: every later run fails too
        served.leaves = [*served.leaves, *LEAVES[500:]]
        with pytest.raises(LogMisbehaved, match="split view"):
            _monitor(served, tmp_path).check()

    def test_two_roots_for_one_size_are_a_split_view(self, log: CraftedLog,
                                                     tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        _monitor(served, tmp_path).check()
        served.leaves = [*LEAVES[:299], entry_leaf(9999)]
        with pytest.raises(LogMisbehaved, match=r"^split view: two signed checkpoints of size "
                                                r"300 with different roots"):
            _monitor(served, tmp_path).check()

    def test_a_smaller_tree_is_a_rewrite(self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        _monitor(served, tmp_path).check()
        served.leaves = LEAVES[:299]
        with pytest.raises(LogMisbehaved, match=r"^rewrite: the log now shows a tree of size "
                                                r"299, smaller than the size 300"):
            _monitor(served, tmp_path).check()

    def test_a_checkpoint_signed_by_another_key_fails(self, log: CraftedLog,
                                                      tmp_path: Path) -> None:
        served = Served(log, LEAVES[:10])
        other = CraftedLog(log.origin)
        served.override["checkpoint"] = other.note(LEAVES[:10]).encode()
        with pytest.raises(LogMisbehaved, match="does not verify"):
            _monitor(served, tmp_path, verifier_key=log.verifier_key).check()
        assert not (tmp_path / "state.json").exists()

    def test_a_pinned_key_is_kept_when_the_log_swaps_its_key(self, log: CraftedLog,
                                                             tmp_path: Path) -> None:
        served = Served(log, LEAVES[:10])
        assert _monitor(served, tmp_path).check().pinned
        impostor = CraftedLog(log.origin)
        served.log = impostor  # a new key and checkpoint, served with its own verifier key
        with pytest.raises(LogMisbehaved, match="does not verify"):
            _monitor(served, tmp_path).check()

    def test_tiles_of_another_tree_fail(self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        served.override["tile/0/001.p/44"] = log.files(LEAVES[1:301])["tile/0/001.p/44"]
        with pytest.raises(LogMisbehaved, match="tiles do not hash to its checkpoint"):
            _monitor(served, tmp_path).check()

    def test_an_entry_that_does_not_hash_to_its_tile_fails(self, log: CraftedLog,
                                                           tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        served.override["tile/entries/001.p/44"] = log.files(
            [*LEAVES[:257], entry_leaf(9999), *LEAVES[258:300]])["tile/entries/001.p/44"]
        with pytest.raises(LogMisbehaved, match=r"^entry 257: its bytes do not hash to its "
                                                r"leaf hash in tile/0/001\.p/44"):
            _monitor(served, tmp_path).check()

    def test_a_tile_of_a_wrong_length_fails(self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        served.override["tile/0/001.p/44"] = b"\x00" * 31
        with pytest.raises(LogMisbehaved, match="malformed"):
            _monitor(served, tmp_path).check()

    def test_a_state_of_another_log_is_refused(self, log: CraftedLog, tmp_path: Path) -> None:
        _monitor(Served(log, LEAVES[:5]), tmp_path).check()
        other = CraftedLog("other.example/log")
        with pytest.raises(MonitorError, match=r"follows the log 'test\.example/log'"):
            _monitor(Served(other, LEAVES[:5]), tmp_path,
                     verifier_key=other.verifier_key).check()

    def test_an_unreachable_log_decides_nothing(self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:5])
        served.override["checkpoint"] = 503
        with pytest.raises(MonitorUnavailable, match="answered 503"):
            _monitor(served, tmp_path).check()


class TestFollowing:
    def test_a_growing_log_passes_and_each_run_reads_only_what_is_new(
            self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        first = _monitor(served, tmp_path).check()
        assert (first.previous_size, first.tree_size, first.entries) == (None, 300, 300)
        assert first.pinned
        served.leaves = LEAVES
        served.requests.clear()
        second = _monitor(served, tmp_path).check()
        assert (second.previous_size, second.tree_size, second.entries) == (300, 700, 400)
        assert not second.pinned
        assert "tile/entries/000" not in served.requests
        third = _monitor(served, tmp_path).check()
        assert (third.previous_size, third.entries, third.problems) == (700, 0, [])

    def test_an_empty_log_passes(self, log: CraftedLog, tmp_path: Path) -> None:
        report = _monitor(Served(log, []), tmp_path).check()
        assert (report.tree_size, report.entries) == (0, 0)

    def test_an_interrupted_run_resumes_where_it_stopped(self, log: CraftedLog,
                                                         tmp_path: Path) -> None:
        served = Served(log, LEAVES)

        def interrupt(done: int, total: int) -> None:
            if done >= 256:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            _monitor(served, tmp_path).check(progress=interrupt)
        assert json.loads((tmp_path / "state.json").read_text())["checked"]["size"] == 256
        served.requests.clear()
        report = _monitor(served, tmp_path).check()
        assert report.entries == 700 - 256
        assert "tile/entries/000" not in served.requests

    def test_a_resumed_run_still_catches_entries_it_read_before(self, log: CraftedLog,
                                                                tmp_path: Path) -> None:
        served = Served(log, LEAVES)
        forged = [*LEAVES[:3], entry_leaf(9999), *LEAVES[4:]]
        forged_files = log.files(forged)
        served.override.update({"tile/entries/000": forged_files["tile/entries/000"],
                                "tile/0/000": forged_files["tile/0/000"]})

        def interrupt(done: int, total: int) -> None:
            if done >= 256:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            _monitor(served, tmp_path).check(progress=interrupt)
        served.override.clear()
        with pytest.raises(LogMisbehaved, match="do not hash to the checkpoint's root"):
            _monitor(served, tmp_path).check()

    def test_a_malformed_entry_is_reported_with_its_index(self, log: CraftedLog,
                                                          tmp_path: Path) -> None:
        leaves = [*LEAVES[:5], entry_leaf(5, subject="86095742719"), *LEAVES[6:10]]
        report = _monitor(Served(log, leaves), tmp_path).check()
        assert report.problems == ["entry 5: malformed subject"]
        assert report.entries == 10

    def test_a_shredded_bundle_is_counted_its_hashes_still_checked(
            self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:300])
        served.override["tile/entries/000"] = 404
        report = _monitor(served, tmp_path).check()
        assert (report.entries, report.unavailable) == (44, 256)

    def test_a_given_key_replaces_the_pinned_one(self, log: CraftedLog, tmp_path: Path) -> None:
        served = Served(log, LEAVES[:5])
        _monitor(served, tmp_path).check()
        rotated = CraftedLog(log.origin)
        served.log = rotated
        assert _monitor(served, tmp_path, verifier_key=rotated.verifier_key).check()
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["verifier_key"] == rotated.verifier_key


def _cockpit_leaf(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "id": "3f1c1b5e-9a43-4b7e-8f1e-2b9a8c7d6e5f", "outcome": Outcome.REFUSED,
        "occurred_at": datetime(2026, 11, 29, 7, 0, 0, 120, tzinfo=UTC), "proof_type": "birth",
        "purpose": "namensbestimmung", "subject": "86095742719",
        "error_type": "consent-required", "data_categories": ("name",),
        "service": ServiceRef(id="s", name="Standesamt Bremen \u2013 Namensdienst", authority="Ä",
                              land="HB"),
        "register": RegisterRef(id="r", name="R")}
    return encode_leaf(TransferRecord(**{**fields, **changes}), "ab" * 32)


class TestEntryForm:
    @pytest.mark.parametrize("leaf", [
        _cockpit_leaf(), _cockpit_leaf(register=None, consent_id="c", correlation_id="x",
                                       retention_until=datetime(2028, 1, 1, tzinfo=UTC)),
        _cockpit_leaf(purpose="\u2028\"\\\x01 é"), entry_leaf(0),
    ])
    def test_the_cockpits_own_leaves_pass(self, leaf: bytes) -> None:
        assert check_entry(leaf)["v"] == 1

    @pytest.mark.parametrize(("leaf", "reason"), [
        (b"\xff", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (entry_leaf(0, v=2), "unknown entry version 2"),
        (entry_leaf(0, v=True), "unknown entry version True"),
        (entry_leaf(0, extra="x"), "unexpected ['extra']"),
        (entry_leaf(0, subject="86095742719"), "malformed subject"),
        (entry_leaf(0, occurred_at="2026-11-29T07:00:00Z"), "malformed occurred_at"),
        (entry_leaf(0, occurred_at="2026-02-30T07:00:00.000000Z"), "malformed occurred_at"),
        (entry_leaf(0, outcome="stolen"), "malformed outcome"),
        (entry_leaf(0, register={"id": "r"}), "malformed register"),
        (entry_leaf(0, service={"id": "s", "name": "n", "authority": "a", "land": 1}),
         "malformed service"),
        (entry_leaf(0, data_categories="name"), "malformed data_categories"),
        (entry_leaf(0, id=""), "malformed id"),
        (entry_leaf(0, v=1.0), "integer"),
        (entry_leaf(0).replace(b'"v":1', b'"v":1,"v":1'), "twice"),
        (entry_leaf(0).replace(b",", b", ", 1), "not canonical"),
        (entry_leaf(0).replace(b'{"consent_id":null,', b'{') [:-1] + b',"consent_id":null}',
         "not canonical"),
        (entry_leaf(0, purpose="é").replace("é".encode(), b"\\u00e9"), "not canonical"),
        (entry_leaf(0, purpose="x").replace(b'"purpose":"x"', b'"purpose":"\\ud800"'),
         "lone surrogate"),
        (entry_leaf(0).replace(b'"v":1', b'"v":NaN'), "integer"),
    ])
    def test_a_malformed_entry_says_why(self, leaf: bytes, reason: str) -> None:
        with pytest.raises(EntryFormError, match=re.escape(reason)):
            check_entry(leaf)

    def test_a_missing_member_is_named(self) -> None:
        leaf = json.loads(entry_leaf(0))
        del leaf["subject"]
        encoded = json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
        with pytest.raises(EntryFormError, match=r"missing \['subject'\]"):
            check_entry(encoded)


def test_a_leaf_hash_is_what_the_monitor_compares() -> None:
    assert tlog.leaf_hash(entry_leaf(0)) != tlog.leaf_hash(entry_leaf(1))
