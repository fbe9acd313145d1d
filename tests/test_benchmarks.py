"""The benchmark scripts keep up with the toolkit's modules, without running them (hours).

A refactor that moves a function out of a module breaks every benchmark calling it through
that module, and nothing else notices until someone runs the benchmark; here every
`module.name` and `from module import name` of a toolkit module in benchmarks/*.py must exist.
"""

import ast
import importlib
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TOOLKIT_MODULES = {path.stem for path in REPO_ROOT.glob("*.py")}
BENCHMARKS = sorted((REPO_ROOT / "benchmarks").glob("*.py"))


def toolkit_names_used(tree):
    """(line, module, name) for each use of a toolkit module's attribute in a parsed script."""
    aliases, used = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in TOOLKIT_MODULES:
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module in TOOLKIT_MODULES:
            used += [(node.lineno, node.module, alias.name) for alias in node.names]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            used.append((node.lineno, aliases[node.value.id], node.attr))
    return used


def missing_names(source, filename):
    """'file:line: module.name' for each toolkit name the source uses that does not exist."""
    return [
        f"{filename}:{line}: {module}.{name}"
        for line, module, name in toolkit_names_used(ast.parse(source))
        if not hasattr(importlib.import_module(module), name)
    ]


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_uses_only_names_the_toolkit_has(script):
    missing = missing_names(script.read_text(), script.name)
    assert not missing, "benchmark calls names its modules no longer have: " + ", ".join(missing)


def test_the_check_finds_a_name_moved_to_another_module():
    # bench_inference.py once called the HF config builder through the converter script,
    # after the builder had moved to hf_checkpoint.py.
    source = (
        "def hf_runner(config):\n"
        "    import convert_albert_tf_checkpoint_to_pytorch as converter\n"
        "    from hf_checkpoint import hf_config_dict\n"
        "    return converter.hf_config_dict(config), hf_config_dict(config)\n"
    )
    assert missing_names(source, "bench.py") == [
        "bench.py:4: convert_albert_tf_checkpoint_to_pytorch.hf_config_dict"
    ]


def test_run_all_rejects_an_unknown_benchmark_name_in_one_line():
    finished = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "run_all.py"), "--only=latency,typo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    error_lines = [line for line in finished.stderr.splitlines() if "error" in line]
    assert error_lines == [
        "run_all.py: error: unknown --only ['typo']: use pretraining, finetune, inference, "
        "latency, ner, text_serving"
    ]
