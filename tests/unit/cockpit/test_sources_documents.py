"""Source documents (issue 15 §5): a register or another broker is a TOML document with its URL,
key and name; every problem is one line naming file and field."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cockpit.sources import DOCUMENTS_DIR, SourceDocumentError, load_source_file, load_sources
from einmal.keys import load_or_create_signing_key, private_jwk, public_jwk

REGISTERS = "http://127.0.0.1:9/registers"
BROKER = "http://127.0.0.1:9"


def _public() -> dict[str, str]:
    return public_jwk(Ed25519PrivateKey.generate().public_key(), "source-1")


def _toml_key(jwk: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in jwk.items()) + " }"


def _document(**fields: str) -> str:
    values = {"id": '"standesamt:04011000"', "name": '"Standesamt Bremen"',
              "kind": '"register"', "group": '"Standesämter"',
              "url": '"{registers_base_url}/standesamt/04011000/dsc"',
              "key": _toml_key(_public())}
    values.update(fields)
    lines = [f"{k} = {v}" for k, v in values.items() if v]
    return "[[source]]\n" + "\n".join(lines) + "\n"


def _load(tmp_path: Path, text: str, name: str = "one.toml", keys_dir: Path | None = None):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_source_file(path, registers_base_url=REGISTERS, broker_base_url=BROKER,
                            keys_dir=keys_dir)


def _error(tmp_path: Path, text: str, **kwargs) -> SourceDocumentError:
    with pytest.raises(SourceDocumentError) as caught:
        _load(tmp_path, text, **kwargs)
    return caught.value


class TestRefusals:
    def test_a_private_key_is_refused_before_anything_else(self, tmp_path: Path) -> None:
        secret = private_jwk(Ed25519PrivateKey.generate(), "oops")
        error = _error(tmp_path, _document(key=_toml_key(secret), kind='"nonsense"'))
        assert str(error).startswith("one.toml: source[0].key: a private key must never")

    def test_a_source_without_key_is_refused(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(key=""))
        assert str(error).startswith("one.toml: source[0].key: missing")

    def test_key_and_key_file_together_are_refused(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(key_file='"k.json"'), keys_dir=tmp_path)
        assert str(error) == "one.toml: source[0].key_file: give key or key_file, not both"

    def test_a_key_that_is_no_ed25519_jwk_is_refused(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(key='{ kty = "EC", crv = "P-256", x = "a" }'))
        assert str(error).startswith("one.toml: source[0].key: not usable:")

    @pytest.mark.parametrize("name", ["../elsewhere.json", "/etc/passwd"])
    def test_a_key_file_outside_the_keys_dir_is_refused(self, tmp_path: Path, name: str,
                                                        ) -> None:
        error = _error(tmp_path, _document(key="", key_file=json.dumps(name)),
                       keys_dir=tmp_path)
        assert str(error) == ("one.toml: source[0].key_file: a file name in the keys dir, "
                              "not a path")

    def test_a_key_file_holding_a_private_key_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "bad.json").write_text(json.dumps(
            private_jwk(Ed25519PrivateKey.generate(), "x")))
        error = _error(tmp_path, _document(key="", key_file='"bad.json"'), keys_dir=tmp_path)
        assert error.field == "source[0].key_file"
        assert "private key" in error.text

    def test_an_unknown_kind_names_the_field(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(kind='"registry"'))
        assert error.file == "one.toml"
        assert error.field == "source[0].kind"

    def test_an_unknown_field_is_named(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(colour='"blue"'))
        assert str(error) == "one.toml: source[0].colour: unknown field"

    def test_a_missing_field_is_named(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(name=""))
        assert str(error) == "one.toml: source[0].name: missing"

    def test_a_bad_id_is_explained(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(id='"Standesamt Bremen!"'))
        assert error.field == "source[0].id"
        assert "an id of letters, digits" in error.text

    def test_an_unknown_placeholder_in_the_id_is_refused(self, tmp_path: Path) -> None:
        error = _error(tmp_path, _document(id='"broker:{cockpit_host}"'))
        assert error.field == "source[0].id"
        assert "only the placeholders" in error.text

    @pytest.mark.parametrize("url", ['"{registers_base_url}/x?y=1"', '"ftp://host/dsc"',
                                     '"{cockpit_base_url}/dsc"', '"/relative/dsc"'])
    def test_a_bad_url_is_refused(self, tmp_path: Path, url: str) -> None:
        error = _error(tmp_path, _document(url=url))
        assert error.field == "source[0].url"

    def test_not_toml_is_refused_with_the_place(self, tmp_path: Path) -> None:
        error = _error(tmp_path, "[[source]\nid = 1\n")
        assert str(error).startswith("one.toml: not valid TOML:")

    def test_a_document_without_sources_is_refused(self, tmp_path: Path) -> None:
        error = _error(tmp_path, "# nothing\n")
        assert str(error) == "one.toml: source: missing"

    def test_the_same_id_in_two_files_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "a.toml").write_text(_document(), encoding="utf-8")
        (tmp_path / "b.toml").write_text(_document(), encoding="utf-8")
        with pytest.raises(SourceDocumentError) as caught:
            load_sources(tmp_path, registers_base_url=REGISTERS, broker_base_url=BROKER)
        assert str(caught.value) == ("b.toml: id: 'standesamt:04011000' is already the id of a "
                                     "source in a.toml")

    def test_an_empty_folder_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(SourceDocumentError, match="holds no source documents"):
            load_sources(tmp_path, registers_base_url=REGISTERS, broker_base_url=BROKER)


class TestGoodDocuments:
    def test_a_document_is_read_with_the_url_filled_in(self, tmp_path: Path) -> None:
        key = _public()
        [spec] = _load(tmp_path, _document(key=_toml_key(key)))
        assert spec.info.id == "standesamt:04011000"
        assert spec.info.name == "Standesamt Bremen"
        assert spec.info.kind == "register"
        assert spec.info.group == "Standesämter"
        assert spec.url == f"{REGISTERS}/standesamt/04011000/dsc"
        assert spec.public_key() == key

    def test_another_broker_is_one_more_source_of_kind_broker(self, tmp_path: Path) -> None:
        text = _document() + _document(id='"einmal-broker-hh"', name='"Einmal Hamburg"',
                                       kind='"broker"', group='"Vermittlungsstellen"',
                                       url='"https://einmal.hamburg.example/dsc"')
        first, second = _load(tmp_path, text)
        assert (first.info.kind, second.info.kind) == ("register", "broker")
        assert second.url == "https://einmal.hamburg.example/dsc"

    def test_a_key_file_is_read_from_the_keys_dir(self, tmp_path: Path) -> None:
        signing = load_or_create_signing_key(tmp_path, "register-source")
        [spec] = _load(tmp_path, _document(key="", key_file='"register-source.public.json"'),
                       keys_dir=tmp_path)
        assert spec.public_key() == {"keys": [signing.public_jwk]}

    def test_a_key_file_not_there_yet_is_read_on_first_use(self, tmp_path: Path) -> None:
        [spec] = _load(tmp_path, _document(key="", key_file='"later.public.json"'),
                       keys_dir=tmp_path)
        with pytest.raises(OSError, match="No such file"):
            spec.public_key()
        signing = load_or_create_signing_key(tmp_path, "later")
        assert spec.public_key() == {"keys": [signing.public_jwk]}

    def test_the_shipped_documents_name_every_simulated_source(self, tmp_path: Path) -> None:
        specs = load_sources(DOCUMENTS_DIR, registers_base_url=REGISTERS,
                             broker_base_url=BROKER, keys_dir=tmp_path)
        ids = {s.id for s in specs}
        assert len([i for i in ids if i.startswith("standesamt:")]) == 24
        assert len([i for i in ids if i.startswith("sorgeregister:")]) == 16
        assert "einkommensregister" in ids
        broker = next(s for s in specs if s.info.kind == "broker")
        assert broker.url == f"{BROKER}/dsc"
        assert broker.id == "broker:127.0.0.1:9"  # broker.source.broker_source_id's rule
        bremen = next(s for s in specs if s.id == "standesamt:04011000")
        assert bremen.url == f"{REGISTERS}/standesamt/04011000/dsc"
        assert bremen.info.name == "Standesamt Bremen"
