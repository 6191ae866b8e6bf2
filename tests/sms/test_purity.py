"""The core stays pure: no module of it may import I/O frameworks or the daemon's other parts.

The driver (``radsched/sms``) imports the core (``radsched/conversation``); the core must never
import the driver, or the playbooks would stop being I/O-free.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import radsched

ROOT = Path(radsched.__file__).parent
CORE = [
    "privacy.py",
    "conversation/__init__.py",
    "conversation/_menus.py",
    "conversation/_step.py",
    "conversation/catalog.py",
    "conversation/codec.py",
    "conversation/config.py",
    "conversation/transition.py",
    "conversation/gsm.py",
    "conversation/keywords.py",
    "conversation/model.py",
    "conversation/quiet_hours.py",
    "conversation/reminders.py",
    "conversation/ris_wait.py",
    "conversation/stray.py",
    "conversation/templates.py",
]
THIRD_PARTY = {"phonenumbers", "cryptography"}
CORE_MODULES = {
    "radsched.privacy",
    *(f"radsched.conversation.{Path(p).stem}" for p in CORE if p.startswith("conversation/")),
    "radsched.conversation",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("relative", CORE)
def test_core_module_imports_only_stdlib_and_core(relative: str) -> None:
    for name in _imports(ROOT / relative):
        top = name.split(".")[0]
        if top == "radsched":
            assert name in CORE_MODULES, f"{relative} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top in THIRD_PARTY, f"{relative}: {name}"
