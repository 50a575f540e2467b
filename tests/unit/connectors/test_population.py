"""The synthetic population: deterministic, valid IdNrs, every case, stable demo families."""

from collections import Counter
from datetime import date

import msgspec
import pytest

from connectors.directory import MUNICIPALITIES
from connectors.simulators.population import (
    CASES,
    DemoCitizen,
    DemoFamily,
    Population,
    generate_population,
)
from einmal.domain.idnr import validate_idnr


@pytest.fixture(scope="module", name="population")
def fx_population() -> Population:
    return generate_population(seed=1, families=300)


def _snapshot(population: Population) -> bytes:
    return msgspec.json.encode([(f.id, f.case, f.home_land, repr(f.parents), repr(f.children),
                                 f.married_on) for f in population.families])


class TestDeterminism:
    def test_same_seed_same_population(self) -> None:
        assert _snapshot(generate_population(7, 50)) == _snapshot(generate_population(7, 50))

    def test_other_seed_other_population(self) -> None:
        assert _snapshot(generate_population(7, 50)) != _snapshot(generate_population(8, 50))

    def test_demo_families_do_not_depend_on_the_seed_or_size(self) -> None:
        assert generate_population(1, 10).demo_families() == \
            generate_population(2, 500).demo_families()

    def test_large_populations_stay_unique(self) -> None:
        people = generate_population(3, 3000).citizens()
        assert len({c.idnr for c in people}) == len(people) > 9000


class TestIdNrs:
    def test_all_valid_and_unique(self, population) -> None:
        ids = [c.idnr for c in population.citizens()]
        assert len(ids) == len(set(ids)) == 2 + 2 + 1 + sum(
            len(f.parents) + len(f.children) for f in population.families[2:])
        for idnr in ids:
            validate_idnr(idnr)  # raises naming the broken rule


class TestCases:
    def test_every_case_and_income_profile_occurs(self, population) -> None:
        assert set(CASES) <= {f.case for f in population.families}
        profiles = {p.income_profile for f in population.families for p in f.parents}
        assert profiles == {"steady", "part_time_change", "gap", "minijob", "self_employed"}

    def test_only_directory_municipalities(self, population) -> None:
        places = {c.place_of_birth for f in population.families for c in f.children}
        assert places <= set(MUNICIPALITIES)
        assert len(places) > 15  # small municipalities too, not only cities

    def test_married_after_birth_is_sole_before_and_joint_after(self, population) -> None:
        family = next(f for f in population.families if f.case == "married_after_birth")
        history = family.children[0].custody
        assert [(p.custody, p.basis) for p in history] == [("sole", "law"), ("joint", "marriage")]
        assert history[1].since == family.married_on > family.children[0].birth_date

    def test_declaration_is_held_in_another_land(self, population) -> None:
        for family in (f for f in population.families if f.case == "declaration_other_land"):
            child = family.children[0]
            assert child.custody_land != MUNICIPALITIES[child.place_of_birth].land

    def test_moved_families_live_elsewhere_but_the_birth_land_holds(self, population) -> None:
        for family in (f for f in population.families if f.case == "moved"):
            child = family.children[0]
            assert family.home_land != child.custody_land == \
                MUNICIPALITIES[child.place_of_birth].land

    def test_twins_share_parents_and_date_not_register_number(self, population) -> None:
        family = next(f for f in population.families if f.case == "twins")
        first, second = family.children
        assert first.birth_date == second.birth_date
        assert first.place_of_birth == second.place_of_birth
        assert first.idnr != second.idnr

    def test_born_abroad_registered_at_standesamt_i(self, population) -> None:
        places = {f.children[0].place_of_birth for f in population.families
                  if f.case == "born_abroad"}
        assert places == {"11000000"}

    def test_one_parent_unknown(self, population) -> None:
        family = next(f for f in population.families if f.case == "father_unknown")
        assert [p.role for p in family.parents] == ["mother"]

    def test_court_cases(self, population) -> None:
        to_father = next(f for f in population.families if f.case == "court_to_father")
        withdrawn = next(f for f in population.families if f.case == "court_withdrawal")
        assert to_father.children[0].custody[-1].holders == (1,)
        assert withdrawn.children[0].custody[-1].custody == "none"

    def test_income_profiles(self, population) -> None:
        parents = [(f, p) for f in population.families[2:] for p in f.parents]
        for family, parent in parents:
            born = family.children[0].birth_date
            year_before = [f"{born.year - (m <= 0):04d}-{(m - 1) % 12 + 1:02d}"
                           for m in range(born.month - 12, born.month)]
            kinds = Counter(parent.income.get(m, ("", "none"))[1] for m in year_before)
            match parent.income_profile:
                case "self_employed":
                    assert parent.income == {}
                case "minijob":
                    assert all(float(eur) <= 556 for eur, _ in parent.income.values())
                case "gap":
                    assert 0 < kinds["none"] < 12
                case "part_time_change":
                    assert kinds["employee"] and kinds["part_time"]
                case "steady":
                    assert kinds == {"employee": 12}


class TestDemoFamilies:
    def test_shapes(self, population) -> None:
        families = population.demo_families()
        assert [f.id for f in families] == ["elfe", "uvo"]
        assert all(isinstance(f, DemoFamily) for f in families)
        citizens = population.demo_citizens()
        assert all(isinstance(c, DemoCitizen) for c in citizens)
        assert [(c.family, c.role, c.given_names) for c in citizens] == [
            ("elfe", "parent", "Anna"), ("elfe", "parent", "Ben"), ("elfe", "child", "Mia Sophie"),
            ("uvo", "parent", "Clara"), ("uvo", "child", "Leon")]

    def test_elfe(self, population) -> None:
        family = population.family("elfe")
        anna, ben = family.parents
        (mia,) = family.children
        assert (family.home_land, mia.place_of_birth, mia.birth_date) == (
            "HB", "04011000", date(2026, 10, 12))
        assert family.married_on < mia.birth_date
        assert [(p.custody, p.basis, p.holders) for p in mia.custody] == [
            ("joint", "marriage_at_birth", (0, 1))]
        months = [f"2025-{m:02d}" for m in range(10, 13)] + [f"2026-{m:02d}" for m in range(1, 10)]
        assert {anna.income[m][1] for m in months} == {"employee"}
        assert {ben.income[m][1] for m in months} == {"employee", "part_time"}

    def test_uvo(self, population) -> None:
        family = population.family("uvo")
        (clara,) = family.parents
        (leon,) = family.children
        assert family.home_land == "HH"
        assert MUNICIPALITIES[leon.place_of_birth].land == leon.custody_land == "NI"
        assert [(p.custody, p.basis) for p in leon.custody] == [("sole", "law")]
        assert family.married_on is None
        assert clara.role == "mother"
