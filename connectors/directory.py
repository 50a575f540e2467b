"""The routing directory (like the EU OOTS Data Service Directory): which register serves what.

Municipality key (AGS) -> Standesamt; Land code -> Sorgeregister; one income register.
URLs are built from one ``registers_url`` base:

* ``{base}/standesamt/{ags}/geburt``  the Standesamt of a municipality (register id
  ``standesamt:{ags}``)
* ``{base}/sorge/{land}``             the Sorgeregister of a Land (``sorgeregister:{land}``)
* ``{base}/income``                   the one income register (``einkommensregister``)
"""

from dataclasses import dataclass

__all__ = ["LAND_NAMES", "MUNICIPALITIES", "Directory", "Municipality"]


@dataclass(frozen=True, slots=True)
class Municipality:
    ags: str
    name: str
    land: str


#: A synthetic but plausible set of municipalities (AGS: Land key + district + municipality).
MUNICIPALITIES: dict[str, Municipality] = {m.ags: m for m in [
    Municipality("04011000", "Bremen", "HB"),
    Municipality("04012000", "Bremerhaven", "HB"),
    Municipality("02000000", "Hamburg", "HH"),
    Municipality("11000000", "Berlin (Standesamt I, Auslandsgeburten)", "BE"),
    Municipality("03241001", "Hannover", "NI"),
    Municipality("03459003", "Bad Essen", "NI"),
    Municipality("03361008", "Ottersberg", "NI"),
    Municipality("03452011", "Wiesmoor", "NI"),
    Municipality("01002000", "Kiel", "SH"),
    Municipality("01058093", "Hohenwestedt", "SH"),
    Municipality("05315000", "Köln", "NW"),
    Municipality("05958044", "Schmallenberg", "NW"),
    Municipality("06412000", "Frankfurt am Main", "HE"),
    Municipality("07111000", "Koblenz", "RP"),
    Municipality("08111000", "Stuttgart", "BW"),
    Municipality("08436064", "Wangen im Allgäu", "BW"),
    Municipality("09162000", "München", "BY"),
    Municipality("09780139", "Oberstdorf", "BY"),
    Municipality("10041100", "Saarbrücken", "SL"),
    Municipality("12054000", "Potsdam", "BB"),
    Municipality("13003000", "Rostock", "MV"),
    Municipality("14612000", "Dresden", "SN"),
    Municipality("15003000", "Magdeburg", "ST"),
    Municipality("16051000", "Erfurt", "TH"),
]}

LAND_NAMES = {
    "BW": "Baden-Württemberg", "BY": "Bayern", "BE": "Berlin", "BB": "Brandenburg",
    "HB": "Bremen", "HH": "Hamburg", "HE": "Hessen", "MV": "Mecklenburg-Vorpommern",
    "NI": "Niedersachsen", "NW": "Nordrhein-Westfalen", "RP": "Rheinland-Pfalz",
    "SL": "Saarland", "SN": "Sachsen", "ST": "Sachsen-Anhalt", "SH": "Schleswig-Holstein",
    "TH": "Thüringen",
}


@dataclass(frozen=True, slots=True)
class Directory:
    """Routing table; build with ``Directory.from_base_url(registers_url)``."""

    registers_url: str

    @classmethod
    def from_base_url(cls, registers_url: str) -> "Directory":
        return cls(registers_url.rstrip("/"))

    def municipality(self, ags: str) -> Municipality | None:
        return MUNICIPALITIES.get(ags)

    def standesamt(self, ags: str) -> tuple[Municipality, str] | None:
        municipality = MUNICIPALITIES.get(ags)
        if municipality is None:
            return None
        return municipality, f"{self.registers_url}/standesamt/{ags}/geburt"

    def sorgeregister(self, land: str) -> str | None:
        if land not in LAND_NAMES:
            return None
        return f"{self.registers_url}/sorge/{land}"

    def income_register(self) -> str:
        return f"{self.registers_url}/income"
