"""The layout the README's "Development" map describes, enforced: which layer may
import which, the pure core free of Flask and SQLAlchemy, SQL only in the storage
and inventory modules, a docstring on every module, every package installed.

Imports are read from the source (``ast``), function-level ones included, so a cycle
dodged by importing inside a function fails here too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "bootbrain"

#: Layers from the bottom up; a module may import its own layer and the ones below.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("vocabulary", "errors", "identity", "security"),
    "core": ("boot",),
    "edge": ("config", "schemas", "models", "db", "migrate", "migrations", "metrics", "logs"),
    "services": (
        "inventory",
        "integrations",
        "bmc",
        "bmc.power",
        "bmc.reinstall",
        "machine",
        "machine.flow",
        "machine.documents",
        "machine.events",
        "readiness",
    ),
    "composition": ("services",),
    "transport": (
        "api",
        "machine.routes",
        "machine.errors",
        "ops",
        "cli",
        "server",
        "app",
        "integrations.commands",
        "ui",
        "__main__",
    ),
}
ORDER = list(LAYERS)
#: Layers of small leaf modules that import each other freely (no cycles among them).
FLAT = ("foundation", "core", "edge")

#: Imports sideways within a layer, beyond a package importing itself.
SIDEWAYS: dict[str, tuple[str, ...]] = {
    # the services: integrations read the inventory; the boot flow reads it too
    "integrations": ("inventory",),
    # bmc.power reads a machine's BMC record; the drivers know nothing of the inventory
    "bmc.power": ("inventory",),
    # reinstall-now: the next boot and the BMC record, then the drivers through bmc.power
    "bmc.reinstall": ("inventory",),
    "machine.flow": ("inventory", "machine.events"),
    "machine.documents": ("inventory", "machine.flow", "machine.events"),
    "machine.events": ("inventory",),
    # readiness reports on the others: the reconciler's status, the writer's health
    "readiness": ("inventory", "integrations.reconcile", "machine.events"),
    # transport: the composition root assembles the others
    "app": ("api", "ops", "machine.routes", "machine.errors", "ui"),
    "machine.routes": ("machine.errors",),
    "cli": ("server", "integrations.commands"),
    "server": ("app",),
    "__main__": ("cli",),
}
#: Inside a layer, these never import each other, whatever SIDEWAYS says elsewhere.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "inventory": ("integrations", "machine", "bmc", "api", "cli", "services"),
    "bmc.driver": ("flask", "sqlalchemy", "inventory"),
    "bmc.ipmi": ("flask", "sqlalchemy", "inventory"),
    "bmc.ipmi_worker": ("flask", "sqlalchemy", "inventory", "bootbrain"),
    "bmc.redfish": ("flask", "sqlalchemy", "inventory"),
    "boot": ("flask", "sqlalchemy", "werkzeug", "pydantic"),
}
#: Where SQL may be written (SQLAlchemy imported, or SQL text in a string).
SQL_HOMES = ("inventory", "db", "models", "migrate", "migrations")
SQL_TEXT = re.compile(r"\b(SELECT\s|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+TABLE)")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(parts) or "bootbrain"] = path
    return out


MODULES = _modules()


def _owner(module: str) -> str:
    """The most specific key of LAYERS (or SIDEWAYS) that ``module`` falls under."""
    keys = [k for layer in LAYERS.values() for k in layer]
    matches = [k for k in keys if module == k or module.startswith(k + ".")]
    if not matches:
        raise AssertionError(f"bootbrain.{module} is in no layer: add it to LAYERS")
    return max(matches, key=len)


def _layer(module: str) -> int:
    owner = _owner(module)
    return next(i for i, name in enumerate(ORDER) if owner in LAYERS[name])


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The bootbrain modules (``inventory.machines``) and outside top-level packages
    (``flask``) that an import statement names."""
    out: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            out.append(alias.name)
        return [n.removeprefix("bootbrain.") if n.startswith("bootbrain.") else n for n in out]
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        base = importer.split(".") if importer != "bootbrain" else []
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*base, *([node.module] if node.module else [])])
    elif node.module and (node.module == "bootbrain" or node.module.startswith("bootbrain.")):
        target = node.module.removeprefix("bootbrain").removeprefix(".")
    else:
        return [(node.module or "").split(".")[0]]
    for alias in node.names:
        candidate = f"{target}.{alias.name}" if target else alias.name
        out.append(candidate if candidate in MODULES else target or "bootbrain")
    return out


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(_resolve(module, node))
    return found


def _internal(name: str) -> bool:
    return name in MODULES and name != "bootbrain"


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "bootbrain"))
def test_imports_point_down_the_layers(module: str) -> None:
    mine, owner = _layer(module), _owner(module)
    for target in sorted(filter(_internal, _imports(module))):
        there = _layer(target)
        if there < mine or _owner(target) == owner or _top(target) == _top(module):
            continue
        if there == mine and ORDER[mine] in FLAT:
            continue
        allowed = SIDEWAYS.get(owner, ())
        assert there == mine and any(
            target == a or target.startswith(a + ".") for a in allowed
        ), f"bootbrain.{module} ({ORDER[mine]}) imports bootbrain.{target} ({ORDER[there]})"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_forbidden_imports(package: str) -> None:
    for module in (m for m in MODULES if m == package or m.startswith(package + ".")):
        for target in _imports(module):
            for banned in FORBIDDEN[package]:
                assert target != banned and not target.startswith(banned + "."), (
                    f"bootbrain.{module} imports {target}"
                )


def _in_sql_home(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in SQL_HOMES)


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _in_sql_home(m)))
def test_sql_lives_in_the_inventory_and_storage(module: str) -> None:
    assert "sqlalchemy" not in _imports(module), f"bootbrain.{module} imports SQLAlchemy"
    for node in _strings(ast.parse(MODULES[module].read_text())):
        assert not SQL_TEXT.search(node.value), (
            f"bootbrain.{module}:{node.lineno} holds SQL: {node.value[:60]!r}"
        )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_owns(module: str) -> None:
    path = MODULES[module]
    if path.name == "__init__.py" and not path.read_text().strip():
        pytest.skip("an empty package marker")
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring) > 40, f"bootbrain.{module} has no module docstring"


def test_every_package_is_installed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = {name: Path(d) for name, d in config.get("package-dir", {}).items()}
    for init in PACKAGE.rglob("__init__.py"):
        name = ".".join(("bootbrain", *init.parent.relative_to(PACKAGE).parts))
        assert name in listed, f"{name} is missing from pyproject's packages: not installed"
    for name, folder in mapped.items():
        assert (REPO / folder / "__init__.py").is_file(), f"{name} -> {folder}"


def test_the_checker_sees_a_violation() -> None:
    """The rules above would catch the shapes they are for (the checker itself works)."""
    assert _layer("boot.render") < _layer("inventory.lookup") < _layer("api.resources")
    assert "inventory" in _imports("integrations.reconcile")
    assert "machine.errors" in _imports("machine.routes")
    assert "flask" in _imports("api.common")
    assert "sqlalchemy" in _imports("inventory.lookup")
    assert SQL_TEXT.search("DELETE FROM boot WHERE id = 1")


def test_the_lease_hook_speaks_the_vocabulary() -> None:
    """The hook imports nothing of bootbrain (it runs by path, standard library only),
    so it keeps its own copy of the lease actions; they must be the API's."""
    from bootbrain.integrations import leasehook
    from bootbrain.vocabulary import LEASE_ACTIONS, LEASE_SOURCES

    assert set(leasehook.DNSMASQ_ACTIONS) | set(leasehook.KEA_HOOKS.values()) == set(
        LEASE_ACTIONS
    )
    assert {"dnsmasq", "kea"} == set(LEASE_SOURCES)
