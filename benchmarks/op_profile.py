"""Where a step's time goes: op time per op type from a tf.profiler trace, split into matrix
products and everything else, and the matrix-product FLOPs of an encoder pass that throughput is
measured against (used by bench_finetune.py, bench_pretraining.py and bench_latency.py)."""

import glob
import os
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
