"""The layer rule, read from the code's own imports: every production module is parsed (ast).

    einmal_client   the service client: imports nothing of ours
    einmal          the kernel: may import einmal_client; no component, not the root
    broker, cockpit, connectors, policies, witness
                    components: the kernel and einmal_client, never each other
    einmal_app      the composition root: may import anything; nothing imports it

And: no import cycle between production modules; no function-local import (stdlib too) unless
the import's line carries a comment saying "optional dependency".

Alembic's ``migrations/env.py`` and ``migrations/versions/`` are not production modules of ours
(Alembic loads them by path) and are skipped.

``TestTheChecker`` plants violations in a throw-away tree so the checker is known to catch them.
"""

import ast
import io
import re
import tokenize
import tomllib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from textwrap import dedent

import pytest

REPO = Path(__file__).resolve().parent.parent
KERNEL = "einmal"
CLIENT = "einmal_client"
ROOT_PACKAGE = "einmal_app"
COMPONENTS = frozenset({"broker", "cockpit", "connectors", "policies", "witness"})
OURS = frozenset({KERNEL, CLIENT, ROOT_PACKAGE, *COMPONENTS})
#: The folder holding each top-level package (the client is a project of its own).
SOURCE_ROOTS: dict[str, Path] = {**{name: REPO for name in OURS}, CLIENT: REPO / "client"}
OPTIONAL_MARK = "optional dependency"

RULES = {
    "kernel-imports-component": "the kernel (einmal) imports a component or the composition root",
    "client-imports-server": "einmal_client imports something of ours (einmal, einmal_app, "
                             "a component)",
    "component-imports-component": "a component imports another component or einmal_app",
    "imports-composition-root": "something other than einmal_app imports einmal_app",
    "import-cycle": "an import cycle between production modules",
    "function-local-import": "a function-local import without an 'optional dependency' comment",
}


@dataclass(frozen=True)
class Import:
    """One imported name as an absolute dotted name: the module for ``import a.b`` and for
    ``from a import b`` when ``a.b`` is a module of ours, else the package ``a``."""

    importer: str
    target: str
    path: Path
    line: int
    local: bool
    optional: bool

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


@dataclass(frozen=True)
class Codebase:
    modules: dict[str, Path]
    imports: list[Import]

    def module_of(self, name: str) -> str | None:
        """The module ``name`` runs: itself or its nearest ancestor among ours (None if none)."""
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None

    def graph(self) -> dict[str, dict[str, Import]]:
        """module -> {imported module: the first import of it}. Every import counts: those
        inside functions and those under ``if TYPE_CHECKING:`` too (a cycle hidden behind
        either is still a cycle in the design)."""
        edges: dict[str, dict[str, Import]] = {m: {} for m in self.modules}
        for found in self.imports:
            target = self.module_of(found.target)
            if target is not None and target != found.importer:
                edges[found.importer].setdefault(target, found)
        return edges


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _top(name: str) -> str:
    return name.partition(".")[0]


def _skipped(relative: Path) -> bool:
    parts = relative.parts
    return "migrations" in parts and ("versions" in parts or parts[-1] == "env.py")


def find_modules(roots: Mapping[str, Path]) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, root in roots.items():
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if _skipped(relative):
                continue
            parts = relative.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports_in(node: ast.AST, in_function: bool = False,
                ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        else:
            inside = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _imports_in(child, in_function or inside)


def _comments(source: str) -> dict[int, str]:
    return {token.start[0]: token.string
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT}


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def read_codebase(roots: Mapping[str, Path]) -> Codebase:
    modules = find_modules(roots)
    imports: list[Import] = []
    for module, path in modules.items():
        source = path.read_text(encoding="utf-8")
        comments = _comments(source)
        for node, local in _imports_in(ast.parse(source, filename=str(path))):
            end = node.end_lineno or node.lineno
            optional = any(OPTIONAL_MARK in comments.get(line, "")
                           for line in range(node.lineno, end + 1))
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(module, path.name == "__init__.py", node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            imports.extend(Import(importer=module, target=target, path=path, line=node.lineno,
                                  local=local, optional=optional)
                           for target in dict.fromkeys(targets))
    return Codebase(modules=modules, imports=imports)


# -- the rules ---------------------------------------------------------------------------------

def _layer_rule(found: Import) -> str | None:
    source, target = _top(found.importer), _top(found.target)
    if target not in OURS or target == source:
        return None
    if source == KERNEL and target != CLIENT:
        return "kernel-imports-component"
    if source == CLIENT:
        return "client-imports-server"
    if source in COMPONENTS and target != KERNEL and target != CLIENT:
        return "component-imports-component"
    return None


def strongly_connected(edges: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in edges.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _one_cycle(start: str, members: set[str], edges: Mapping[str, Mapping[str, Import]],
               ) -> list[str]:
    """The shortest path start -> ... -> start inside the component (BFS)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(edges[node]):
            if succ not in members:
                continue
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if succ not in previous:
                previous[succ] = node
                queue.append(succ)
    return [start]  # not reached for a component of more than one module


def find_violations(codebase: Codebase) -> dict[str, list[str]]:
    """rule -> readable findings, one line each (empty lists where the rule holds)."""
    found: dict[str, list[str]] = {rule: [] for rule in RULES}
    for imp in codebase.imports:
        rule = _layer_rule(imp)
        if rule is not None:
            found[rule].append(f"{imp.where}: {imp.importer} imports {imp.target}")
        if _top(imp.target) == ROOT_PACKAGE and _top(imp.importer) != ROOT_PACKAGE:
            found["imports-composition-root"].append(
                f"{imp.where}: {imp.importer} imports {imp.target}")
        if imp.local and not imp.optional:
            found["function-local-import"].append(
                f"{imp.where}: {imp.importer} imports {imp.target} inside a function")
    edges = codebase.graph()
    for members in strongly_connected(edges):
        cycle = _one_cycle(members[0], set(members), edges)
        steps = "; ".join(f"{edges[a][b].where} imports {b}" for a, b in pairwise(cycle))
        found["import-cycle"].append(
            f"{' -> '.join(cycle)} (among {', '.join(members)}): {steps}")
    return {rule: sorted(findings, key=_natural) for rule, findings in found.items()}


def _natural(text: str) -> list[str | int]:
    """Sort key: line 9 before line 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# -- the production code -----------------------------------------------------------------------

@pytest.fixture(name="codebase", scope="module")
def fx_codebase() -> Codebase:
    return read_codebase(SOURCE_ROOTS)


@pytest.fixture(name="violations", scope="module")
def fx_violations(codebase: Codebase) -> dict[str, list[str]]:
    return find_violations(codebase)


class TestTheCodebase:
    def test_every_shipped_package_has_a_layer(self) -> None:
        """A new top-level package must be placed in a layer here before the rules cover it."""
        project = tomllib.loads((REPO / "pyproject.toml").read_text())
        patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
        shipped = {_top(pattern.rstrip("*")) for pattern in patterns}
        assert shipped - OURS == set(), "add them to a layer in tests/test_architecture.py"
        assert shipped | {CLIENT} == OURS  # the client ships from client/pyproject.toml

    def test_every_package_is_parsed(self, codebase: Codebase) -> None:
        packages = {_top(module) for module in codebase.modules}
        assert packages == OURS
        assert "einmal_client.client" in codebase.modules
        assert "broker.migrations.env" not in codebase.modules
        assert not [m for m in codebase.modules if ".migrations.versions" in m]
        assert len(codebase.imports) > 500  # the checker sees the imports, not an empty tree

    @pytest.mark.parametrize("rule", list(RULES))
    def test_rule_holds(self, violations: dict[str, list[str]], rule: str) -> None:
        findings = violations[rule]
        assert not findings, (f"{RULES[rule]} ({len(findings)}):\n  "
                              + "\n  ".join(findings))


# -- the checker catches what it should ----------------------------------------------------------

def _plant(root: Path, files: Mapping[str, str]) -> Codebase:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    present = {name: root for name in OURS if (root / name).is_dir()}
    return read_codebase(present)


class TestTheChecker:
    def test_a_cycle_and_a_kernel_to_component_import_are_reported(self, tmp_path: Path,
                                                                    ) -> None:
        found = find_violations(_plant(tmp_path, {
            "einmal/__init__.py": "",
            "einmal/a.py": "import einmal.b\n",
            "einmal/b.py": "from einmal import a\n",
            "einmal/c.py": "from broker.service import Service\n",
            "broker/__init__.py": "",
            "broker/service.py": "from einmal.a import thing\n",
        }))
        assert found["import-cycle"] == [
            "einmal.a -> einmal.b -> einmal.a (among einmal.a, einmal.b): "
            f"{_shown(tmp_path / 'einmal/a.py')}:1 imports einmal.b; "
            f"{_shown(tmp_path / 'einmal/b.py')}:1 imports einmal.a"]
        assert found["kernel-imports-component"] == [
            f"{_shown(tmp_path / 'einmal/c.py')}:1: einmal.c imports broker.service"]
        assert not found["component-imports-component"]  # a component may use the kernel

    def test_a_cycle_behind_type_checking_or_in_a_function_is_still_a_cycle(
            self, tmp_path: Path) -> None:
        found = find_violations(_plant(tmp_path, {
            "broker/__init__.py": "",
            "broker/http.py": "from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from broker.previews import Desk\n",
            "broker/previews.py": "from .http import router\n",
            "cockpit/__init__.py": "",
            "cockpit/x.py": "def f():\n    import cockpit.y\n",
            "cockpit/y.py": "import cockpit.x\n",
        }))
        cycles = found["import-cycle"]
        assert len(cycles) == 2
        assert cycles[0].startswith("broker.http -> broker.previews -> broker.http ")
        assert cycles[1].startswith("cockpit.x -> cockpit.y -> cockpit.x ")

    def test_function_local_imports_need_an_optional_dependency_comment(
            self, tmp_path: Path) -> None:
        found = find_violations(_plant(tmp_path, {
            "einmal/__init__.py": "",
            "einmal/m.py": dedent("""\
                import os

                def a():
                    import json

                async def b():
                    from einmal import m

                def c():
                    import uvloop  # optional dependency: a faster event loop

                def d():
                    from playwright.sync_api import (  # optional dependency
                        expect)

                class K:
                    import string

                    def e(self):
                        import re
                """),
        }))
        shown = _shown(tmp_path / "einmal/m.py")
        assert found["function-local-import"] == [
            f"{shown}:4: einmal.m imports json inside a function",
            f"{shown}:7: einmal.m imports einmal.m inside a function",
            f"{shown}:20: einmal.m imports re inside a function"]

    def test_client_component_and_root_rules(self, tmp_path: Path) -> None:
        found = find_violations(_plant(tmp_path, {
            "einmal_client/__init__.py": "",
            "einmal_client/tlog.py": "import hashlib\nfrom einmal.problems import P\n",
            "einmal_client/audit.py": "from . import tlog\n",  # its own: allowed
            "einmal/__init__.py": "",
            "einmal/keys.py": "from einmal_client import tlog\n",  # the kernel may use it
            "einmal/cli.py": "import einmal_app.server\n",
            "broker/__init__.py": "",
            "broker/app.py": "from cockpit import app\nfrom einmal import keys\n",
            "cockpit/__init__.py": "from einmal_app import demo\n",
            "cockpit/app.py": "",
            "einmal_app/__init__.py": "",
            "einmal_app/server.py": "import broker.app\nimport cockpit.app\n",
            "einmal_app/demo.py": "from einmal_app import server\n",
        }))
        assert [f.split(": ", 1)[1] for f in found["client-imports-server"]] == [
            "einmal_client.tlog imports einmal.problems"]
        assert [f.split(": ", 1)[1] for f in found["kernel-imports-component"]] == [
            "einmal.cli imports einmal_app.server"]
        assert [f.split(": ", 1)[1] for f in found["component-imports-component"]] == [
            "broker.app imports cockpit.app", "cockpit imports einmal_app.demo"]
        assert [f.split(": ", 1)[1] for f in found["imports-composition-root"]] == [
            "cockpit imports einmal_app.demo", "einmal.cli imports einmal_app.server"]
        assert not found["import-cycle"]

    def test_migrations_are_not_production_modules(self, tmp_path: Path) -> None:
        codebase = _plant(tmp_path, {
            "broker/__init__.py": "",
            "broker/migrations/__init__.py": "",
            "broker/migrations/env.py": "def run():\n    import cockpit\n",
            "broker/migrations/versions/0001_x.py": "def upgrade():\n    import cockpit\n",
        })
        assert sorted(codebase.modules) == ["broker", "broker.migrations"]
        assert not any(find_violations(codebase).values())
