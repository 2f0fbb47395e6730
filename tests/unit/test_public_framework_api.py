"""dnsguard uses Faust, mode and aiokafka through their public API only: no
private module or name is imported from them, no class of theirs is
subclassed, and no underscore attribute is read from anything in a module
that imports them (``self``'s own attributes excepted). A framework upgrade
then breaks only what its changelog says it breaks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = {"faust", "mode", "aiokafka"}
FOLDERS = ("detectors", "streams", "models", "bench", "tests")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    framework_names: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in FRAMEWORKS:
                    framework_names.add(alias.asname or parts[0])
                    if any(is_private(p) for p in parts):
                        found.append(f"{path}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] in FRAMEWORKS:
                for alias in node.names:
                    framework_names.add(alias.asname or alias.name)
                    if any(is_private(p) for p in parts) or is_private(alias.name):
                        found.append(
                            f"{path}:{node.lineno}: from {node.module} import {alias.name}"
                        )
    if not framework_names:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in framework_names:
                    found.append(
                        f"{path}:{node.lineno}: class {node.name} subclasses {ast.unparse(base)}"
                    )
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_faust_mode_or_aiokafka_name_is_used() -> None:
    here = Path(__file__).resolve()
    files = [p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py") if p != here]
    assert len(files) > 50
    found = [v for p in files for v in violations(p)]
    assert not found, "\n".join(found)


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import faust\n"
        "from faust.streams import _current_event\n"
        "from faust.transport.drivers import aiokafka as driver\n"
        "class C(driver.Consumer):\n"
        "    pass\n"
        "def f(app: faust.App) -> None:\n"
        "    app.consumer._unacked_messages.clear()\n"
    )
    found = violations(bad)
    assert any("_current_event" in v for v in found)
    assert any("subclasses driver.Consumer" in v for v in found)
    assert any("_unacked_messages" in v for v in found)
