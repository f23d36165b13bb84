"""The house rules that keep the layout readable: small modules, few internal imports, a sentence per
folder, a light `import fedsim` and a public API at the top."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fedsim

PACKAGE = Path(fedsim.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def fedsim_imports(path: Path) -> set[str]:
    """The fedsim modules a file imports (`from fedsim.a import b` counts fedsim.a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fedsim.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fedsim"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                found.add(sub if is_module else node.module)
    return found - {"fedsim"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_and_import_few_fedsim_modules(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400
    assert len(fedsim_imports(path)) <= 8, sorted(fedsim_imports(path))


def test_every_folder_says_in_one_sentence_what_lives_there() -> None:
    folders = [p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert len(folders) >= 3
    for folder in folders:
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and doc.count(". ") == 0 and doc.endswith("."), folder.name


def test_public_api_and_a_light_import() -> None:
    assert callable(fedsim.load_model) and callable(fedsim.load_scenario) and callable(fedsim.run_scenario)
    code = "import sys, fedsim, fedsim.cli; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]  # the CLI starts without torch or matplotlib
