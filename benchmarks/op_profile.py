"""Where a step's time goes: op time per op type from a tf.profiler trace, split into matrix
products and everything else; the same split for the serving runtimes (LiteRT's XNNPACK kernels
from a Linux `perf` profile, ONNX Runtime's nodes from its own profiler); and the matrix-product
FLOPs of an encoder pass that throughput is measured against (used by bench_finetune.py,
bench_pretraining.py and bench_latency.py)."""

import glob
import json
import os
import re
import select
import subprocess
import tempfile
import time

TF_MATMUL_TYPES = ("MatMul", "Einsum")  # MatMul, BatchMatMulV2, _MklMatMul, _MklNativeFusedMatMul


def encoder_flops(config, seq_length):
    """Matrix-product FLOPs of one sequence through the encoder (google style; `config` as
    AlbertConfig.to_dict()): embedding projection, Q/K/V, attention scores and context,
    attention output, feed-forward. Heads and pooler are the caller's."""
    H, E, inner = config["hidden_size"], config["embedding_size"], config["intermediate_size"]
    per_layer = (
        2 * seq_length * H * 3 * H  # Q, K, V
        + 2 * 2 * seq_length * seq_length * H  # scores and context
        + 2 * seq_length * H * H  # attention output
        + 2 * 2 * seq_length * H * inner  # FFN in and out
    )
    layers = config["num_hidden_layers"] * config.get("inner_group_num", 1) * per_layer
    projection = 2 * seq_length * E * H if E != H else 0
    return projection + layers


def is_tf_matmul(op_type):
    return any(t in op_type for t in TF_MATMUL_TYPES)


def tf_op_seconds(logdir):
    """{op type: seconds} summed over the TensorFlow op events of a tf.profiler trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    seconds = {}
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # Ops are "node_name:OpType"; executor and Python events have "::" or spaces.
                if name.count(":") != 1 or " " in name:
                    continue
                op_type = name.split(":")[1]
                seconds[op_type] = seconds.get(op_type, 0.0) + event.duration_ps * 1e-12
    return seconds


def split_row(op_seconds, is_matmul, steps, wall_seconds):
    """Per-step wall and op time, the matrix products' share and the largest other ops (ms)."""
    matmul = sum(s for op, s in op_seconds.items() if is_matmul(op))
    total = sum(op_seconds.values())
    others = sorted(((s, op) for op, s in op_seconds.items() if not is_matmul(op)), reverse=True)
    return {
        "step_ms": 1000 * wall_seconds / steps,
        "op_ms_per_step": 1000 * total / steps,
        "matmul_ms_per_step": 1000 * matmul / steps,
        "matmul_share": matmul / total,
        "top_other_ops": {op: 1000 * s / steps for s, op in others[:6]},
    }


TORCH_MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
TORCH_ATTENTION_PREFIX = "aten::_scaled_dot_product"  # fused: its two matmuls + the softmax


def is_torch_matmul(op):
    return op in TORCH_MATMUL_OPS or op.startswith(TORCH_ATTENTION_PREFIX)


def profile_torch(run, steps):
    """torch.profiler over `run()` (already warm; `steps` steps), split_row by aten op. Self
    time: the time inside each op itself, so that aten::linear -> aten::addmm counts once."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    seconds = {e.key: e.self_cpu_time_total * 1e-6 for e in prof.key_averages()}
    seconds = {op: s for op, s in seconds.items() if op.startswith("aten::") and s > 0}
    return split_row(seconds, is_torch_matmul, steps, wall)


def profile_tf(run, steps, prefix="bench_trace_"):
    """Trace `run()` (already warm; it does `steps` steps) with tf.profiler; split_row of it."""
    import tensorflow as tf

    logdir = tempfile.mkdtemp(prefix=prefix)
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    return split_row(tf_op_seconds(logdir), is_tf_matmul, steps, wall)


# ----------------------------------------------------------------------------------------------
# Serving runtimes: time per kernel group, the same groups for LiteRT and ONNX Runtime.
# ----------------------------------------------------------------------------------------------

GROUPS = (
    "matrix products",
    "int8 activation quantization",
    "softmax",
    "GELU",
    "other elementwise",
    "gathers, copies, transposes",
    "runtime, Python, other",
)
# XNNPACK's micro-kernels (LiteRT's CPU path) by symbol; the first match wins, so packing and
# quantizing the operands of a product are counted apart from the product itself.
XNNPACK_GROUPS = (
    ("int8 activation quantization", r"qs8_vcvt|qd8_asymmetric|rminmax|pack_lh|packq"),
    ("gathers, copies, transposes", r"packw|transpose|memmove|memcpy|memset|gather"),
    ("matrix products", r"gemm"),
    ("softmax", r"expminusmax|_rmax_|_rsum_|reciprocal|softmax"),
    ("GELU", r"gelu"),
    ("other elementwise", r"^xnn_\w+_v\w*_ukernel|^xnn_\w+_vmulcaddc"),
)
# ONNX Runtime's op types (its profiler names nodes, not kernels).
ORT_GROUPS = {
    "matrix products": {"MatMul", "FusedMatMul", "Gemm", "Attention", "MatMulInteger",
                        "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention"},
    "int8 activation quantization": {"DynamicQuantizeLinear", "QuantizeLinear",
                                     "DequantizeLinear"},
    "softmax": {"Softmax"},
    "GELU": {"FastGelu", "Gelu", "BiasGelu", "Erf", "Tanh"},
    "other elementwise": {"SkipLayerNormalization", "LayerNormalization", "Add", "Sub", "Mul",
                          "Div", "Pow", "Sqrt", "ReduceMean", "Where", "IsNaN", "Cast",
                          "Equal", "Not", "Neg"},
    "gathers, copies, transposes": {"Gather", "Transpose", "Reshape", "Concat", "Slice",
                                    "Unsqueeze", "Squeeze", "Expand", "Shape", "Identity"},
}  # fmt: skip


def kernel_group(symbol):
    """The group of one XNNPACK / native symbol of a perf profile."""
    for group, pattern in XNNPACK_GROUPS:
        if re.search(pattern, symbol):
            return group
    return "runtime, Python, other"


def _split(amounts):
    """{name: (group, amount)} -> shares per group and the five largest names."""
    total = sum(amount for _, amount in amounts.values()) or 1.0
    shares = dict.fromkeys(GROUPS, 0.0)
    for group, amount in amounts.values():
        shares[group] += amount / total
    largest = sorted(amounts.items(), key=lambda item: -item[1][1])[:5]
    return {"shares": shares, "largest": [[name, amount / total] for name, (_, amount) in largest]}


class PerfWindow:
    """Linux `perf record` of a child process, sampling only between enable() and disable().

    The parent starts the child under `command(data_path)` (perf starts disabled); the child
    calls enable() / disable() around the window it wants profiled; the parent reads
    `kernel_split(data_path)` when the child has exited. Samples are CPU time (cpu-clock, a
    software event: no hardware counters needed), so with several threads a spinning thread
    counts as much as a working one."""

    def __init__(self, fifo_dir):
        self.control = os.path.join(fifo_dir, "perf_control")
        self.ack = os.path.join(fifo_dir, "perf_ack")

    def make_fifos(self):
        for path in (self.control, self.ack):
            os.mkfifo(path)

    def command(self, data_path, frequency=1999):
        return ["perf", "record", "-e", "cpu-clock", "-F", str(frequency), "-D", "-1",
                f"--control=fifo:{self.control},{self.ack}", "-q", "-o", data_path, "--"]  # fmt: skip

    def _send(self, word, timeout=60):
        try:  # non-blocking: no reader (perf not running) is an error, not a hang
            control = os.open(self.control, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            raise RuntimeError(
                f"nobody reads {self.control}: run this process under PerfWindow.command()"
            ) from error
        os.write(control, (word + "\n").encode("ascii"))
        os.close(control)
        ack = os.open(self.ack, os.O_RDONLY | os.O_NONBLOCK)
        try:
            ready, _, _ = select.select([ack], [], [], timeout)
            if not ready or not os.read(ack, 64):
                raise RuntimeError(f"perf did not acknowledge '{word}' within {timeout} s")
        finally:
            os.close(ack)

    def enable(self):
        self._send("enable")

    def disable(self):
        self._send("disable")


def kernel_split(data_path):
    """Share of the sampled time per group and the five largest symbols of a perf profile."""
    report = subprocess.run(
        ["perf", "report", "-i", data_path, "--stdio", "--no-children", "--sort", "sym",
         "--percent-limit", "0"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    amounts = {}
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(.+?)\s*$", line)
        if match:
            symbol = match.group(2)
            amounts[symbol] = (kernel_group(symbol), float(match.group(1)))
    if not amounts:
        raise RuntimeError(f"perf report of {data_path} has no samples: was the window enabled?")
    return _split(amounts)


def ort_node_split(profile_path, runs):
    """Share of node time per group and the five largest op types over the last `runs`
    model runs of an ONNX Runtime profile (SessionOptions.enable_profiling)."""
    with open(profile_path, encoding="utf-8") as f:
        events = json.load(f)
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run"]
    start, end = windows[-runs][0], windows[-1][1]
    amounts = {}
    for e in events:
        if (
            e.get("cat") == "Node"
            and e["name"].endswith("_kernel_time")
            and start <= e["ts"] <= end
        ):
            op = e["args"]["op_name"]
            group = next(
                (g for g, ops in ORT_GROUPS.items() if op in ops), "runtime, Python, other"
            )
            amounts[op] = (group, amounts.get(op, (group, 0.0))[1] + e["dur"])
    return _split(amounts)
