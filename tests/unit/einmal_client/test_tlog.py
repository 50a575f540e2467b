"""RFC 9162 Merkle trees and C2SP signed notes, against published test vectors and properties."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from einmal_client import tlog

# The Certificate Transparency / transparency-dev reference vectors (RFC 6962 trees of the
# eight leaves below; roots for sizes 1..8, audit paths and consistency proofs).
LEAVES = [bytes.fromhex(h) for h in [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [bytes.fromhex(h) for h in [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]]
PATHS = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (0, 1): [],
}
CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
HASHES = [tlog.leaf_hash(leaf) for leaf in LEAVES]


def _subtree(hashes):
    return lambda start, end: tlog.mth(hashes[start:end])


class TestReferenceVectors:
    def test_empty_tree_root(self) -> None:
        assert tlog.mth([]).hex() == \
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    @pytest.mark.parametrize("size", range(1, 9))
    def test_roots(self, size: int) -> None:
        assert tlog.mth(HASHES[:size]) == ROOTS[size - 1]
        compact = tlog.CompactRange()
        for h in HASHES[:size]:
            compact.append(h)
        assert compact.root() == ROOTS[size - 1]

    @pytest.mark.parametrize(("index", "size"), sorted(PATHS))
    def test_inclusion_paths(self, index: int, size: int) -> None:
        path = tlog.inclusion_path(index, size, _subtree(HASHES))
        assert [p.hex() for p in path] == PATHS[(index, size)]
        tlog.verify_inclusion(index, size, HASHES[index], path, ROOTS[size - 1])

    @pytest.mark.parametrize(("old", "new"), sorted(CONSISTENCY))
    def test_consistency_proofs(self, old: int, new: int) -> None:
        proof = tlog.consistency_proof(old, new, _subtree(HASHES))
        assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
        tlog.verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


class TestProofsRefuse:
    def test_inclusion_of_a_wrong_leaf(self) -> None:
        path = tlog.inclusion_path(5, 8, _subtree(HASHES))
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(5, 8, HASHES[4], path, ROOTS[7])

    def test_inclusion_with_a_truncated_path(self) -> None:
        path = tlog.inclusion_path(5, 8, _subtree(HASHES))
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(5, 8, HASHES[5], path[:-1], ROOTS[7])

    def test_out_of_range(self) -> None:
        with pytest.raises(tlog.ProofError):
            tlog.inclusion_path(8, 8, _subtree(HASHES))
        with pytest.raises(tlog.ProofError):
            tlog.consistency_proof(0, 8, _subtree(HASHES))

    def test_consistency_against_a_forked_root(self) -> None:
        proof = tlog.consistency_proof(3, 7, _subtree(HASHES))
        with pytest.raises(tlog.ProofError):
            tlog.verify_consistency(3, 7, ROOTS[2], ROOTS[5], proof)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=70), data=st.data())
def test_every_proof_over_random_trees_verifies(size: int, data: st.DataObject) -> None:
    hashes = [tlog.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    subtree = _subtree(hashes)
    root = tlog.mth(hashes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    tlog.verify_inclusion(index, size, hashes[index], tlog.inclusion_path(index, size, subtree),
                          root)
    old = data.draw(st.integers(min_value=1, max_value=size))
    tlog.verify_consistency(old, size, tlog.mth(hashes[:old]), root,
                            tlog.consistency_proof(old, size, subtree))
    other = data.draw(st.integers(min_value=0, max_value=size - 1))
    if other != index:
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(index, size, hashes[other],
                                  tlog.inclusion_path(index, size, subtree), root)


class TestSignedNotes:
    KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

    def test_checkpoint_round_trip_and_format(self) -> None:
        checkpoint = tlog.Checkpoint(origin="example.com/log", size=8, root=ROOTS[7])
        note = tlog.sign_note(tlog.format_checkpoint(checkpoint), "example.com/log", self.KEY)
        lines = note.split("\n")
        assert lines[:4] == ["example.com/log", "8", base64.b64encode(ROOTS[7]).decode(), ""]
        assert lines[4].startswith("\u2014 example.com/log ")
        blob = base64.b64decode(lines[4].split(" ")[2])
        assert len(blob) == 4 + 64
        text = tlog.verify_note(note, "example.com/log", self.KEY.public_key())
        assert tlog.parse_checkpoint(text) == checkpoint

    def test_verifier_key_round_trip(self) -> None:
        vkey = tlog.verifier_key("example.com/log", self.KEY.public_key())
        name, hex_id, _ = vkey.split("+", 2)
        assert name == "example.com/log"
        assert hex_id == tlog.key_id("example.com/log", self.KEY.public_key()).hex()
        assert tlog.parse_verifier_key(vkey)[0] == "example.com/log"

    # The reference example of signed notes (golang.org/x/mod/sumdb/note, used by C2SP).
    PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    PETER_TEXT = ("If you think cryptography is the answer to your problem,\n"
                  "then you don't know what your problem is.\n")
    PETER_NOTE = (PETER_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZI"
                  "nNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

    def test_reference_note_verifies(self) -> None:
        name, key = tlog.parse_verifier_key(self.PETER_VKEY)
        assert tlog.verify_note(self.PETER_NOTE, name, key) == self.PETER_TEXT
        with pytest.raises(tlog.NoteError):
            tlog.verify_note(self.PETER_NOTE.replace("cryptography", "cryptographY"), name, key)

    def test_signing_reproduces_the_reference_note_byte_for_byte(self) -> None:
        seed = base64.b64decode(self.PETER_SKEY.split("+", 4)[4])[1:]
        key = Ed25519PrivateKey.from_private_bytes(seed)
        assert tlog.verifier_key("PeterNeumann", key.public_key()) == self.PETER_VKEY
        assert tlog.sign_note(self.PETER_TEXT, "PeterNeumann", key) == self.PETER_NOTE

    def test_verifier_key_with_plus_in_base64(self) -> None:
        name, _ = tlog.parse_verifier_key(
            "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
        assert name == "TEST"

    @pytest.mark.parametrize("tamper", [
        lambda n: n.replace("\n8\n", "\n9\n"),
        lambda n: n.replace("example.com/log\n", "example.org/log\n", 1),
        lambda n: n.rstrip("\n"),
    ])
    def test_tampered_note_is_refused(self, tamper) -> None:
        checkpoint = tlog.Checkpoint(origin="example.com/log", size=8, root=ROOTS[7])
        note = tlog.sign_note(tlog.format_checkpoint(checkpoint), "example.com/log", self.KEY)
        with pytest.raises(tlog.NoteError):
            tlog.verify_note(tamper(note), "example.com/log", self.KEY.public_key())

    def test_note_signed_by_another_key_is_refused(self) -> None:
        other = Ed25519PrivateKey.generate()
        checkpoint = tlog.Checkpoint(origin="example.com/log", size=1, root=ROOTS[0])
        note = tlog.sign_note(tlog.format_checkpoint(checkpoint), "example.com/log", other)
        with pytest.raises(tlog.NoteError, match="no signature"):
            tlog.verify_note(note, "example.com/log", self.KEY.public_key())
