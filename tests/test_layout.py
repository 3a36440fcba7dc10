"""The package's folders say what a module is for and what it may import: imports flow one way, with no circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "emotion"
#: folder → folders of ``emotion`` it must never import (at the top or inside a function)
FORBIDDEN = {
    "data": ("emotion.models", "emotion.serve", "emotion.training", "emotion.songs", "emotion.evaluation"),
    "models": ("emotion.serve", "emotion.training", "emotion.songs", "emotion.evaluation"),
    "serve": ("emotion.training", "emotion.songs", "emotion.evaluation"),
    "training": ("emotion.serve", "emotion.songs", "emotion.evaluation"),
    "evaluation": ("emotion.serve", "emotion.songs"),
    "songs": ("emotion.training",),
}
#: what songs may use of serving: one narrow module (moods from photos and streams)
SONGS_USE_OF_SERVE = {"emotion.serve.mood", "emotion.serve.mood.Mood", "emotion.serve.mood.mood_of_image",
                      "emotion.serve.mood.mood_of_stream"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``emotion…`` module a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("emotion")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emotion"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from emotion.x import submodule`
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if "_plugins" not in p.parts}
    return {name: {m for m in imports(path) if m in files and m != name} for name, path in files.items()}


def test_lower_layers_never_import_upper_ones():
    bad = []
    for name, deps in graph().items():
        folder = name.split(".")[1] if name.count(".") >= 1 else ""
        for dep in deps:
            if dep.startswith(FORBIDDEN.get(folder, ())):
                bad.append(f"{name} imports {dep}")
    assert not bad, bad


def test_songs_use_serving_through_its_mood_module_only():
    wide = {
        f"{name} imports {dep}"
        for name, deps in graph().items()
        if name.startswith("emotion.songs")
        for dep in deps
        if dep.startswith(("emotion.serve", "emotion.cam", "emotion.predict")) and dep not in SONGS_USE_OF_SERVE
    }
    assert not wide, wide


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if dep == "emotion" or node == "emotion":  # the package's own lazy re-exports
                continue
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_entry_points_stay_where_the_readme_says():
    """``python -m emotion.X`` for every documented command (thin modules at the top where the code moved)."""
    for name in ("train", "evaluate", "calibrate", "export", "predict", "cam", "audit", "sweep_report"):
        assert (PACKAGE / f"{name}.py").is_file(), name
    assert (PACKAGE / "songs" / "__main__.py").is_file()


def test_every_import_of_the_package_names_a_module_that_exists():
    """Catches imports left behind by a move (``from emotion import quantize`` after quantize moved to serve/)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    missing = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "experiments").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [a.name for a in node.names if a.name.startswith("emotion")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emotion"):
                wanted = [node.module]
                init = modules.get(node.module)
                if init is not None and init.name == "__init__.py":  # from a package: a submodule or a name in it
                    text = init.read_text()
                    wanted += [f"{node.module}.{a.name}" for a in node.names if f"{a.name}" not in text]
            else:
                continue
            missing += [f"{path.relative_to(ROOT)}: {name}" for name in wanted if name not in modules]
    assert not missing, missing


def test_make_help_lists_every_target_with_what_it_does():
    import re
    import subprocess

    from tests.conftest import ROOT

    res = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    phony = re.search(r"^\.PHONY: (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    listed = {line.split()[1]: line for line in res.stdout.splitlines() if line.strip().startswith("make ")}
    assert set(listed) == set(phony) and all(len(line.split()) > 2 for line in listed.values())


def test_the_readmes_results_table_is_generated_from_models_json():
    """Shipped models' numbers are written in emotion/weights/models.json only; the README's table is made from it
    (experiments/tools/results_table.py) and must be current."""
    import subprocess
    import sys

    tool = ROOT / "experiments" / "tools" / "results_table.py"
    res = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout
    readme = (ROOT / "README.md").read_text()
    assert "<!-- results:start -->\n| model |" in readme


def test_the_readme_is_user_documentation_of_at_most_220_lines():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    assert "../shared" not in readme  # a fresh clone has no such folder


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    """``make lint`` in the suite: a change that breaks ruff's rules or formatting fails the tests."""
    run = subprocess.run([sys.executable, "-m", "ruff", *command, str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
