from collections.abc import Callable
from pathlib import Path

import pytest

from einmal.domain.proofs import ProofType
from policies import (
    DuplicateServiceError,
    PolicyDirectoryError,
    PolicyError,
    PolicyRuleError,
    PolicySchemaError,
    PolicySet,
    PolicySyntaxError,
    check_directory,
    load_policies,
    load_policy_file,
)
from tests.unit.policies._helpers import GOOD, PERMISSION, write

Edit = Callable[[str], str]

# (test id, edit of GOOD, error class, field path, words in the problem)
REFUSED: list[tuple[str, Edit, type[PolicyError], str, str]] = [
    ("unknown top-level field",
     lambda t: t.replace('land = "DE"', 'land = "DE"\nsecret_backdoor = true'),
     PolicySchemaError, "secret_backdoor", "unknown field (allowed here: id, name"),
    ("unknown field in a permission",
     lambda t: t.replace("retention_days = 2190", "retention_days = 2190\nreason = 'x'"),
     PolicySchemaError, "permissions[0].reason", "unknown field"),
    ("missing required field",
     lambda t: t.replace('authority = "Familienkasse"\n', ""),
     PolicySchemaError, "authority", "required field is missing"),
    ("unknown data field name in fields",
     lambda t: t.replace('"birth_date", "parents"', '"birth_date", "salary"'),
     PolicyRuleError, "permissions[0].fields[2]",
     "unknown field 'salary' for proof type 'birth' (known: birth_date"),
    ("field of another proof type",
     lambda t: t.replace('"parents"]', '"parents", "months"]'),
     PolicyRuleError, "permissions[0].fields[3]", "unknown field 'months'"),
    ("field listed twice",
     lambda t: t.replace('"parents"]', '"parents", "parents"]'),
     PolicyRuleError, "permissions[0].fields[3]", "listed twice"),
    ("empty fields",
     lambda t: t.replace('fields = ["child_given_names", "birth_date", "parents"]', "fields = []"),
     PolicySchemaError, "permissions[0].fields", "at least one"),
    ("wrong proof_type",
     lambda t: t.replace('proof_type = "birth"', 'proof_type = "marriage"'),
     PolicySchemaError, "permissions[0].proof_type",
     "unknown proof type 'marriage' (known: 'birth', 'custody', 'income')"),
    ("private key member d",
     lambda t: t.replace('kty = "OKP"', 'kty = "OKP"\nd = "c2VjcmV0"'),
     PolicyRuleError, "keys[0].d", "a private key must never be in a policy document"),
    ("duplicate purpose",
     lambda t: t + "\n" + PERMISSION,
     PolicyRuleError, "permissions[1].purpose",
     "duplicate permission: 'birth' for purpose 'kindergeld-antrag' is already in permissions[0]"),
    ("bad TOML syntax",
     lambda t: t.replace('name = "Kindergeld online"', 'name = "Kindergeld online'),
     PolicySyntaxError, "line 2, column", "not valid TOML"),
    ("empty permissions",
     lambda t: t[: t.index("[[permissions]]")].replace('land = "DE"',
                                                       'land = "DE"\npermissions = []'),
     PolicySchemaError, "permissions", "must list at least one entry"),
    ("no keys",
     lambda t: t[: t.index("[[keys]]")].replace('land = "DE"', 'land = "DE"\nkeys = []')
     + PERMISSION,
     PolicySchemaError, "keys", "must list at least one entry"),
    ("unknown Land",
     lambda t: t.replace('land = "DE"', 'land = "XX"'),
     PolicyRuleError, "land", "unknown Land code 'XX' (use one of BB, BE,"),
    ("not an Ed25519 key",
     lambda t: t.replace('crv = "Ed25519"', 'crv = "X25519"'),
     PolicyRuleError, "keys[0]", "only Ed25519 signing keys"),
    ("key x of the wrong length",
     lambda t: t.replace('x = "', 'x = "AAAA'),
     PolicySchemaError, "keys[0].x", "base64url encoding of a 32-byte Ed25519 public key"),
    ("key without kid",
     lambda t: t.replace('kid = "familienkasse-test-demo-1"\n', ""),
     PolicySchemaError, "keys[0].kid", "required field is missing"),
    ("id not a slug",
     lambda t: t.replace('id = "familienkasse-test"', 'id = "Familien Kasse"'),
     PolicySchemaError, "id", "lower-case id"),
    ("wrong type",
     lambda t: t.replace("consent_required = true", 'consent_required = "yes"'),
     PolicySchemaError, "permissions[0].consent_required", "expected true or false, got text"),
    ("retention not positive",
     lambda t: t.replace("retention_days = 2190", "retention_days = 0"),
     PolicySchemaError, "permissions[0].retention_days", ">= 1"),
]


class TestLoadPolicyFileRefuses:
    @pytest.mark.parametrize(("edit", "kind", "field", "words"),
                             [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
    def test_message_names_file_field_and_problem(self, tmp_path: Path, edit: Edit,
                                                  kind: type[PolicyError], field: str,
                                                  words: str) -> None:
        path = write(tmp_path, "kindergeld.toml", edit(GOOD))
        with pytest.raises(kind) as caught:
            load_policy_file(path)
        error = caught.value
        assert error.file == "kindergeld.toml"
        assert error.field.startswith(field)
        assert words in error.problem
        assert str(error).startswith(f"kindergeld.toml: {error.field}: ")
        assert "`" not in str(error)  # msgspec's markup is translated
        assert "$" not in error.field

    def test_several_rule_problems_in_one_file_are_all_listed(self, tmp_path: Path) -> None:
        text = GOOD.replace('land = "DE"', 'land = "XX"').replace('"parents"]', '"salary"]')
        path = write(tmp_path, "kindergeld.toml", text)
        with pytest.raises(PolicyRuleError) as caught:
            load_policy_file(path)
        assert len(caught.value.problems) == 2
        assert str(caught.value).endswith("(and 1 more problem)")

    def test_unreadable_bytes_are_a_syntax_error(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.toml"
        path.write_bytes('name = "Gro\xdf"'.encode("latin-1"))
        with pytest.raises(PolicySyntaxError, match=r"^latin1.toml: not UTF-8 text$"):
            load_policy_file(path)


class TestLoadPoliciesRefuses:
    def test_duplicate_id_across_files_names_both_files(self, tmp_path: Path) -> None:
        write(tmp_path, "a.toml", GOOD)
        write(tmp_path, "b.toml", GOOD)
        with pytest.raises(DuplicateServiceError) as caught:
            load_policies(tmp_path)
        assert str(caught.value) == ("b.toml: id: service id 'familienkasse-test' is already "
                                     "used by a.toml")

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PolicyDirectoryError, match="policy directory does not exist"):
            load_policies(tmp_path / "nope")

    def test_a_file_is_not_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PolicyDirectoryError, match="is not a directory"):
            load_policies(write(tmp_path, "a.toml", GOOD))

    def test_empty_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PolicyDirectoryError, match=r"no policy documents \(\*\.toml\)"):
            load_policies(tmp_path)

    def test_first_problem_is_raised_and_all_are_counted(self, tmp_path: Path) -> None:
        write(tmp_path, "a.toml", "id = ")
        write(tmp_path, "b.toml", GOOD.replace('land = "DE"', 'land = "XX"'))
        with pytest.raises(PolicySyntaxError) as caught:
            load_policies(tmp_path)
        assert caught.value.file == "a.toml"
        assert len(caught.value.problems) == 2
        assert "(and 1 more problem)" in str(caught.value)

    def test_policy_set_refuses_duplicate_ids(self, tmp_path: Path) -> None:
        document = load_policy_file(write(tmp_path, "a.toml", GOOD))
        with pytest.raises(DuplicateServiceError):
            PolicySet([document, document])


class TestCheckDirectory:
    def test_reports_every_problem_across_files_one_line_each(self, tmp_path: Path) -> None:
        write(tmp_path, "a-good.toml", GOOD)
        write(tmp_path, "b-broken.toml", "id = ")
        write(tmp_path, "c-rules.toml",
              GOOD.replace('id = "familienkasse-test"', 'id = "other-service"')
              .replace('land = "DE"', 'land = "XX"').replace('"parents"]', '"salary"]'))
        write(tmp_path, "d-dup.toml", GOOD)
        write(tmp_path, "e-key.toml",
              GOOD.replace('id = "familienkasse-test"', 'id = "third-service"')
              .replace('kty = "OKP"', 'kty = "OKP"\nd = "c2VjcmV0"'))
        problems = check_directory(tmp_path)
        assert [p.split(": ")[0:2] for p in problems] == [
            ["b-broken.toml", "end of document"],
            ["c-rules.toml", "land"],
            ["c-rules.toml", "permissions[0].fields[2]"],
            ["d-dup.toml", "id"],
            ["e-key.toml", "keys[0].d"],
        ]
        assert all("\n" not in p for p in problems)

    def test_a_valid_directory_has_no_problems(self, tmp_path: Path) -> None:
        write(tmp_path, "a.toml", GOOD)
        assert check_directory(tmp_path) == []

    def test_only_toml_files_are_read(self, tmp_path: Path) -> None:
        write(tmp_path, "a.toml", GOOD)
        write(tmp_path, "notes.txt", "not a policy")
        assert check_directory(tmp_path) == []


class TestPolicySet:
    @pytest.fixture(name="policy_set")
    def fx_policy_set(self, tmp_path: Path) -> PolicySet:
        write(tmp_path, "a.toml", GOOD)
        return load_policies(tmp_path)

    def test_unknown_lookups_are_none_or_empty(self, policy_set: PolicySet) -> None:
        assert policy_set.service("nobody") is None
        assert policy_set.permission("nobody", ProofType.BIRTH, "kindergeld-antrag") is None
        assert policy_set.permission("familienkasse-test", ProofType.INCOME,
                                     "kindergeld-antrag") is None
        assert policy_set.permission("familienkasse-test", ProofType.BIRTH, "other") is None
        assert dict(policy_set.public_keys("nobody")) == {}

    def test_lookups(self, policy_set: PolicySet) -> None:
        assert len(policy_set) == 1
        assert "familienkasse-test" in policy_set
        document = policy_set.service("familienkasse-test")
        assert document is not None
        assert policy_set.services() == (document,)
        permission = policy_set.permission("familienkasse-test", ProofType.BIRTH,
                                           "kindergeld-antrag")
        assert permission is document.permissions[0]
        assert permission.fields == ("child_given_names", "birth_date", "parents")
        assert not permission.preview

    def test_keys_are_parsed_once_and_read_only(self, policy_set: PolicySet) -> None:
        keys = policy_set.public_keys("familienkasse-test")
        assert list(keys) == ["familienkasse-test-demo-1"]
        assert keys is policy_set.public_keys("familienkasse-test")
        with pytest.raises(TypeError):  # the mapping is read-only
            keys["other"] = keys["familienkasse-test-demo-1"]  # type: ignore[index]  # on purpose

    def test_documents_are_frozen(self, policy_set: PolicySet) -> None:
        document = policy_set.services()[0]
        with pytest.raises(AttributeError):  # the document is frozen
            document.id = "x"  # type: ignore[misc]  # on purpose
