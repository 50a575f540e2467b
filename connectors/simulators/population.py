"""A synthetic, deterministic population of families (seeded; no wall clock; no real persons).

Covers the cases of domain.md ("Cases worth simulating"):

* custody: married parents at birth (joint); unmarried mother without declaration (sole, by
  law); a custody declaration before the birth certified in another Land (the record is held
  there, the index points to it); marriage after the birth (sole until the marriage date, then
  joint); a family court decision (sole to the father) and a withdrawal (custody "none");
  a move to another Land after the birth (home Land differs from the Land of the place of birth);
* birth: twins (two records, same parents), one parent unknown, a birth abroad registered at
  Standesamt I in Berlin (AGS 11000000), small municipalities (every directory municipality);
* income: steady employee, part-time change within the 12 months before the birth, an
  unemployment gap within those months, a mini-job (<= 556 EUR), self-employed (not held).

Two named demo families are the same whatever the seed: ``elfe`` (married parents in Bremen,
baby born 2026-10-12) and ``uvo`` (a single mother, child born in Bad Essen NI, now in Hamburg).
"""

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

import msgspec

from connectors.directory import LAND_NAMES, MUNICIPALITIES
from einmal.domain.idnr import check_digit, validate_idnr

__all__ = ["CASES", "DEMO_FAMILY_IDS", "INCOME_PROFILES", "Child", "CustodyPeriod",
           "DemoCitizen", "DemoFamily", "Family", "Parent", "Population", "generate_population"]

GIVEN_F = ["Anna", "Clara", "Emma", "Lea", "Marie", "Sophie", "Hannah", "Lina", "Mila", "Ella",
           "Johanna", "Frieda", "Ida", "Greta", "Paula", "Luisa", "Nora", "Maja", "Jana", "Sara"]
GIVEN_M = ["Ben", "Paul", "Leon", "Finn", "Noah", "Elias", "Felix", "Jonas", "Luis", "Emil",
           "Henry", "Theo", "Anton", "Jakob", "Moritz", "Karl", "Oskar", "Max", "David", "Tim"]
GIVEN_X = ["Kim", "Luca", "Noa", "Robin", "Sascha", "Charlie"]
FAMILY = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
          "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
          "Schwarz", "Braun", "Hofmann", "Zimmermann", "Krüger", "Hartmann", "Lange", "Werner",
          "Krause", "Lehmann", "Köhler", "Peters", "Janssen", "Öztürk"]

#: The family cases, assigned round-robin so any 10 consecutive families cover all of them.
CASES = ("married", "unmarried_sole", "declaration_other_land", "married_after_birth",
         "court_to_father", "moved", "twins", "father_unknown", "born_abroad", "court_withdrawal")
INCOME_PROFILES = ("steady", "part_time_change", "gap", "minijob", "self_employed")
DEMO_FAMILY_IDS = ("elfe", "uvo")

#: The income register holds months in this window (2023-01 .. 2026-12).
INCOME_FIRST = date(2023, 1, 1)
INCOME_MONTHS = 48
#: Births of the generated families fall between these dates (income window covers 12 before).
BIRTHS_FROM = date(2024, 1, 1)
BIRTHS_DAYS = 1000
MINIJOB_LIMIT_EUR = 556


@dataclass
class Parent:
    idnr: str
    given_names: str
    family_name: str
    sex: str
    role: str  # "mother" | "father"
    #: one of INCOME_PROFILES
    income_profile: str = "steady"
    income: dict[str, tuple[str, str]] = field(default_factory=dict)  # month -> (eur, kind)


@dataclass(frozen=True)
class CustodyPeriod:
    since: date
    custody: str              # "joint" | "sole" | "none"
    holders: tuple[int, ...]  # indexes into family.parents
    basis: str                # "marriage_at_birth" | "law" | "declaration" | "marriage" | "court"


@dataclass
class Child:
    idnr: str
    given_names: str
    family_name: str
    sex: str                  # "d" | "m" | "w" | "x"
    birth_date: date
    place_of_birth: str       # AGS
    register_number: str
    custody: list[CustodyPeriod] = field(default_factory=list)
    custody_land: str = ""    # the Land whose Sorgeregister holds the record


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
    family: str | None            # family id ("elfe", "uvo", "f00042") - None in citizens()
    home_land: str
    birth_date: str | None = None       # children only
    place_of_birth: str | None = None   # children only: AGS


class DemoFamily(msgspec.Struct, frozen=True, kw_only=True):
    id: str                       # "elfe" | "uvo"
    case: str
    home_land: str
    parents: list[DemoCitizen]
    children: list[DemoCitizen]
    married_on: str | None = None
    custody_land: str = ""        # the Land whose Sorgeregister holds the children's records


class Population:
    """The generated families, with lookups by child and parent IdNr."""

    def __init__(self, families: list[Family]) -> None:
        self.families = families
        self.children: dict[str, tuple[Family, Child]] = {}
        self.parents: dict[str, tuple[Family, Parent]] = {}
        self._by_id = {family.id: family for family in families}
        for family in families:
            for child in family.children:
                self.children[child.idnr] = (family, child)
            for parent in family.parents:
                self.parents[parent.idnr] = (family, parent)

    def family(self, family_id: str) -> Family:
        return self._by_id[family_id]

    @staticmethod
    def _parents_of(family: Family, label: str | None) -> list[DemoCitizen]:
        return [DemoCitizen(idnr=p.idnr, given_names=p.given_names, family_name=p.family_name,
                            role="parent", family=label, home_land=family.home_land)
                for p in family.parents]

    @staticmethod
    def _children_of(family: Family, label: str | None) -> list[DemoCitizen]:
        return [DemoCitizen(idnr=c.idnr, given_names=c.given_names, family_name=c.family_name,
                            role="child", family=label, home_land=family.home_land,
                            birth_date=c.birth_date.isoformat(), place_of_birth=c.place_of_birth)
                for c in family.children]

    def demo_families(self) -> list[DemoFamily]:
        """The named demo families the demo and the scenarios use (``elfe``, ``uvo``)."""
        result = []
        for family_id in DEMO_FAMILY_IDS:
            family = self._by_id[family_id]
            result.append(DemoFamily(
                id=family.id, case=family.case, home_land=family.home_land,
                parents=self._parents_of(family, family.id),
                children=self._children_of(family, family.id),
                married_on=family.married_on.isoformat() if family.married_on else None,
                custody_land=family.children[0].custody_land))
        return result

    def demo_citizens(self) -> list[DemoCitizen]:
        """Every member of the named demo families (parents first, then children)."""
        return [c for f in self.demo_families() for c in (*f.parents, *f.children)]

    def citizens(self) -> list[DemoCitizen]:
        """Everybody, without family labels."""
        return [c for f in self.families
                for c in (*self._parents_of(f, None), *self._children_of(f, None))]


class _IdNrs:
    """Valid, unique IdNrs: nine distinct digits plus one of them repeated once (rule 3),
    no leading 0 (rule 2), the check digit (rule 1). Rule 4 cannot trigger (no triple)."""

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


def _month_index(day: date) -> int:
    return (day.year - INCOME_FIRST.year) * 12 + day.month - INCOME_FIRST.month


def _income(rng: random.Random, parent: Parent, birth: date) -> None:
    """Monthly gross income; changes and gaps fall within the 12 months before the birth."""
    if parent.income_profile == "self_employed":
        return  # the register holds no data for the self-employed
    base = rng.randrange(2200, 5200, 50)
    born = _month_index(birth)
    change_at = born - rng.randrange(3, 9)
    gap_start = born - rng.randrange(6, 11)
    gap = range(gap_start, gap_start + rng.randrange(2, 5))
    minijob = rng.choice(("520.00", "538.00", f"{MINIJOB_LIMIT_EUR}.00"))
    for index in range(INCOME_MONTHS):
        month = _month(index)
        if parent.income_profile == "minijob":
            parent.income[month] = (minijob, "minijob")
        elif parent.income_profile == "gap" and index in gap:
            continue  # unemployed: no earnings reported
        elif parent.income_profile == "part_time_change" and index >= change_at:
            parent.income[month] = (f"{base * 0.6:.2f}", "part_time")
        else:
            parent.income[month] = (f"{base:.2f}", "employee")


def _register_number(rng: random.Random, birth: date) -> str:
    return f"G {rng.randrange(1, 9999)}/{birth.year}"


def _custody(case: str, rng: random.Random, birth: date, parents: int,
             ) -> tuple[list[CustodyPeriod], date | None]:
    both = (0, 1) if parents == 2 else (0,)
    if case in {"married", "twins", "moved", "born_abroad"}:
        married_on = birth - timedelta(days=rng.randrange(200, 3000))
        return [CustodyPeriod(birth, "joint", both, "marriage_at_birth")], married_on
    if case in {"unmarried_sole", "father_unknown"}:
        return [CustodyPeriod(birth, "sole", (0,), "law")], None
    if case == "declaration_other_land":
        return [CustodyPeriod(birth, "joint", both, "declaration")], None
    if case == "married_after_birth":
        married_on = birth + timedelta(days=rng.randrange(60, 400))
        return [CustodyPeriod(birth, "sole", (0,), "law"),
                CustodyPeriod(married_on, "joint", both, "marriage")], married_on
    decided = birth + timedelta(days=rng.randrange(90, 500))
    married_on = birth - timedelta(days=rng.randrange(200, 3000))
    after = (CustodyPeriod(decided, "sole", (1,), "court") if case == "court_to_father"
             else CustodyPeriod(decided, "none", (), "court"))  # court_withdrawal
    return [CustodyPeriod(birth, "joint", both, "marriage_at_birth"), after], married_on


def _family(number: int, rng: random.Random, ids: _IdNrs) -> Family:
    case = CASES[number % len(CASES)]
    agss = sorted(MUNICIPALITIES)
    lands = sorted(LAND_NAMES)
    family_name = rng.choice(FAMILY)
    married_name = case in {"married", "twins", "court_to_father", "court_withdrawal", "moved",
                            "born_abroad"}
    mother = Parent(ids.new(), rng.choice(GIVEN_F), family_name if married_name
                    else rng.choice(FAMILY), "w", "mother", rng.choice(INCOME_PROFILES))
    parents = [mother]
    if case != "father_unknown":
        parents.append(Parent(ids.new(), rng.choice(GIVEN_M), family_name, "m", "father",
                              rng.choice(INCOME_PROFILES)))
    ags = "11000000" if case == "born_abroad" else rng.choice(agss)
    birth_land = MUNICIPALITIES[ags].land
    birth = BIRTHS_FROM + timedelta(days=rng.randrange(BIRTHS_DAYS))
    home = birth_land if case != "moved" else rng.choice([x for x in lands if x != birth_land])
    custody, married_on = _custody(case, rng, birth, len(parents))
    # A declaration certified in another Land: that Land's register holds the record.
    custody_land = (rng.choice([x for x in lands if x != birth_land])
                    if case == "declaration_other_land" else birth_land)
    children: list[Child] = []
    for _ in range(2 if case == "twins" else 1):
        sex = rng.choices(("w", "m", "x", "d"), weights=(48, 48, 2, 2))[0]
        given = rng.choice({"w": GIVEN_F, "m": GIVEN_M}.get(sex, GIVEN_X))
        children.append(Child(ids.new(), given, family_name if len(parents) == 2
                              else mother.family_name, sex, birth, ags,
                              _register_number(rng, birth), list(custody), custody_land))
    for parent in parents:
        _income(rng, parent, birth)
    return Family(f"f{number:05d}", case, home, parents, children, married_on)


def generate_population(seed: int = 1, families: int = 300) -> Population:
    """The two demo families (the same whatever the seed) plus ``families`` synthetic ones.

    Pure and deterministic: the same seed gives the same population; no wall clock.
    """
    # NOTE: random.Random on purpose: synthetic data must be reproducible, not secret.
    ids = _IdNrs(random.Random("einmal-demo-families"))  # noqa: S311 - see NOTE
    result = [_elfe(ids), _uvo(ids)]
    rng = random.Random(seed)  # noqa: S311 - see NOTE
    ids.reseed(random.Random(seed))  # noqa: S311 - see NOTE
    result += [_family(number, rng, ids) for number in range(families)]
    return Population(result)


def _elfe(ids: _IdNrs) -> Family:
    """Married parents in Bremen; Mia born 2026-10-12 in Bremen; joint custody from birth.
    Anna earns steadily, Ben changes to part time in 2026-03 (within the 12 months before)."""
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
    """Clara, unmarried, no declaration: sole custody by law. Leon was born 2024-03-05 in Bad
    Essen (NI); they now live in Hamburg, so the HH register's index points to NI."""
    clara = Parent(ids.new(), "Clara", "Weber", "w", "mother", "steady")  # steady part time
    for index in range(INCOME_MONTHS):
        clara.income[_month(index)] = ("1890.00", "part_time")
    birth = date(2024, 3, 5)
    leon = Child(ids.new(), "Leon", "Weber", "m", birth, "03459003", "G 57/2024",
                 [CustodyPeriod(birth, "sole", (0,), "law")], "NI")
    return Family("uvo", "unmarried_sole_moved", "HH", [clara], [leon])
