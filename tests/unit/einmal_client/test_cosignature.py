"""C2SP tlog-cosignature/v1 (Ed25519, type 0x04) and strict signed-note parsing.

The spec's own examples are checked where they give bytes (key ids, timestamps, the signed
message), and every signature is checked both ways against ``Spec``: a second implementation
written here straight from the spec text, sharing no code with ``einmal_client.cosignature``.
"""

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from einmal_client.cosignature import (
    COSIGNATURE_V1,
    CosignatureError,
    NoteSignature,
    WitnessKey,
    append_signatures,
    checkpoint_text,
    cosign,
    cosignature_key_id,
    cosigned_message,
    parse_witness_vkey,
    split_note,
    verify_cosignature,
    verify_cosignatures,
    witness_vkey,
)
from einmal_client.tlog import NoteError, sign_note, verifier_key

# tlog-checkpoint / tlog-cosignature: the example checkpoint and its cosigned note
SOFA = ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
SOFA_NOTE = (
    SOFA + "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrD"
    "JsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")
# transparency-dev/formats note_cosigv1_test.go: a published witness's 0x04 vkey, and a
# cosignature with a known timestamp
REMORA = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
FORMATS_COSIG = ("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEH"
                 "WWOworDcFiEBYJXORmnFBOBA==")
# ... and an Ed25519 (0x01) note vkey: not a cosignature key
NOTE_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"


class Spec:
    """tlog-cosignature, read literally: key ID = SHA-256(<name> || "\\n" || 0x04 || 32-byte
    key)[:4]; message = "cosignature/v1\\n" "time <decimal>\\n" || note body; signature line =
    "— <name> " base64(key ID || u64 big-endian timestamp || Ed25519 signature) "\\n"."""

    @staticmethod
    def raw(public_key: Ed25519PublicKey) -> bytes:
        return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def key_id(cls, name: str, public_key: Ed25519PublicKey) -> bytes:
        return hashlib.sha256(name.encode() + b"\n" + b"\x04" + cls.raw(public_key)).digest()[:4]

    @staticmethod
    def message(body: str, timestamp: int) -> bytes:
        return b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + body.encode()

    @classmethod
    def sign(cls, body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
        signature = key.sign(cls.message(body, timestamp))
        blob = cls.key_id(name, key.public_key()) + timestamp.to_bytes(8, "big") + signature
        return "\u2014 " + name + " " + base64.b64encode(blob).decode() + "\n"

    @classmethod
    def verify(cls, line: str, body: str, name: str, public_key: Ed25519PublicKey) -> int:
        dash, line_name, encoded = line.rstrip("\n").split(" ")
        blob = base64.b64decode(encoded)
        assert dash == "\u2014"
        assert line_name == name
        assert blob[:4] == cls.key_id(name, public_key)
        timestamp = int.from_bytes(blob[4:12], "big")
        public_key.verify(blob[12:], cls.message(body, timestamp))  # raises if invalid
        return timestamp


@pytest.fixture(name="witness_key")
def fx_witness_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _other_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


class TestSpecExamples:
    def test_the_example_cosignature_carries_the_example_time_and_key_id(self) -> None:
        _, signatures = split_note(SOFA_NOTE)
        cosig = signatures[1]
        assert (cosig.name, cosig.key_id.hex()) == ("witness.example.com/w1", "8d66cf3f")
        assert int.from_bytes(cosig.signature[:8], "big") == 1679315147
        assert len(cosig.signature) == 8 + 64

    def test_the_signed_message_is_the_one_the_spec_shows(self) -> None:
        assert cosigned_message(SOFA, 1679315147) == (
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
            b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")

    def test_a_published_witness_vkey_parses_and_reproduces(self) -> None:
        name, key_id, public_key = parse_witness_vkey(REMORA)
        assert (name, key_id.hex()) == ("remora.n621.de", "da77ade7")
        assert cosignature_key_id(name, public_key).hex() == "da77ade7"
        assert witness_vkey(name, public_key) == REMORA

    def test_the_formats_cosignature_timestamp(self) -> None:
        blob = base64.b64decode(FORMATS_COSIG)
        signature = NoteSignature(name="x", key_id=blob[:4], signature=blob[4:])
        assert int.from_bytes(signature.signature[:8], "big") == 1727964367
        assert signature.line() == f"\u2014 x {FORMATS_COSIG}\n"


class TestWitnessVkey:
    @pytest.mark.parametrize(("vkey", "says"), [
        (NOTE_VKEY, "signature type 0x01"),
        ("remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "key id"),
        ("remora.n621.de+DA77ADE7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "8 hex"),
        ("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw", "base64"),
        ("remora.n621.de+da77ade7+THIS_IS_NOT_BASE64!", "base64"),
        ("remora.n621.de+da77ade7+BA==", "32-byte"),
        ("remora.n621.de+da77ade7", "8 hex"),
        ("+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "non-empty"),
        ("two words+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "spaces"),
    ])
    def test_anything_but_a_cosignature_v1_key_is_refused(self, vkey: str, says: str) -> None:
        with pytest.raises(NoteError, match=says):
            parse_witness_vkey(vkey)

    def test_a_name_with_a_space_or_plus_makes_no_vkey(self, witness_key: Ed25519PrivateKey,
                                                       ) -> None:
        for name in ("a b", "a+b", "", "a\u2003b"):
            with pytest.raises(NoteError):
                witness_vkey(name, witness_key.public_key())

    def test_round_trip_and_type_byte(self, witness_key: Ed25519PrivateKey) -> None:
        vkey = witness_vkey("witness.example/w1", witness_key.public_key())
        name, key_id, public_key = parse_witness_vkey(vkey)
        assert name == "witness.example/w1"
        assert key_id == Spec.key_id(name, witness_key.public_key())
        assert Spec.raw(public_key) == Spec.raw(witness_key.public_key())
        assert base64.b64decode(vkey.split("+", 2)[2])[0] == COSIGNATURE_V1 == 0x04
        assert WitnessKey(name, key_id, public_key).vkey == vkey

    def test_the_key_id_differs_from_the_same_keys_note_key_id(
            self, witness_key: Ed25519PrivateKey) -> None:
        note_vkey = verifier_key("witness.example/w1", witness_key.public_key())
        cosig_vkey = witness_vkey("witness.example/w1", witness_key.public_key())
        assert note_vkey.split("+")[1] != cosig_vkey.split("+")[1]


class TestCosign:
    def test_our_cosignature_verifies_with_the_spec_reading(self,
                                                           witness_key: Ed25519PrivateKey,
                                                           ) -> None:
        line = cosign(SOFA, "witness.example/w1", witness_key, 1679315147)
        assert line.startswith("\u2014 witness.example/w1 ") and line.endswith("\n")
        assert Spec.verify(line, SOFA, "witness.example/w1", witness_key.public_key()) == 1679315147

    def test_a_spec_cosignature_verifies_with_ours(self, witness_key: Ed25519PrivateKey) -> None:
        line = Spec.sign(SOFA, "witness.example/w1", witness_key, 1700000000)
        key = WitnessKey(*parse_witness_vkey(witness_vkey("witness.example/w1",
                                                          witness_key.public_key())))
        _, [signature] = split_note(SOFA + "\n" + line)
        assert verify_cosignature(SOFA, signature, key) == 1700000000

    def test_ed25519_is_deterministic_so_both_readings_give_the_same_bytes(
            self, witness_key: Ed25519PrivateKey) -> None:
        assert cosign(SOFA, "w.example/1", witness_key, 42) == Spec.sign(
            SOFA, "w.example/1", witness_key, 42)

    def test_extension_lines_are_signed(self, witness_key: Ed25519PrivateKey) -> None:
        text = SOFA + "extension one\n"
        line = cosign(text, "w.example/1", witness_key, 5)
        Spec.verify(line, text, "w.example/1", witness_key.public_key())
        with pytest.raises(InvalidSignature):
            Spec.verify(line, SOFA + "extension two\n", "w.example/1", witness_key.public_key())

    @pytest.mark.parametrize("text", [
        "example.com/log\n012\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # leading zero
        "example.com/log\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",   # non-canonical
        "example.com/log\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",     # no newline
        "example.com/log\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",  # empty ext.
        "example.com/log\n12\nAAAA\n",                                              # short root
        "example.com/log\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    ])
    def test_only_a_canonical_checkpoint_is_cosigned(self, witness_key: Ed25519PrivateKey,
                                                     text: str) -> None:
        with pytest.raises(NoteError):
            cosign(text, "w.example/1", witness_key, 5)

    @pytest.mark.parametrize("timestamp", [-1, 2**63])
    def test_the_timestamp_is_0_to_2_63_minus_1(self, witness_key: Ed25519PrivateKey,
                                                timestamp: int) -> None:
        with pytest.raises(NoteError, match="timestamp"):
            cosign(SOFA, "w.example/1", witness_key, timestamp)
        assert cosign(SOFA, "w.example/1", witness_key, 2**63 - 1)


def _log_note(text: str = SOFA) -> str:
    return sign_note(text, "example.com/behind-the-sofa", _other_key(9))


class TestVerifyCosignatures:
    def _witnesses(self, n: int) -> list[tuple[str, Ed25519PrivateKey]]:
        return [(f"w{i}.example/witness", _other_key(i + 1)) for i in range(n)]

    def _vkeys(self, witnesses: list[tuple[str, Ed25519PrivateKey]]) -> list[str]:
        return [witness_vkey(name, key.public_key()) for name, key in witnesses]

    def test_below_quorum_is_an_error_that_names_the_missing(self) -> None:
        witnesses = self._witnesses(3)
        note = _log_note() + cosign(SOFA, *witnesses[0], 10)
        with pytest.raises(CosignatureError, match=r"1 of the required 2 .* w1\.example/witness, "
                                                   r"w2\.example/witness"):
            verify_cosignatures(note, self._vkeys(witnesses), 2)

    def test_a_bad_cosignature_by_a_known_witness_fails_the_note(self) -> None:
        witnesses = self._witnesses(2)
        line = cosign(SOFA, *witnesses[0], 10)
        forged = line.replace(line[-10:-3], "AAAAAAA")
        note = _log_note() + forged + cosign(SOFA, *witnesses[1], 10)
        with pytest.raises(CosignatureError, match="does not verify"):
            verify_cosignatures(note, self._vkeys(witnesses), 1)

    def test_a_cosignature_over_another_checkpoint_does_not_count(self) -> None:
        witnesses = self._witnesses(1)
        other = SOFA.replace("20852163", "20852164")
        note = _log_note() + cosign(other, *witnesses[0], 10)
        with pytest.raises(CosignatureError):
            verify_cosignatures(note, self._vkeys(witnesses), 1)

    def test_the_log_key_signing_as_a_witness_does_not_count(self) -> None:
        """Same key and name as a witness, but a plain note signature (type 0x01)."""
        name, key = self._witnesses(1)[0]
        note = sign_note(SOFA, name, key)
        with pytest.raises(CosignatureError, match="0 of the required 1"):
            verify_cosignatures(note, [witness_vkey(name, key.public_key())], 1)

    @pytest.mark.parametrize("quorum", [0, 3, -1])
    def test_a_quorum_outside_1_to_n_is_refused(self, quorum: int) -> None:
        witnesses = self._witnesses(2)
        note = _log_note() + cosign(SOFA, *witnesses[0], 10) + cosign(SOFA, *witnesses[1], 10)
        with pytest.raises(ValueError, match="quorum"):
            verify_cosignatures(note, self._vkeys(witnesses), quorum)

    def test_k_of_n_returns_the_names_in_the_given_order(self) -> None:
        witnesses = self._witnesses(3)
        note = (_log_note() + cosign(SOFA, *witnesses[2], 11) + cosign(SOFA, *witnesses[0], 12)
                + Spec.sign(SOFA, "stranger.example/w", _other_key(77), 13))
        assert verify_cosignatures(note, self._vkeys(witnesses), 2) == [
            "w0.example/witness", "w2.example/witness"]

    def test_a_witness_counts_once_whatever_its_keys_and_lines(self) -> None:
        name, key = self._witnesses(1)[0]
        rotated = _other_key(50)
        vkeys = [witness_vkey(name, key.public_key()), witness_vkey(name, rotated.public_key()),
                 witness_vkey(name, key.public_key())]
        note = _log_note() + cosign(SOFA, name, key, 1) + cosign(SOFA, name, rotated, 2)
        assert verify_cosignatures(note, vkeys, 1) == [name]
        with pytest.raises(ValueError, match="quorum"):
            verify_cosignatures(note, vkeys, 2)

    def test_a_witness_answer_appended_to_the_log_note_verifies(self) -> None:
        """What the log does with a witness's 200 answer (tlog-witness: concatenate)."""
        witnesses = self._witnesses(2)
        answer = cosign(SOFA, *witnesses[1], 99)
        note = append_signatures(_log_note(), answer)
        assert verify_cosignatures(note, self._vkeys(witnesses), 1) == ["w1.example/witness"]
        with pytest.raises(NoteError):
            append_signatures(_log_note(), answer.rstrip("\n"))
        with pytest.raises(NoteError):
            append_signatures(_log_note(), "not a signature\n")


class TestSplitNote:
    @pytest.mark.parametrize(("note", "says"), [
        (SOFA + "\u2014 a AAAAAAA=\n", "blank line"),
        (SOFA + "\n\u2014 a AAAAAAA=", "ends with"),
        (SOFA + "\n", "ends with"),
        (SOFA + "\n\u2014 a AAAAAAA=\n\n", "ends with"),
        (SOFA + "\n- a AAAAAAA=\n", "malformed signature line"),
        (SOFA + "\n\u2014 a  AAAAAAA=\n", "malformed signature line"),
        (SOFA + "\n\u2014 a AAAAAAB=\n", "non-canonical"),
        (SOFA + "\n\u2014 a AAAA\n", "4-byte key id"),
        (SOFA + "\n\u2014 a+b AAAAAAA=\n", "key name"),
        (SOFA.replace("sofa", "so\tfa") + "\n\u2014 a AAAAAAA=\n", "control"),
        (SOFA.replace("sofa", "so\rfa") + "\n\u2014 a AAAAAAA=\n", "control"),
        (SOFA + "\n" + "\u2014 a AAAAAAA=\n" * 101, "more than 100"),
    ])
    def test_malformed_notes_are_refused(self, note: str, says: str) -> None:
        with pytest.raises(NoteError, match=says):
            split_note(note)

    def test_the_last_blank_line_separates_text_and_signatures(self) -> None:
        text, signatures = split_note("a\n\nb\n\n\u2014 k AAAAAAA=\n")
        assert text == "a\n\nb\n"
        assert [(s.name, s.key_id, s.signature) for s in signatures] == [
            ("k", b"\x00\x00\x00\x00", b"\x00")]

    def test_the_spec_example_has_two_signatures(self) -> None:
        text, signatures = split_note(SOFA_NOTE)
        assert text == SOFA
        assert [s.name for s in signatures] == ["example.com/behind-the-sofa",
                                                "witness.example.com/w1"]
        assert checkpoint_text(text).size == 20852163
        assert "".join(s.line() for s in signatures) == SOFA_NOTE[len(SOFA) + 1:]
