"""Receipts (einmal_client.receipt): the C2SP tlog-proof format, parsed strictly and verified
offline against the log's key, witness keys and the entry's bytes. Failures first."""

import base64

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal_client import tlog
from einmal_client.cosignature import cosign, witness_vkey
from einmal_client.receipt import (
    MAX_RECEIPT_BYTES,
    RECEIPT_HEADER,
    ReceiptError,
    format_receipt,
    parse_receipt,
    verify_receipt,
)

ORIGIN = "cockpit.example/einmal-transfer-log"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VKEY = tlog.verifier_key(ORIGIN, LOG_KEY.public_key())
W1, W2 = (Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32) for n in (41, 42))
W1_NAME, W2_NAME = "witness.example/one", "witness.example/two"
W1_VKEY = witness_vkey(W1_NAME, W1.public_key())
W2_VKEY = witness_vkey(W2_NAME, W2.public_key())
T = 1_764_000_000


def _leaf(n: int) -> bytes:
    return msgspec.json.encode({"id": f"transfer-{n}", "outcome": "delivered", "v": 1,
                                "service": {"name": "Elterngeldstelle", "authority": "Bremen"}})


LEAVES = [_leaf(n) for n in range(11)]
HASHES = [tlog.leaf_hash(leaf) for leaf in LEAVES]


def _subtree(start: int, end: int) -> bytes:
    return tlog.mth(HASHES[start:end])


def _note(size: int = len(LEAVES), *, witnesses: tuple[tuple[str, Ed25519PrivateKey], ...] = (
        (W1_NAME, W1),)) -> str:
    text = tlog.format_checkpoint(tlog.Checkpoint(ORIGIN, size, tlog.mth(HASHES[:size])))
    note = tlog.sign_note(text, ORIGIN, LOG_KEY)
    return note + "".join(cosign(text, name, key, T) for name, key in witnesses)


def _receipt(index: int = 6, *, note: str | None = None, leaf: bytes | None = None) -> str:
    return format_receipt(index=index, proof=tlog.inclusion_path(index, len(LEAVES), _subtree),
                          note=note or _note(), leaf=LEAVES[index] if leaf is None else leaf)


def _error(text: str | bytes, **keys: object) -> str:
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(text, **{"verifier_keys": [VKEY], **keys})  # type: ignore[arg-type]  # keyword arguments of the test's choosing
    return str(caught.value)


class TestParseRefuses:
    @pytest.mark.parametrize("text", [
        "", "c2sp.org/tlog-proof@v2\nindex 0\n\n", "index 0\n\n",
        f"{RECEIPT_HEADER}\nindex 01\n\n", f"{RECEIPT_HEADER}\nindex -1\n\n",
        f"{RECEIPT_HEADER}\nindex 1 \n\n", f"{RECEIPT_HEADER}\nextra\nindex 1\n\n",
        f"{RECEIPT_HEADER}\nindex 1\nextra AAAA\n\n", f"{RECEIPT_HEADER}\nindex 1",
    ])
    def test_a_malformed_head(self, text: str) -> None:
        with pytest.raises(ReceiptError):
            parse_receipt(text + _note())

    @pytest.mark.parametrize("line", ["AAAA", "A" * 42 + "B=", "a" * 44,
                                      base64.b64encode(b"\x00" * 31).decode()])
    def test_a_proof_line_that_is_not_one_canonical_32_byte_hash(self, line: str) -> None:
        with pytest.raises(ReceiptError, match="proof line 1"):
            parse_receipt(f"{RECEIPT_HEADER}\nindex 0\n{line}\n\n{_note()}")

    def test_non_canonical_extra_data(self) -> None:
        with pytest.raises(ReceiptError, match="canonical"):
            parse_receipt(f"{RECEIPT_HEADER}\nextra QR==\nindex 0\n\n{_note()}")

    def test_more_than_63_proof_lines(self) -> None:
        line = base64.b64encode(b"\x01" * 32).decode()
        with pytest.raises(ReceiptError, match="at most 63"):
            parse_receipt(f"{RECEIPT_HEADER}\nindex 0\n" + f"{line}\n" * 64 + "\n" + _note())

    def test_a_checkpoint_that_is_not_a_signed_tlog_checkpoint(self) -> None:
        for note in ("garbage\n", _note().replace("\n\n", "\n"), _note().replace("11\n", "011\n")):
            with pytest.raises(ReceiptError, match="checkpoint"):
                parse_receipt(f"{RECEIPT_HEADER}\nindex 0\n\n{note}")

    def test_bytes_too_large_or_not_utf8(self) -> None:
        with pytest.raises(ReceiptError, match="larger"):
            parse_receipt(b"x" * (MAX_RECEIPT_BYTES + 1))
        with pytest.raises(ReceiptError, match="UTF-8"):
            parse_receipt(b"\xff\xfe")


class TestVerifyRefuses:
    def test_without_any_key(self) -> None:
        with pytest.raises(ReceiptError, match="without a key"):
            verify_receipt(_receipt())

    def test_another_log_key(self) -> None:
        other = tlog.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key())
        assert "signature does not verify" in _error(_receipt(), verifier_keys=[other])

    def test_a_key_of_another_log(self) -> None:
        other = tlog.verifier_key("other.example/log", LOG_KEY.public_key())
        assert "is of 'cockpit.example" in _error(_receipt(), verifier_keys=[other])

    def test_a_changed_entry(self) -> None:
        changed = LEAVES[6].replace(b"delivered", b"refused__")
        assert "not in the checkpoint's tree" in _error(_receipt(leaf=changed))

    def test_another_entry_s_proof(self) -> None:
        assert "not in the checkpoint's tree" in _error(_receipt(leaf=LEAVES[5]))

    def test_a_moved_index(self) -> None:
        text = _receipt().replace("index 6\n", "index 7\n")
        assert "not in the checkpoint's tree" in _error(text)

    def test_an_index_beyond_the_tree(self) -> None:
        text = _receipt().replace("index 6\n", "index 11\n")
        assert "outside a tree of size 11" in _error(text)

    def test_a_changed_checkpoint(self) -> None:
        text = _receipt().replace(f"\n{len(LEAVES)}\n", f"\n{len(LEAVES) + 1}\n")
        assert "signature does not verify" in _error(text)

    def test_a_missing_cosignature(self) -> None:
        text = _receipt(note=_note(witnesses=()))
        assert "0 of the required 1" in _error(text, witness_keys=[W1_VKEY])

    def test_a_quorum_not_met(self) -> None:
        error = _error(_receipt(), witness_keys=[W1_VKEY, W2_VKEY], quorum=2)
        assert "1 of the required 2" in error
        assert W2_NAME in error

    def test_by_default_every_given_witness_must_have_cosigned(self) -> None:
        assert "1 of the required 2" in _error(_receipt(), witness_keys=[W1_VKEY, W2_VKEY])

    def test_a_cosignature_in_a_witness_s_name_by_another_key(self) -> None:
        # the line names W1, but its key id is the forger's: not W1's, so it does not count
        note = _note(witnesses=((W1_NAME, Ed25519PrivateKey.generate()),))
        assert "0 of the required 1" in _error(_receipt(note=note), witness_keys=[W1_VKEY])

    def test_a_cosignature_that_does_not_verify(self) -> None:
        note = _note()
        head, cosignature = note.rsplit("\u2014 ", 1)
        name, blob = cosignature.split(" ")
        raw = bytearray(base64.b64decode(blob))
        raw[-1] ^= 1
        tampered = head + f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
        assert "does not verify" in _error(_receipt(note=tampered), witness_keys=[W1_VKEY])

    def test_a_log_key_given_as_a_witness_key(self) -> None:
        assert "witness key is malformed" in _error(_receipt(), witness_keys=[VKEY])

    def test_a_quorum_beyond_the_witnesses_given(self) -> None:
        assert "a quorum is 1..1" in _error(_receipt(), witness_keys=[W1_VKEY], quorum=2)

    def test_no_entry(self) -> None:
        text = _receipt()
        without = "\n".join(line for line in text.split("\n") if not line.startswith("extra "))
        assert "no entry" in _error(without)

    def test_an_entry_that_is_not_a_json_object(self) -> None:
        hashes = [tlog.leaf_hash(b"[1, 2]"), *HASHES[1:]]
        note = tlog.sign_note(tlog.format_checkpoint(tlog.Checkpoint(
            ORIGIN, len(hashes), tlog.mth(hashes))), ORIGIN, LOG_KEY)
        proof = tlog.inclusion_path(0, len(hashes), lambda s, e: tlog.mth(hashes[s:e]))
        text = format_receipt(index=0, proof=proof, note=note, leaf=b"[1, 2]")
        assert "not a JSON object" in _error(text)


class TestVerify:
    def test_a_receipt_verifies_with_the_log_key_and_the_witnesses(self) -> None:
        note = _note(witnesses=((W1_NAME, W1), (W2_NAME, W2)))
        verified = verify_receipt(_receipt(note=note), verifier_keys=[VKEY],
                                  witness_keys=[W1_VKEY, W2_VKEY])
        assert verified.index == 6
        assert verified.checkpoint.size == len(LEAVES)
        assert verified.entry["id"] == "transfer-6"
        assert verified.log_signature_checked
        assert verified.cosigned_by == {W1_NAME: T, W2_NAME: T}

    def test_k_of_n_witnesses_suffice(self) -> None:
        verified = verify_receipt(_receipt(), verifier_keys=[VKEY],
                                  witness_keys=[W1_VKEY, W2_VKEY], quorum=1)
        assert verified.cosigned_by == {W1_NAME: T}

    def test_witness_keys_alone_are_a_trust_anchor(self) -> None:
        verified = verify_receipt(_receipt(), witness_keys=[W1_VKEY])
        assert not verified.log_signature_checked

    def test_a_retired_log_key_among_the_keys_given(self) -> None:
        retired = tlog.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key())
        assert verify_receipt(_receipt(), verifier_keys=[retired, VKEY]).index == 6

    @pytest.mark.parametrize("index", [0, 7, 10])
    def test_every_position_and_bytes_in(self, index: int) -> None:
        text = _receipt(index)
        assert verify_receipt(text.encode(), verifier_keys=[VKEY]).index == index

    def test_a_tree_of_one_has_an_empty_proof(self) -> None:
        note = tlog.sign_note(tlog.format_checkpoint(tlog.Checkpoint(ORIGIN, 1, HASHES[0])),
                              ORIGIN, LOG_KEY)
        text = format_receipt(index=0, proof=[], note=note, leaf=LEAVES[0])
        assert text.startswith(f"{RECEIPT_HEADER}\nextra ")
        assert "\nindex 0\n\n" in text
        assert verify_receipt(text, verifier_keys=[VKEY]).entry["id"] == "transfer-0"

    def test_the_layout_of_the_spec_s_example(self) -> None:
        """c2sp.org/tlog-proof: header, extra, index, proof lines, empty line, checkpoint."""
        receipt = parse_receipt(
            "c2sp.org/tlog-proof@v1\n"
            "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
            "index 73894\n"
            "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
            "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
            "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
            "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
            "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
            "\n" + _note())
        assert receipt.index == 73894
        assert receipt.leaf is not None
        assert receipt.leaf.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
        assert len(receipt.proof) == 5
        assert receipt.checkpoint.origin == ORIGIN

    def test_format_and_parse_round_trip(self) -> None:
        text = _receipt(3)
        receipt = parse_receipt(text)
        assert format_receipt(index=receipt.index, proof=receipt.proof, note=receipt.note,
                              leaf=receipt.leaf) == text
