"""A synthetic, deterministic population of families (seeded; no wall clock; no real persons).

Covers the cases of domain.md: married parents, unmarried mother without declaration, a custody
declaration certified in another Land, marriage after the birth, a court decision, a move to
another Land, twins, one parent unknown, a birth abroad (Standesamt I Berlin), small
municipalities; income: steady, part-time change, unemployment gap, mini-job, self-employed.
"""

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

import msgspec

from connectors.directory import LAND_NAMES, MUNICIPALITIES
from einmal.domain.idnr import check_digit, validate_idnr

__all__ = ["Child", "CustodyPeriod", "DemoCitizen", "Family", "Parent", "Population",
           "generate_population"]

GIVEN_F = ["Anna", "Clara", "Emma", "Lea", "Marie", "Sophie", "Hannah", "Lina", "Mila", "Ella",
           "Johanna", "Frieda", "Ida", "Greta", "Paula", "Luisa", "Nora", "Maja", "Jana", "Sara"]
GIVEN_M = ["Ben", "Paul", "Leon", "Finn", "Noah", "Elias", "Felix", "Jonas", "Luis", "Emil",
           "Henry", "Theo", "Anton", "Jakob", "Moritz", "Karl", "Oskar", "Max", "David", "Tim"]
FAMILY = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
          "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
          "Schwarz", "Braun", "Hofmann", "Zimmermann", "Krüger", "Hartmann", "Lange", "Werner",
          "Krause", "Lehmann", "Köhler", "Peters", "Janssen", "Öztürk"]
#: The income register holds months in this window.
INCOME_FIRST = date(2023, 1, 1)
INCOME_MONTHS = 48


@dataclass
class Parent:
    idnr: str
    given_names: str
    family_name: str
    sex: str
    role: str  # "mother" | "father"
    #: "steady" | "part_time_change" | "gap" | "minijob" | "self_employed"
    income_profile: str = "steady"
    income: dict[str, tuple[str, str]] = field(default_factory=dict)  # month -> (eur, kind)


@dataclass(frozen=True)
class CustodyPeriod:
    since: date
    custody: str          # "joint" | "sole"
    holders: tuple[int, ...]  # indexes into family.parents
    basis: str            # "marriage_at_birth" | "law" | "declaration" | "marriage" | "court"


@dataclass
class Child:
    idnr: str
    given_names: str
    family_name: str
    sex: str
    birth_date: date
    place_of_birth: str   # AGS
    register_number: str
    custody: list[CustodyPeriod] = field(default_factory=list)
    custody_land: str = ""  # the Land whose Sorgeregister holds the record


@dataclass
class Family:
    id: str
    case: str
    home_land: str
    parents: list[Parent]
    children: list[Child]
    married_on: date | None = None


class DemoCitizen(msgspec.Struct, frozen=True, kw_only=True):
    idnr: str
    given_names: str
    family_name: str
    role: str                     # "parent" | "child"
    family: str | None            # demo family name ("elfe", "uvo") or None
    home_land: str
    birth_date: str | None = None
    place_of_birth: str | None = None


class Population:
    def __init__(self, families: list[Family]) -> None:
        self.families = families
        self.children: dict[str, tuple[Family, Child]] = {}
        self.parents: dict[str, tuple[Family, Parent]] = {}
        for family in families:
            for child in family.children:
                self.children[child.idnr] = (family, child)
            for parent in family.parents:
                self.parents[parent.idnr] = (family, parent)

    def family(self, family_id: str) -> Family:
        return next(f for f in self.families if f.id == family_id)

    def _citizens_of(self, family: Family, label: str | None) -> list[DemoCitizen]:
        people = [DemoCitizen(idnr=p.idnr, given_names=p.given_names,
                              family_name=p.family_name, role="parent", family=label,
                              home_land=family.home_land) for p in family.parents]
        people += [DemoCitizen(idnr=c.idnr, given_names=c.given_names,
                               family_name=c.family_name, role="child", family=label,
                               home_land=family.home_land, birth_date=c.birth_date.isoformat(),
                               place_of_birth=c.place_of_birth) for c in family.children]
        return people

    def demo_citizens(self) -> list[DemoCitizen]:
        """The named demo families the scenarios use."""
        return [c for f in self.families if f.id in {"elfe", "uvo"}
                for c in self._citizens_of(f, f.id)]

    def citizens(self) -> list[DemoCitizen]:
        return [c for f in self.families for c in self._citizens_of(f, None)]


class _IdNrs:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen: set[str] = set()

    def reseed(self, rng: random.Random) -> None:
        self._rng = rng

    def new(self) -> str:
        while True:
            digits = self._rng.sample(range(10), 9)
            digits.insert(self._rng.randrange(10), self._rng.choice(digits))
            if digits[0] == 0:
                continue
            body = "".join(map(str, digits))
            value = body + str(check_digit(body))
            if value not in self._seen:
                validate_idnr(value)
                self._seen.add(value)
                return value


def _month(index: int) -> str:
    year, month = divmod(INCOME_FIRST.month - 1 + index, 12)
    return f"{INCOME_FIRST.year + year:04d}-{month + 1:02d}"


def _income(rng: random.Random, parent: Parent, birth: date) -> None:
    base = rng.randrange(2200, 5200, 50)
    change_at = rng.randrange(12, 30)
    gap = range(rng.randrange(10, 26), rng.randrange(27, 33))
    for index in range(INCOME_MONTHS):
        month = _month(index)
        if parent.income_profile == "self_employed":
            return
        if parent.income_profile == "minijob":
            parent.income[month] = ("538.00", "minijob")
        elif parent.income_profile == "gap" and index in gap:
            continue
        elif parent.income_profile == "part_time_change" and index >= change_at:
            parent.income[month] = (f"{base * 0.6:.2f}", "part_time")
        else:
            parent.income[month] = (f"{base:.2f}", "employee")
    del birth


def _register_number(rng: random.Random, birth: date) -> str:
    return f"G {rng.randrange(1, 9999)}/{birth.year}"


def generate_population(seed: int = 1, families: int = 300) -> Population:
    """``families`` synthetic families plus the two demo families (always the same)."""
    rng = random.Random(seed)
    ids = _IdNrs(random.Random("einmal-demo-families"))
    result = [_elfe(ids), _uvo(ids)]  # the same people whatever the seed
    ids.reseed(random.Random(seed))
    cases = ["married", "unmarried_sole", "declaration_other_land", "married_after_birth",
             "court_to_father", "moved", "twins", "father_unknown", "born_abroad"]
    agss = sorted(MUNICIPALITIES)
    lands = sorted(LAND_NAMES)
    for number in range(families):
        case = cases[number % len(cases)]
        family_name = rng.choice(FAMILY)
        mother_name = family_name if case in {"married", "twins", "court_to_father", "moved",
                                               "born_abroad"} else rng.choice(FAMILY)
        profiles = ["steady", "part_time_change", "gap", "minijob", "self_employed"]
        mother = Parent(ids.new(), rng.choice(GIVEN_F), mother_name, "w", "mother",
                        rng.choice(profiles))
        parents = [mother]
        if case != "father_unknown":
            parents.append(Parent(ids.new(), rng.choice(GIVEN_M), family_name, "m", "father",
                                  rng.choice(profiles)))
        ags = "11000000" if case == "born_abroad" else rng.choice(agss)
        birth_land = MUNICIPALITIES[ags].land
        birth = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 1000))
        home = birth_land if case != "moved" else rng.choice([x for x in lands if x != birth_land])
        child_count = 2 if case == "twins" else 1
        children: list[Child] = []
        for _ in range(child_count):
            sex = rng.choice(["w", "m", "w", "m", "x", "d"])
            given = rng.choice(GIVEN_F if sex == "w" else GIVEN_M)
            children.append(Child(ids.new(), given,
                                  family_name if len(parents) == 2 else mother.family_name,
                                  sex, birth, ags, _register_number(rng, birth),
                                  custody_land=birth_land))
        married_on = None
        for child in children:
            both = (0, 1) if len(parents) == 2 else (0,)
            if case in {"married", "twins", "moved", "born_abroad"}:
                married_on = birth - timedelta(days=rng.randrange(200, 3000))
                child.custody = [CustodyPeriod(birth, "joint", both, "marriage_at_birth")]
            elif case in {"unmarried_sole", "father_unknown"}:
                child.custody = [CustodyPeriod(birth, "sole", (0,), "law")]
            elif case == "declaration_other_land":
                child.custody = [CustodyPeriod(birth, "joint", both, "declaration")]
                child.custody_land = rng.choice([x for x in lands if x != birth_land])
            elif case == "married_after_birth":
                married_on = birth + timedelta(days=rng.randrange(60, 400))
                child.custody = [CustodyPeriod(birth, "sole", (0,), "law"),
                                 CustodyPeriod(married_on, "joint", both, "marriage")]
            elif case == "court_to_father":
                decided = birth + timedelta(days=rng.randrange(90, 500))
                child.custody = [CustodyPeriod(birth, "joint", both, "marriage_at_birth"),
                                 CustodyPeriod(decided, "sole", (1,), "court")]
        for parent in parents:
            _income(rng, parent, birth)
        result.append(Family(f"f{number:05d}", case, home, parents, children, married_on))
    return Population(result)


def _elfe(ids: _IdNrs) -> Family:
    anna = Parent(ids.new(), "Anna", "Schmidt", "w", "mother", "steady")
    ben = Parent(ids.new(), "Ben", "Schmidt", "m", "father", "part_time_change")
    for parent, monthly in ((anna, "3450.00"), (ben, "4100.00")):
        for index in range(INCOME_MONTHS):
            month = _month(index)
            if parent is ben and month >= "2026-03":
                parent.income[month] = ("2460.00", "part_time")
            else:
                parent.income[month] = (monthly, "employee")
    birth = date(2026, 10, 12)
    mia = Child(ids.new(), "Mia Sophie", "Schmidt", "w", birth, "04011000", "G 2211/2026",
                [CustodyPeriod(birth, "joint", (0, 1), "marriage_at_birth")], "HB")
    return Family("elfe", "married", "HB", [anna, ben], [mia], married_on=date(2022, 6, 18))


def _uvo(ids: _IdNrs) -> Family:
    clara = Parent(ids.new(), "Clara", "Weber", "w", "mother", "part_time_change")
    for index in range(INCOME_MONTHS):
        clara.income[_month(index)] = ("1890.00", "part_time")
    birth = date(2024, 3, 5)
    leon = Child(ids.new(), "Leon", "Weber", "m", birth, "03459003", "G 57/2024",
                 [CustodyPeriod(birth, "sole", (0,), "law")], "NI")
    # Born in Niedersachsen, now living in Hamburg: the HH register's index points to NI.
    return Family("uvo", "unmarried_sole_moved", "HH", [clara], [leon])
