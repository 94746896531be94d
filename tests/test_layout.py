"""The benchmarks stay out of the product: no module of assistant/, models/, sleep/ or tui/ imports
the `bench` package. `nightcap bench` (assistant/commands/bench.py) reaches it by module name
through importlib, on demand, which is not an import statement and is allowed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("assistant", "models", "sleep", "tui")


def bench_imports(path: Path) -> list[str]:
    """`line: statement` of each import of `bench` (or a module under it) in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "bench" or name.startswith("bench.") for name in names):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_product_module_imports_bench() -> None:
    files = [f for pkg in PRODUCT for f in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 20
    offenders = {str(f.relative_to(ROOT)): hits for f in files if (hits := bench_imports(f))}
    assert not offenders, offenders


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import bench\nimport bench.nights as BN\nfrom bench import data_path\n"
        "from bench.consolidation import score\nimport benchmark\nfrom .bench import x\n"
        "def f() -> None:\n    from bench import evalset\n",
        encoding="utf-8",
    )
    assert [hit.split(":")[0] for hit in bench_imports(src)] == ["1", "2", "3", "4", "8"]


def test_every_bench_the_dispatcher_names_is_in_the_bench_package() -> None:
    from assistant.commands.bench import BENCHES

    for module, _ in BENCHES.values():
        assert module.startswith("bench."), module
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
