"""The cosigner (cockpit/log/cosigner.py) on a fake log store, with witnesses answering through
httpx.MockTransport: what counts as a cosignature, the tlog-witness answers (409 size retried
once, refusals logged and not retried), k of n, publication and readiness. Failures first."""

import asyncio
import base64
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from cockpit.errors import NotFoundError
from cockpit.log.checkpoints import CheckpointSigner
from cockpit.log.cosigner import MAX_ANSWER_BYTES, SIZE_MEDIA_TYPE, Cosigner, QuorumError
from cockpit.log.proofs import Proofs
from cockpit.log.witnesses import (
    NO_WITNESSES,
    WitnessConfigError,
    WitnessEndpoint,
    WitnessPolicy,
    load_witness_policy,
)
from einmal.keys import SigningKey
from einmal.store import StoreError
from einmal_client import tlog
from einmal_client.cosignature import (
    checkpoint_text,
    cosign,
    split_note,
    verify_cosignatures,
    witness_vkey,
)
from tests.unit.cockpit.fakes import FakeLogStore

ORIGIN = "cockpit.test/log"
SIGNER = CheckpointSigner(key=SigningKey(kid="log", private_key=Ed25519PrivateKey
                                         .from_private_bytes(bytes(range(32)))), origin=ORIGIN)
T = 1_764_000_000
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


class Witness:
    """An honest witness in memory (the log's signature is the real witness's business, tested
    in tests/unit/witness): cosigns a checkpoint consistent with the last one it cosigned.
    ``answer`` replaces its answers (a misbehaving or refusing witness)."""

    def __init__(self, number: int) -> None:
        self.name = f"witness{number}.test/w"
        self.key = Ed25519PrivateKey.from_private_bytes(bytes([number]) * 32)
        self.vkey = witness_vkey(self.name, self.key.public_key())
        self.url = f"http://witness{number}.test/w"
        self.size, self.root = 0, tlog.EMPTY_ROOT
        self.bodies: list[str] = []
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None

    @property
    def endpoint(self) -> WitnessEndpoint:
        return WitnessEndpoint.of(self.vkey, self.url)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url == f"{self.url}/add-checkpoint"
        body = request.content.decode()
        self.bodies.append(body)
        if self.answer is not None:
            return self.answer(request)
        head, _, note = body.partition("\n\n")
        lines = head.split("\n")
        old, proof = int(lines[0].removeprefix("old ")), [base64.b64decode(x) for x in lines[1:]]
        text, _ = split_note(note)
        checkpoint = checkpoint_text(text)
        if old != self.size:
            return httpx.Response(409, headers={"content-type": SIZE_MEDIA_TYPE},
                                  content=f"{self.size}\n".encode())
        if self.size:
            try:
                tlog.verify_consistency(self.size, checkpoint.size, self.root, checkpoint.root,
                                        proof)
            except tlog.ProofError:
                return httpx.Response(422, json={"type": "urn:einmal:problem:invalid-request"})
        self.size, self.root = checkpoint.size, checkpoint.root
        return httpx.Response(200, content=cosign(text, self.name, self.key, T).encode())


class Log:
    """A fake store, proofs over it and a cosigner asking ``witnesses`` through one transport."""

    def __init__(self, witnesses: list[Witness], quorum: int, *, timeout_s: float = 2.0,
                 interval_s: float = 3600) -> None:
        self.store = FakeLogStore(SIGNER.sign)
        self.witnesses = {w.url: w for w in witnesses}
        self.policy = WitnessPolicy(witnesses=tuple(w.endpoint for w in witnesses),
                                    quorum=quorum)
        self.down: set[str] = set()
        self.proofs = Proofs(self.store, self.policy)  # type: ignore[arg-type]  # the fake has what the proofs use
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._route))
        self.cosigner = Cosigner(self.store, self.proofs, self.policy,  # type: ignore[arg-type]  # the fake has what the cosigner uses
                                 http=self.http, timeout_s=timeout_s, interval_s=interval_s,
                                 clock=lambda: NOW)

    def _route(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url).removesuffix("/add-checkpoint")
        if url in self.down:
            msg = "refused"
            raise httpx.ConnectError(msg, request=request)
        return self.witnesses[url].handle(request)

    async def published(self) -> tuple[int, str]:
        found = await self.store.published_checkpoint()
        assert found is not None
        return found


def _events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [event for event in logs if event["event"] == name]


async def _refused_round(log: Log) -> list[MutableMapping[str, Any]]:
    with capture_logs() as logs, pytest.raises(QuorumError):
        await log.cosigner.cosign()
    assert await log.store.published_checkpoint() is None
    return logs


class TestAnswersThatDoNotCount:
    @pytest.mark.parametrize("content", [b"garbage", b"\xff\xfe\n", b"",
                                         b"\xe2\x80\x94 witness1.test/w AAAA\n"])
    async def test_garbage(self, content: bytes) -> None:
        witness = Witness(1)
        witness.answer = lambda request: httpx.Response(200, content=content)
        logs = await _refused_round(Log([witness], 1))
        assert _events(logs, "log.witness_bad_cosignature")

    async def test_a_cosignature_by_another_key(self) -> None:
        witness, impostor = Witness(1), Witness(2)
        impostor.name = witness.name  # same name, its own key: not the configured key

        def answer(request: httpx.Request) -> httpx.Response:
            text, _ = split_note(request.content.decode().partition("\n\n")[2])
            return httpx.Response(200, content=cosign(text, witness.name, impostor.key, T))

        witness.answer = answer
        logs = await _refused_round(Log([witness], 1))
        assert "no cosignature by the witness's configured key" in str(
            _events(logs, "log.witness_bad_cosignature")[0]["error"])

    async def test_a_valid_cosignature_of_another_checkpoint(self) -> None:
        witness = Witness(1)
        other = tlog.format_checkpoint(tlog.Checkpoint(ORIGIN, 7, b"\x07" * 32))
        witness.answer = lambda request: httpx.Response(
            200, content=cosign(other, witness.name, witness.key, T))
        logs = await _refused_round(Log([witness], 1))
        assert "does not verify" in str(_events(logs, "log.witness_bad_cosignature")[0]["error"])

    async def test_an_answer_too_long(self) -> None:
        witness = Witness(1)
        good = Witness(1)
        witness.answer = lambda request: httpx.Response(
            200, content=good.handle(request).content * (MAX_ANSWER_BYTES // 100))
        logs = await _refused_round(Log([witness], 1))
        assert _events(logs, "log.witness_bad_cosignature")

    @pytest.mark.parametrize(("status", "event"), [
        (409, "log.witness_refused"), (422, "log.witness_refused"),
        (403, "log.witness_misconfigured"), (404, "log.witness_misconfigured"),
        (400, "log.witness_failed"), (500, "log.witness_failed"),
        (503, "log.witness_failed")])
    async def test_a_refusal_is_logged_and_not_retried(self, status: int, event: str) -> None:
        witness = Witness(1)
        witness.answer = lambda request: httpx.Response(
            status, json={"type": "urn:einmal:problem:conflict"},
            headers={"content-type": "application/problem+json"})
        log = Log([witness], 1)
        logs = await _refused_round(log)
        assert len(witness.bodies) == 1
        assert _events(logs, event)[0]["status"] == status

    async def test_a_witness_that_does_not_answer_in_time(self) -> None:
        async def slow(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return httpx.Response(200)

        log = Log([Witness(1)], 1, timeout_s=0.05)
        log.http._transport = httpx.MockTransport(slow)
        logs = await _refused_round(log)
        assert _events(logs, "log.witness_unreachable")[0]["error"] == "timeout"

    async def test_a_witness_that_is_down(self) -> None:
        log = Log([Witness(1)], 1)
        log.down.add(Witness(1).url)
        logs = await _refused_round(log)
        assert _events(logs, "log.witness_unreachable")[0]["error"] == "ConnectError"

    async def test_a_size_answer_twice_in_a_row(self) -> None:
        witness = Witness(1)
        witness.answer = lambda request: httpx.Response(
            409, content=b"0\n", headers={"content-type": SIZE_MEDIA_TYPE})
        logs = await _refused_round(Log([witness], 1))
        assert len(witness.bodies) == 2
        assert _events(logs, "log.witness_busy")

    @pytest.mark.parametrize("content", [b"12", b"012\n", b"x\n", b"-1\n"])
    async def test_a_malformed_size_answer(self, content: bytes) -> None:
        witness = Witness(1)
        witness.answer = lambda request: httpx.Response(
            409, content=content, headers={"content-type": SIZE_MEDIA_TYPE})
        logs = await _refused_round(Log([witness], 1))
        assert _events(logs, "log.witness_bad_answer")

    async def test_a_size_answer_with_parameters_is_not_one(self) -> None:
        witness = Witness(1)
        witness.answer = lambda request: httpx.Response(
            409, content=b"0\n", headers={"content-type": SIZE_MEDIA_TYPE + "; charset=utf-8"})
        logs = await _refused_round(Log([witness], 1))
        assert len(witness.bodies) == 1  # compared as a string: not retried
        assert _events(logs, "log.witness_refused")

    async def test_a_witness_ahead_of_the_log(self) -> None:
        witness = Witness(1)
        witness.size = 50  # it cosigned a larger tree of this origin than the log has
        log = Log([witness], 1)
        log.store.grow(3)
        with capture_logs() as logs, pytest.raises(QuorumError):
            await log.cosigner.cosign()
        assert _events(logs, "log.witness_ahead")[0]["witness_size"] == 50
        assert len(witness.bodies) == 1

    async def test_a_store_failure_fails_the_round(self) -> None:
        log = Log([Witness(1)], 1)
        log.store.failure = StoreError("down")
        with pytest.raises(StoreError):
            await log.cosigner.cosign()


class TestPublication:
    async def test_a_checkpoint_is_published_with_its_cosignature(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        size, note = log.store.grow(5)
        assert await log.cosigner.cosign()
        published_size, published = await log.published()
        assert published_size == size
        assert published.startswith(note)
        assert verify_cosignatures(published, [witness.vkey], 1) == [witness.name]
        tlog.verify_note(published, ORIGIN, SIGNER._key.private_key.public_key())
        assert witness.bodies[0] == f"old 0\n\n{note}"
        assert log.store.published[size][1] == 1

    async def test_the_next_round_sends_old_size_and_consistency_proof(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        log.store.grow(5)
        await log.cosigner.cosign()
        log.store.grow(6)
        assert await log.cosigner.cosign()
        assert witness.bodies[1].startswith("old 5\n")
        assert witness.size == 11
        assert (await log.published())[0] == 11

    async def test_nothing_new_asks_nobody(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        assert await log.cosigner.cosign()  # the empty checkpoint
        assert not await log.cosigner.cosign()
        assert len(witness.bodies) == 1

    async def test_a_size_answer_is_retried_once_from_that_size(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        log.store.grow(4)
        await log.cosigner.cosign()
        # another process's cosigner: it does not know the witness's size
        other = Cosigner(log.store, log.proofs, log.policy, http=log.http)  # type: ignore[arg-type]  # the fake has what the cosigner uses
        log.store.grow(3)
        assert await other.cosign()
        assert [body.split("\n")[0] for body in witness.bodies] == ["old 0", "old 0", "old 4"]
        assert witness.size == 7

    async def test_k_of_n_cosignatures_publish_and_all_are_kept(self) -> None:
        witnesses = [Witness(1), Witness(2), Witness(3)]
        log = Log(witnesses, 2)
        log.down.add(witnesses[2].url)
        log.store.grow(9)
        assert await log.cosigner.cosign()
        _, note = await log.published()
        keys = [w.vkey for w in witnesses]
        assert verify_cosignatures(note, keys, 2) == [witnesses[0].name, witnesses[1].name]
        assert log.store.published[9][1] == 2

    async def test_the_witnesses_are_asked_in_parallel(self) -> None:
        """Each witness answers only once both were asked: asked one by one, the first would
        time out."""
        witnesses = [Witness(1), Witness(2)]
        both = asyncio.Event()
        asked = []

        async def route(request: httpx.Request) -> httpx.Response:
            asked.append(request)
            if len(asked) == 2:
                both.set()
            await both.wait()
            url = str(request.url).removesuffix("/add-checkpoint")
            return next(w for w in witnesses if w.url == url).handle(request)

        log = Log(witnesses, 2, timeout_s=2.0)
        log.http._transport = httpx.MockTransport(route)
        assert await log.cosigner.cosign()

    async def test_below_the_quorum_nothing_is_published_and_it_catches_up_later(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        log.store.grow(2)
        assert await log.cosigner.cosign()
        log.down.add(witness.url)
        log.store.grow(5)
        with pytest.raises(QuorumError, match="0 of 1 witnesses"):
            await log.cosigner.cosign()
        assert (await log.published())[0] == 2
        status = await log.cosigner.status()
        assert status == ("error: 0 of 1 cosigned (quorum 1), published checkpoint is 5 "
                          "entries behind")
        log.store.grow(4)
        log.down.clear()
        assert await log.cosigner.cosign()  # back: one round, from the size it cosigned
        assert witness.bodies[-1].startswith("old 2\n")
        assert (await log.published())[0] == 11
        assert await log.cosigner.status() == ("ok: 1 of 1 cosigned (quorum 1), published "
                                               "checkpoint is 0 entries behind")


class TestStatus:
    async def test_before_the_first_round(self) -> None:
        log = Log([Witness(1)], 1)
        assert await log.cosigner.status() == ("ok: 0 of 1 cosigned (quorum 1), no checkpoint "
                                               "published yet")

    async def test_a_failed_round_with_nothing_new_is_not_an_error(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        await log.cosigner.cosign()
        log.cosigner.last = None
        log.down.add(witness.url)
        assert not await log.cosigner.cosign()  # nothing to publish: nobody asked
        assert (await log.cosigner.status()).startswith("ok: ")

    async def test_quorum_zero_never_waits(self) -> None:
        log = Log([Witness(1)], 0)
        log.down.add(Witness(1).url)
        log.store.grow(3)
        assert await log.cosigner.cosign()  # with 0 of 1
        assert (await log.cosigner.status()).startswith("ok: 0 of 1 cosigned (quorum 0)")


class TestWorker:
    async def test_a_round_short_of_the_quorum_is_retried_until_the_witness_is_back(
            self) -> None:
        witness = Witness(1)
        log = Log([witness], 1, interval_s=0.0)
        log.down.add(witness.url)
        log.cosigner.worker.start()
        try:
            log.cosigner.worker.notify()
            async with asyncio.timeout(5):
                while log.cosigner.last is None:
                    await asyncio.sleep(0.005)
            assert not log.cosigner.last.published
            log.down.clear()
            async with asyncio.timeout(10):  # backoff from 0.5 s
                while not log.store.published:
                    await asyncio.sleep(0.01)
            assert log.cosigner.worker.running
        finally:
            await log.cosigner.worker.stop()


class TestProofsReadThePublishedCheckpoint:
    async def test_with_a_quorum_only_a_cosigned_checkpoint_is_published(self) -> None:
        witness = Witness(1)
        log = Log([witness], 1)
        with pytest.raises(NotFoundError, match="cosigned"):
            await log.proofs.checkpoint()
        await log.cosigner.cosign()
        log.store.grow(4)  # signed, not yet cosigned
        assert (await log.proofs.checkpoint())[0] == 0
        assert (await log.proofs.signed())[0] == 4
        with pytest.raises(NotFoundError):
            await log.proofs.inclusion(0, 4)
        await log.cosigner.cosign()
        size, note = await log.proofs.checkpoint()
        assert size == 4
        assert verify_cosignatures(note, [witness.vkey], 1)

    async def test_quorum_zero_publishes_the_latest_with_what_was_collected(self) -> None:
        witness = Witness(1)
        log = Log([witness], 0)
        size, note = log.store.grow(3)
        assert await log.proofs.checkpoint() == (size, note)
        await log.cosigner.cosign()
        assert verify_cosignatures((await log.proofs.checkpoint())[1], [witness.vkey], 1)
        log.store.grow(1)
        assert (await log.proofs.checkpoint())[0] == 4  # not waiting for the witness

    async def test_without_witnesses_every_signed_checkpoint_is_published(self) -> None:
        store = FakeLogStore(SIGNER.sign)
        proofs = Proofs(store, NO_WITNESSES)  # type: ignore[arg-type]  # the fake has what the proofs use
        latest = store.grow(2)
        assert await proofs.checkpoint() == latest


class TestPolicy:
    def _entry(self, witness: Witness, **changes: object) -> dict[str, object]:
        return {"name": witness.name, "vkey": witness.vkey, "url": witness.url, **changes}

    @pytest.mark.parametrize(("raw", "error"), [
        ("{}", "JSON list"), ("[1]", "an object"), ("[{", "not valid JSON"),
        ("/no/such/file.json", "neither a JSON list nor a readable file"),
    ])
    def test_malformed_lists(self, raw: str, error: str) -> None:
        with pytest.raises(WitnessConfigError, match=error):
            load_witness_policy(raw, None)

    @pytest.mark.parametrize(("changes", "error"), [
        ({"name": "someone.else/w"}, "its vkey names"),
        ({"vkey": "witness.test+00000000+AQ=="}, "witness key"),
        ({"vkey": tlog.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key())},
         "type 0x01"),
        ({"url": "ftp://witness.test/w"}, "http"), ({"url": "https://w.test/?x=1"}, "http"),
        ({"extra": "field"}, "nothing else"), ({"url": 7}, "the strings"),
    ])
    def test_a_bad_entry(self, changes: dict[str, object], error: str) -> None:
        with pytest.raises(WitnessConfigError, match=error):
            load_witness_policy(f"[{_json(self._entry(Witness(1), **changes))}]", None)

    def test_quorum_bounds_and_duplicates(self) -> None:
        entry = _json(self._entry(Witness(1)))
        with pytest.raises(WitnessConfigError, match=r"0\.\.1"):
            load_witness_policy(f"[{entry}]", 2)
        with pytest.raises(WitnessConfigError, match=r"0\.\.0"):
            load_witness_policy(None, 1)
        with pytest.raises(WitnessConfigError, match="once"):
            load_witness_policy(f"[{entry}, {entry}]", 1)

    def test_a_list_or_a_file_and_the_default_quorum_is_all(self, tmp_path: Path) -> None:
        one, two = Witness(1), Witness(2)
        raw = f"[{_json(self._entry(one))}, {_json({'vkey': two.vkey, 'url': two.url + '/'})}]"
        policy = load_witness_policy(raw, None)
        assert policy.quorum == 2
        assert [(w.name, w.url) for w in policy.witnesses] == [(one.name, one.url),
                                                               (two.name, two.url)]
        assert policy.witnesses[1].add_checkpoint_url == f"{two.url}/add-checkpoint"
        (tmp_path / "witnesses.json").write_text(raw)
        assert load_witness_policy(str(tmp_path / "witnesses.json"), 1).quorum == 1
        assert load_witness_policy(None, None) == NO_WITNESSES
        assert not NO_WITNESSES.enabled


def _json(value: object) -> str:
    return httpx.Response(200, json=value).text
