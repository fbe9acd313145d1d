"""The benchmark scripts keep up with the toolkit's modules, without running them (hours).

A refactor that moves a function out of a module breaks every benchmark calling it through
that module, and nothing else notices until someone runs the benchmark; here every
`module.name` and `from module import name` of a toolkit module in benchmarks/*.py must exist.
"""

import ast
import importlib
import json
import os
import shutil
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


@pytest.mark.parametrize(
    "config_file", ["configs/albert_config_tiny_google.json", "configs/google_albert_base_zh.json"]
)
def test_pretraining_products_alone_are_the_credited_flops(config_file):
    """bench_pretraining's "products alone" ceiling divides the step's credited FLOPs by the
    time of step_products (forward) and their gradients: the same products, so the same FLOPs."""
    import bench_pretraining as bench  # benchmarks/, on sys.path (below)

    import modeling

    config = modeling.AlbertConfig.from_json_file(REPO_ROOT / config_file)
    flops = sum(
        count * 2 * (batch_dims or 1) * m * k * n
        for count, batch_dims, m, k, n, _ in bench.step_products(config)
    )
    assert flops == bench.BATCH * bench.forward_flops_per_sequence(config)


# ----------------------------------------------------------------------------------------------
# op_profile's split of a serving runtime's time (bench_latency.py --profile).
# ----------------------------------------------------------------------------------------------

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import op_profile  # noqa: E402  (benchmarks/, not a toolkit module)


@pytest.mark.parametrize(
    "symbol, group",
    [  # symbols from perf profiles of LiteRT running albert_tiny (fp32 and int8)
        ("xnn_f32_gemm_minmax_ukernel_10x8__fma3_broadcast", "matrix products"),
        ("xnn_qd8_f32_qc8w_gemm_minmax_ukernel_4x8c8__avx2", "matrix products"),
        ("xnn_compute_hmp_grouped_gemm", "matrix products"),
        ("xnn_f32_qs8_vcvt_ukernel__avx2_u64", "int8 activation quantization"),
        ("xnn_f32_rminmax_ukernel__avx_u32_acc4", "int8 activation quantization"),
        ("xnn_x32_packw_gemm_goi_ukernel_x16__avx_u4", "gathers, copies, transposes"),
        ("xnn_x32_transposec_ukernel__8x8_reuse_multi_avx", "gathers, copies, transposes"),
        ("__memmove_avx_unaligned_erms", "gathers, copies, transposes"),
        ("xnn_f32_raddstoreexpminusmax_ukernel__avx2_rr2_p5_u32_acc2", "softmax"),
        ("xnn_f32_rmax_ukernel__avx_u32_acc4", "softmax"),
        ("xnn_f32_vapproxgelu_ukernel__fma3_rational_12_10_div_u16", "GELU"),
        ("xnn_f32_vmulc_ukernel__avx_u16", "other elementwise"),
        ("xnn_f32_vsqrdiffc_ukernel__avx_u16", "other elementwise"),
        ("xnn_run_operator_with_index", "runtime, Python, other"),
        ("_PyEval_EvalFrameDefault", "runtime, Python, other"),
    ],
)
def test_xnnpack_kernels_fall_in_their_groups(symbol, group):
    assert op_profile.kernel_group(symbol) == group


def test_ort_profile_split_counts_only_the_last_runs(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    weight = np.ones((64, 64), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "ort")  # not in the working directory
    session = onnxruntime.InferenceSession(model.SerializeToString(), options)
    # Two slow calls on a large batch, then three fast ones: a split of the last three runs
    # must not see the first two.
    for rows in (4096, 4096, 1, 1, 1):
        session.run(None, {"x": np.ones((rows, 64), np.float32)})
    path = session.end_profiling()
    last_three = op_profile.ort_node_split(path, runs=3)
    every_run = op_profile.ort_node_split(path, runs=5)
    for split in (last_three, every_run):
        assert sum(split["shares"].values()) == pytest.approx(1.0)
        assert {name for name, _ in split["largest"]} == {"MatMul", "Softmax"}
        named = dict(split["largest"])
        assert split["shares"]["matrix products"] == pytest.approx(named["MatMul"])
        assert split["shares"]["softmax"] == pytest.approx(named["Softmax"])

    with open(path, encoding="utf-8") as f:
        events = json.load(f)
    runs = [e for e in events if e.get("name") == "model_run"]
    first_two_end = runs[1]["ts"] + runs[1]["dur"]
    late = [e for e in events if e.get("cat") == "Node" and e["ts"] > first_two_end]
    late_total = sum(e["dur"] for e in late if e["name"].endswith("_kernel_time"))
    late_matmul = sum(
        e["dur"]
        for e in late
        if e["name"].endswith("_kernel_time") and e["args"]["op_name"] == "MatMul"
    )
    assert last_three["shares"]["matrix products"] == pytest.approx(late_matmul / late_total)


def perf_can_record():
    if not shutil.which("perf"):
        return False
    probe = subprocess.run(
        ["perf", "record", "-e", "cpu-clock", "-q", "-o", os.devnull, "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not perf_can_record(), reason="this machine cannot run `perf record`")
def test_perf_window_samples_only_between_enable_and_disable(tmp_path):
    # The child spends about as long in a pure-Python loop outside the window as in matrix
    # products inside it: the split must see the products only.
    child = (
        "import sys, time, numpy as np\n"
        f"sys.path.insert(0, {str(REPO_ROOT / 'benchmarks')!r})\n"
        "import op_profile\n"
        "def spin(seconds):\n"
        "    end = time.perf_counter() + seconds\n"
        "    while time.perf_counter() < end:\n"
        "        sum(range(1000))\n"
        "a = np.ones((512, 512), np.float32)\n"
        "window = op_profile.PerfWindow(sys.argv[1])\n"
        "spin(1.0)\n"
        "window.enable()\n"
        "end = time.perf_counter() + 1.0\n"
        "while time.perf_counter() < end:\n"
        "    a @ a\n"
        "window.disable()\n"
        "spin(1.0)\n"
    )
    window = op_profile.PerfWindow(str(tmp_path))
    window.make_fifos()
    data = str(tmp_path / "perf.data")
    finished = subprocess.run(
        [*window.command(data), sys.executable, "-c", child, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
    )
    assert finished.returncode == 0, finished.stderr
    split = op_profile.kernel_split(data)
    assert sum(split["shares"].values()) == pytest.approx(1.0, abs=0.02)  # 2-decimal percents
    assert split["shares"]["matrix products"] > 0.8, split["largest"]
