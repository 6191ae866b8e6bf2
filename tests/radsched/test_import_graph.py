"""The import graph inside radsched has no circle, and only the entry points import the root.

grimp (import-linter's graph builder) counts every import, ``TYPE_CHECKING`` and function-level
ones included, so an edge hidden from the interpreter at start-up still counts here.
"""

from __future__ import annotations

import grimp

ROOT = "radsched.daemon"
# Entry points that run the composition root.
ROOT_USERS = {"radsched.cli", "radsched.__main__"}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("radsched", cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if not child.startswith("radsched"):
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = sorted(graph.find_modules_directly_imported_by(child))
                    work.append((child, iter(imported)))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle_inside_radsched() -> None:
    assert _cycles(_graph()) == []


def test_only_the_entry_points_import_the_composition_root() -> None:
    graph = _graph()
    importers = graph.find_modules_that_directly_import(ROOT)
    assert importers <= ROOT_USERS, sorted(importers - ROOT_USERS)


def test_the_circle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [
        ("radsched.a", "radsched.b"),
        ("radsched.b", "radsched.c"),
        ("radsched.c", "radsched.a"),
        ("radsched.c", "radsched.d"),
    ]:
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph) == [["radsched.a", "radsched.b", "radsched.c"]]


def test_every_room_is_a_package_the_graph_can_see() -> None:
    """A folder without ``__init__.py`` is a namespace package: it imports fine, but grimp and
    import-linter skip it, so the circle test and the layers would not look inside."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "radsched"
    rooms = [p for p in root.iterdir() if p.is_dir() and any(p.glob("*.py"))]
    assert rooms and all((p / "__init__.py").exists() for p in rooms), [
        p.name for p in rooms if not (p / "__init__.py").exists()
    ]


def test_the_import_contracts_hold() -> None:
    """The layers inside radsched and the package contracts of pyproject.toml (``make check``
    runs the same), so the suite alone catches an import against the direction."""
    import subprocess
    import sys
    from pathlib import Path

    # In a subprocess: import-linter's CLI reconfigures logging, which would blind caplog in
    # every later test of the session.
    exe = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(exe), "--no-cache"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_asyncpg_contract_covers_every_room_but_storage() -> None:
    """A new room left out of the "only storage imports asyncpg" contract would escape it unseen."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    [contract] = [
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["name"] == "only storage imports asyncpg"
    ]
    rooms = {
        "radsched." + (p.stem if p.suffix == ".py" else p.name)
        for p in (root / "radsched").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert set(contract["source_modules"]) == rooms - {"radsched.storage"}


def test_no_sql_outside_storage() -> None:
    """Every statement lives in radsched/storage (docs/architecture.md): a query written elsewhere
    is caught here, by its SQL text or by a call on a connection."""
    import re
    from pathlib import Path

    sql = re.compile(
        r"\b(SELECT\s+\S|INSERT\s+INTO|UPDATE\s+[a-z_]+\s+SET|DELETE\s+FROM)\b"
        r"|\bconn\.(fetch|fetchrow|fetchval|execute|executemany)\("
    )
    root = Path(__file__).resolve().parents[2] / "radsched"
    found = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in sorted(root.rglob("*.py"))
        if "storage" not in path.relative_to(root).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if sql.search(line)
    ]
    assert found == []


def test_pool_connections_carry_no_session_state() -> None:
    """Pool connections go back without asyncpg's reset query (storage/db.py ``_keep_session``),
    so session state set on one would reach the next transaction that borrows it: session locks,
    LISTEN and session-level SET belong on dedicated connections only."""
    import re
    from pathlib import Path

    # SQL only lives in storage (test above); UPDATE ... SET is not a session setting.
    session = re.compile(
        r"pg_(try_)?advisory_lock\(|[\"'(]\s*(UN)?LISTEN\s|[\"']\s*SET\s+(SESSION\s+)?(?!LOCAL\b)"
        r"[a-z_]+\s+(TO|=)\s|set_config\([^)]*false\s*\)"
    )
    # Dedicated connections (listen, destination locks); the migration unlocks in its own finally.
    allowed = {"listen.py", "destination_locks.py", "migrate.py"}
    root = Path(__file__).resolve().parents[2] / "radsched" / "storage"
    found = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in sorted(root.rglob("*.py"))
        if path.name not in allowed
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if session.search(line)
    ]
    assert found == []
