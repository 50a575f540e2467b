"""The add-checkpoint request (C2SP tlog-witness), pure: parsing, the log's signature, and
consistency with the checkpoint last cosigned. Failure cases first."""

import base64
import string

import pytest

from einmal_client.tlog import sign_note
from tests.unit.witness.signed_log import SignedLog, add_checkpoint_body
from witness.errors import (
    ForkError,
    InconsistentCheckpointError,
    MalformedRequestError,
    StaleSizeError,
    UntrustedCheckpointError,
    WitnessConfigError,
)
from witness.protocol import (
    EMPTY_ROOT,
    MAX_PROOF_LINES,
    Recorded,
    check_consistency,
    parse_add_checkpoint,
    parse_log_keys,
    verify_log_signature,
)

# tlog-witness: the example request body
SPEC_BODY = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks"
    "+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n").encode()

HASH = base64.b64encode(bytes(32)).decode()


@pytest.fixture(name="log")
def fx_log() -> SignedLog:
    return SignedLog()


class TestParse:
    @pytest.mark.parametrize(("body", "says"), [
        (b"\xff\xfe", "UTF-8"),
        (b"old 0\n" + b"log.example/transfers\n1\n", "empty line"),
        (b"", "empty line"),
        (b"old 01\n\n", "old <size>"),
        (b"old -1\n\n", "old <size>"),
        (b"old +1\n\n", "old <size>"),
        (b"old  1\n\n", "old <size>"),
        (b"old 1 \n\n", "old <size>"),
        (b"Old 1\n\n", "old <size>"),
        (b"old 0x1\n\n", "old <size>"),
        (b"old 1\r\n\n", "old <size>"),
        (b"old \xd9\xa1\n\n", "old <size>"),  # an Arabic-Indic digit one: int() would take it
        (b"old 12345678901234567890\n\n", "old <size>"),
        (b"old 9223372036854775808\n\n" + SignedLog().note(1).encode(), "at most"),
        (f"old 1\n{HASH[:-2]}\n\n".encode(), "32-byte hash"),
        (f"old 1\n{HASH}AAAA\n\n".encode(), "32-byte hash"),
        (f"old 1\n{HASH[:-2]}B=\n\n".encode(), "canonical"),
        (f"old 1\n {HASH}\n\n".encode(), "32-byte hash"),
        (f"old 1\n{HASH.replace('A', '-', 1)}\n\n".encode(), "32-byte hash"),
        (f"old 1\n{HASH}\n\n".encode(), "checkpoint is malformed"),
    ])
    def test_malformed_requests_are_400(self, body: bytes, says: str) -> None:
        with pytest.raises(MalformedRequestError, match=says) as caught:
            parse_add_checkpoint(body)
        assert caught.value.status == 400

    def test_more_than_63_proof_lines_are_400(self, log: SignedLog) -> None:
        body = add_checkpoint_body(1, [bytes(32)] * (MAX_PROOF_LINES + 1), log.note(2))
        with pytest.raises(MalformedRequestError, match="at most 63"):
            parse_add_checkpoint(body)
        assert parse_add_checkpoint(
            add_checkpoint_body(1, [bytes(32)] * MAX_PROOF_LINES, log.note(2))).old_size == 1

    @pytest.mark.parametrize(("change", "says"), [
        (lambda n: n.replace("\n2\n", "\n02\n", 1), "checkpoint is malformed"),
        (lambda n: n.replace("\n2\n", "\n2.0\n", 1), "checkpoint is malformed"),
        (lambda n: n.replace("=\n\n", "=\n\n\n", 1), "checkpoint is malformed"),
        (lambda n: n.rsplit("\n\n", 1)[0] + "\n", "checkpoint is malformed"),
        (lambda n: n[:-1], "checkpoint is malformed"),
        (lambda n: n.replace("\n", "\r\n"), "checkpoint is malformed"),
        (lambda n: n.replace("transfers", "trans\x00fers", 1), "checkpoint is malformed"),
        (lambda n: n.replace("\n2\n", "\n9223372036854775808\n", 1), "at most"),
    ])
    def test_a_malformed_checkpoint_is_400(self, log: SignedLog, change: object,
                                           says: str) -> None:
        assert callable(change)
        body = add_checkpoint_body(0, [], change(log.note(2)))
        with pytest.raises(MalformedRequestError, match=says):
            parse_add_checkpoint(body)

    def test_a_root_in_non_canonical_base64_is_400(self, log: SignedLog) -> None:
        text = log.text(2)
        root_line = text.split("\n")[2]
        alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
        # the last character's two low bits are padding: set one, the bytes stay the same
        bent = root_line[:-2] + alphabet[alphabet.index(root_line[-2]) | 1] + "="
        assert base64.b64decode(bent) == base64.b64decode(root_line)
        body = add_checkpoint_body(0, [], sign_note(text.replace(root_line, bent), log.origin,
                                                    log.key))
        with pytest.raises(MalformedRequestError):
            parse_add_checkpoint(body)

    def test_the_spec_example_parses(self) -> None:
        request = parse_add_checkpoint(SPEC_BODY)
        assert request.old_size == 20852014
        assert len(request.proof) == 4
        assert request.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
        assert (request.checkpoint.origin, request.checkpoint.size) == (
            "example.com/behind-the-sofa", 20852163)
        assert request.text.startswith("example.com/behind-the-sofa\n20852163\n")
        assert [s.name for s in request.signatures] == ["example.com/behind-the-sofa"] * 2

    def test_extension_lines_are_kept_in_the_text(self, log: SignedLog) -> None:
        text = log.text(3, extensions="rekor.example/ext 1\n")
        request = parse_add_checkpoint(add_checkpoint_body(0, [], sign_note(
            text, log.origin, log.key)))
        assert request.text == text


class TestLogSignature:
    def test_a_checkpoint_signed_by_another_key_under_the_logs_name_is_403(
            self, log: SignedLog) -> None:
        intruder = SignedLog(seed=99)
        request = parse_add_checkpoint(add_checkpoint_body(0, [], log.note(
            2, key=intruder.key)))
        keys = parse_log_keys([log.vkey])[log.origin]
        with pytest.raises(UntrustedCheckpointError, match="no signature") as caught:
            verify_log_signature(request, keys)
        assert caught.value.status == 403

    def test_a_trusted_keys_signature_over_other_text_is_403(self, log: SignedLog) -> None:
        note = log.note(2)
        other = log.note(3)
        forged = log.text(3) + "\n" + note.rsplit("\n\n", 1)[1]
        assert forged != other
        request = parse_add_checkpoint(add_checkpoint_body(0, [], forged))
        with pytest.raises(UntrustedCheckpointError, match="invalid"):
            verify_log_signature(request, parse_log_keys([log.vkey])[log.origin])

    def test_a_failing_trusted_signature_rejects_the_note_even_beside_a_good_one(
            self, log: SignedLog) -> None:
        good = log.note(2)
        bad_line = SignedLog().note(3).rsplit("\n\n", 1)[1]  # same key, other text
        request = parse_add_checkpoint(add_checkpoint_body(0, [], good + bad_line))
        with pytest.raises(UntrustedCheckpointError):
            verify_log_signature(request, parse_log_keys([log.vkey])[log.origin])

    def test_unknown_signatures_are_ignored(self, log: SignedLog) -> None:
        stranger = sign_note(log.text(2), "stranger.example/w", SignedLog(seed=3).key)
        note = log.note(2) + stranger.rsplit("\n\n", 1)[1]
        request = parse_add_checkpoint(add_checkpoint_body(0, [], note))
        verified = verify_log_signature(request, parse_log_keys([log.vkey])[log.origin])
        assert [s.name for s in verified] == [log.origin]

    def test_a_retired_and_a_current_key_both_verify(self, log: SignedLog) -> None:
        old_key = SignedLog(seed=42)
        keys = parse_log_keys([old_key.vkey, log.vkey])[log.origin]
        for signer in (old_key, log):
            request = parse_add_checkpoint(signer.request(0, 2))
            assert verify_log_signature(request, keys)


class TestLogKeys:
    @pytest.mark.parametrize("vkeys", [
        [], ["not a key"], ["log.example+00000000+AQ=="],
        ["remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"],  # a 0x04 key
    ])
    def test_unusable_log_keys_are_refused(self, vkeys: list[str]) -> None:
        with pytest.raises(WitnessConfigError):
            parse_log_keys(vkeys)

    def test_keys_group_by_origin_and_repeat_once(self, log: SignedLog) -> None:
        other = SignedLog(origin="other.example/log", seed=5)
        logs = parse_log_keys([log.vkey, other.vkey, log.vkey, SignedLog(seed=6).vkey])
        assert sorted(logs) == ["log.example/transfers", "other.example/log"]
        assert len(logs[log.origin]) == 2


class TestConsistency:
    def test_old_larger_than_size_is_400(self, log: SignedLog) -> None:
        request = parse_add_checkpoint(add_checkpoint_body(5, [], log.note(3)))
        with pytest.raises(MalformedRequestError, match="larger"):
            check_consistency(request, Recorded(5, log.root(5)))

    @pytest.mark.parametrize(("old", "recorded", "latest"), [(3, None, 0), (0, 4, 4), (2, 4, 4),
                                                             (5, 4, 4)])
    def test_an_old_size_other_than_the_last_cosigned_is_409_with_that_size(
            self, log: SignedLog, old: int, recorded: int | None, latest: int) -> None:
        log.grow(8)
        request = parse_add_checkpoint(add_checkpoint_body(old, log.proof(old, 8),
                                                           log.note(8)))
        state = Recorded(recorded, log.root(recorded)) if recorded is not None else None
        with pytest.raises(StaleSizeError) as caught:
            check_consistency(request, state)
        assert caught.value.latest == latest
        assert caught.value.status == 409

    def test_a_fork_at_the_same_size_is_409_and_not_a_size_answer(self, log: SignedLog) -> None:
        fork = SignedLog(fork="other ")
        request = parse_add_checkpoint(fork.request(4, 4))
        with pytest.raises(ForkError, match="forked") as caught:
            check_consistency(request, Recorded(4, log.root(4)))
        assert caught.value.status == 409
        assert not isinstance(caught.value, StaleSizeError)

    def test_a_larger_fork_whose_proof_does_not_lead_back_is_422(self, log: SignedLog) -> None:
        fork = SignedLog(fork="other ")
        request = parse_add_checkpoint(fork.request(4, 9))  # a valid proof within the fork
        with pytest.raises(InconsistentCheckpointError) as caught:
            check_consistency(request, Recorded(4, log.root(4)))
        assert caught.value.status == 422

    def test_a_proof_from_another_size_is_422(self, log: SignedLog) -> None:
        request = parse_add_checkpoint(add_checkpoint_body(4, log.proof(5, 9), log.note(9)))
        with pytest.raises(InconsistentCheckpointError):
            check_consistency(request, Recorded(4, log.root(4)))

    @pytest.mark.parametrize(("old", "size", "recorded"), [(0, 3, None), (4, 4, 4)])
    def test_a_proof_where_none_is_due_is_422(self, log: SignedLog, old: int, size: int,
                                              recorded: int | None) -> None:
        request = parse_add_checkpoint(add_checkpoint_body(old, [bytes(32)], log.note(size)))
        state = Recorded(recorded, log.root(recorded)) if recorded is not None else None
        with pytest.raises(InconsistentCheckpointError):
            check_consistency(request, state)

    def test_an_empty_tree_with_a_root_other_than_sha256_of_nothing_is_422(
            self, log: SignedLog) -> None:
        text = log.text(0).replace(base64.b64encode(EMPTY_ROOT).decode(), HASH)
        request = parse_add_checkpoint(add_checkpoint_body(0, [], sign_note(
            text, log.origin, log.key)))
        with pytest.raises(InconsistentCheckpointError, match="empty tree"):
            check_consistency(request, None)

    @pytest.mark.parametrize(("old", "size", "recorded"), [
        (0, 0, None), (0, 5, None), (0, 1, 0), (4, 4, 4), (4, 5, 4), (4, 9, 4), (1, 200, 1),
        (8, 16, 8), (7, 255, 7)])
    def test_consistent_checkpoints_pass(self, log: SignedLog, old: int, size: int,
                                         recorded: int | None) -> None:
        request = parse_add_checkpoint(log.request(old, size))
        state = Recorded(recorded, log.root(recorded)) if recorded is not None else None
        check_consistency(request, state)
