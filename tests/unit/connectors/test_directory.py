"""The routing directory."""

from connectors.directory import LAND_NAMES, MUNICIPALITIES, Directory

# The first two digits of an AGS are the Land key.
LAND_KEYS = {"01": "SH", "02": "HH", "03": "NI", "04": "HB", "05": "NW", "06": "HE", "07": "RP",
             "08": "BW", "09": "BY", "10": "SL", "11": "BE", "12": "BB", "13": "MV", "14": "SN",
             "15": "ST", "16": "TH"}


def test_every_municipality_sits_in_the_land_of_its_key() -> None:
    for ags, municipality in MUNICIPALITIES.items():
        assert len(ags) == 8 and ags.isdigit()
        assert LAND_KEYS[ags[:2]] == municipality.land, ags


def test_all_sixteen_lands() -> None:
    assert set(LAND_NAMES) == set(LAND_KEYS.values())


def test_urls_from_one_base() -> None:
    directory = Directory.from_base_url("http://127.0.0.1:8000/registers/")
    municipality, url = directory.standesamt("04011000")
    assert (municipality.name, url) == (
        "Bremen", "http://127.0.0.1:8000/registers/standesamt/04011000/geburt")
    assert directory.sorgeregister("NI") == "http://127.0.0.1:8000/registers/sorge/NI"
    assert directory.income_register() == "http://127.0.0.1:8000/registers/income"


def test_unknown_keys_route_nowhere() -> None:
    directory = Directory.from_base_url("http://x/registers")
    assert directory.standesamt("09999999") is None
    assert directory.sorgeregister("XX") is None
