from pathlib import Path

from click.testing import CliRunner

from einmal_app.cli_policies import check
from policies import DOCUMENTS_DIR
from tests.unit.policies._helpers import GOOD, write


def _run(*args: str):  # -> click.testing.Result
    return CliRunner().invoke(check, list(args))


class TestPoliciesCheck:
    def test_missing_directory_is_one_line_exit_2(self, tmp_path: Path) -> None:
        result = _run(str(tmp_path / "nope"))
        assert result.exit_code == 2
        assert result.output == f"Error: {tmp_path / 'nope'}: does not exist\n"

    def test_a_file_is_not_a_directory_exit_2(self, tmp_path: Path) -> None:
        path = write(tmp_path, "a.toml", GOOD)
        result = _run(str(path))
        assert result.exit_code == 2
        assert result.output == f"Error: {path}: is not a directory\n"

    def test_empty_directory_is_a_problem_exit_1(self, tmp_path: Path) -> None:
        result = _run(str(tmp_path))
        assert result.exit_code == 1
        assert result.output == f"{tmp_path}: no policy documents (*.toml)\n"

    def test_problems_one_line_each_on_stderr_exit_1(self, tmp_path: Path) -> None:
        write(tmp_path, "a.toml", GOOD)
        write(tmp_path, "b.toml", "id = ")
        write(tmp_path, "c.toml", GOOD.replace('id = "familienkasse-test"', 'id = "other-one"')
              .replace('land = "DE"', 'land = "XX"').replace('"parents"]', '"salary"]'))
        result = _run(str(tmp_path))
        assert result.exit_code == 1
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert [line.split(": ")[0:2] for line in lines] == [
            ["b.toml", "end of document"], ["c.toml", "land"],
            ["c.toml", "permissions[0].fields[2]"]]
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)

    def test_ok_counts_documents_and_permissions(self) -> None:
        result = _run(str(DOCUMENTS_DIR))
        assert result.exit_code == 0, result.output
        assert result.stdout == "OK: 4 documents, 7 permissions\n"
        assert result.stderr == ""
