import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from einmal.cli import main
from einmal.demo_keys import demo_public_jwk
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.server import default_policies_dir
from policies import PolicyError, check_directory, load_policies, load_policy_file

SHIPPED = default_policies_dir()
GOOD = (SHIPPED / "familienkasse.toml").read_text()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class TestPolicyDocumentsRefused:
    @pytest.mark.parametrize(("edit", "needle"), [
        (lambda t: t + 'unexpected = "x"\n', "unexpected"),
        (lambda t: t.replace('"child_given_names", ', '"child_given_names", "salary", '),
         "permissions[0].fields[1]: unknown field 'salary'"),
        (lambda t: t.replace('proof_type = "birth"', 'proof_type = "marriage"'),
         "permissions[0].proof_type"),
        (lambda t: t.replace('use = "sig"', 'use = "sig"\nd = "secret"'), "keys[0].d"),
        (lambda t: t.replace('land = "DE"', 'land = "XX"'), "land: unknown Land code 'XX'"),
        (lambda t: t.replace("consent_required = true", 'consent_required = "yes"'),
         "permissions[0].consent_required"),
        (lambda t: t.replace('id = "familienkasse"', 'id = "Familien Kasse"'), "id"),
        (lambda t: t + t[t.index("[[permissions]]"):], "duplicate permission"),
        (lambda t: t.replace("[[permissions]]", "[[nope]]"), "nope: Object contains unknown field"),
        (lambda t: t.replace('name = "Kindergeld online"', 'name = "Kindergeld online'),
         "not valid TOML"),
    ])
    def test_bad_document_names_file_field_and_problem(self, tmp_path: Path, edit, needle: str,
                                                       ) -> None:
        path = _write(tmp_path, "familienkasse.toml", edit(GOOD))
        with pytest.raises(PolicyError) as caught:
            load_policy_file(path)
        message = str(caught.value)
        assert message.startswith("familienkasse.toml: ")
        assert needle in message

    def test_duplicate_id_across_files(self, tmp_path: Path) -> None:
        _write(tmp_path, "a.toml", GOOD)
        _write(tmp_path, "b.toml", GOOD)
        with pytest.raises(PolicyError, match="b.toml: id: 'familienkasse' is already used by a.toml"):
            load_policies(tmp_path)

    def test_check_reports_every_problem_at_once(self, tmp_path: Path) -> None:
        _write(tmp_path, "one.toml", GOOD.replace('land = "DE"', 'land = "XX"'))
        _write(tmp_path, "two.toml", "id = ")
        _, problems = check_directory(tmp_path)
        assert len(problems) == 2
        assert problems[0].startswith("one.toml: land")
        assert problems[1].startswith("two.toml: not valid TOML")

    def test_empty_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PolicyError, match="no policy documents"):
            load_policies(tmp_path)


class TestShippedPolicies:
    def test_load_and_cover_the_required_services(self) -> None:
        policy_set = load_policies(SHIPPED)
        ids = {d.id for d in policy_set.services()}
        assert ids == {"elterngeldstelle-bremen", "familienkasse",
                       "standesamt-namensdienst-bremen", "unterhaltsvorschussstelle-hamburg"}

    def test_demo_keys_match_the_derived_keys(self) -> None:
        for document in load_policies(SHIPPED).services():
            assert document.demo
            assert document.keys[0].x == demo_public_jwk(document.id)["x"]
            assert document.keys[0].kid in load_policies(SHIPPED).public_keys(document.id)

    def test_uvo_may_fetch_custody_with_the_custody_facts(self) -> None:
        permission = load_policies(SHIPPED).permission(
            "unterhaltsvorschussstelle-hamburg", ProofType.CUSTODY, "unterhaltsvorschuss-antrag")
        assert permission is not None
        assert permission.consent_required
        assert {"custody", "holders", "as_of"} <= set(permission.fields)

    def test_fields_are_minimised_below_the_full_proof(self) -> None:
        familienkasse = load_policies(SHIPPED).permission("familienkasse", ProofType.BIRTH,
                                                          "kindergeld-antrag")
        assert familienkasse is not None
        assert set(familienkasse.fields) < PROOF_FIELDS[ProofType.BIRTH]
        assert "register_number" not in familienkasse.fields

    def test_name_service_works_on_legal_basis_without_consent(self) -> None:
        permission = load_policies(SHIPPED).permission(
            "standesamt-namensdienst-bremen", ProofType.BIRTH, "namensbestimmung")
        assert permission is not None
        assert not permission.consent_required

    def test_unknown_lookups_are_none(self) -> None:
        policy_set = load_policies(SHIPPED)
        assert policy_set.service("nobody") is None
        assert policy_set.permission("familienkasse", ProofType.INCOME, "kindergeld-antrag") is None


class TestPoliciesCheckCommand:
    def test_ok(self) -> None:
        result = CliRunner().invoke(main, ["policies", "check", str(SHIPPED)])
        assert result.exit_code == 0
        assert "OK: 4 documents, 7 permissions" in result.output

    def test_problems_one_line_each_exit_1(self, tmp_path: Path) -> None:
        shutil.copy(SHIPPED / "familienkasse.toml", tmp_path / "good.toml")
        _write(tmp_path, "bad.toml", GOOD.replace('id = "familienkasse"', 'id = "other-kasse"')
               .replace('land = "DE"', 'land = "XX"'))
        result = CliRunner().invoke(main, ["policies", "check", str(tmp_path)])
        assert result.exit_code == 1
        assert result.output.strip() == "bad.toml: land: unknown Land code 'XX' (use one of " \
            "BB, BE, BW, BY, DE, HB, HE, HH, MV, NI, NW, RP, SH, SL, SN, ST, TH)"

    def test_missing_directory_exit_2(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(main, ["policies", "check", str(tmp_path / "nope")])
        assert result.exit_code == 2
        assert "does not exist" in result.output
