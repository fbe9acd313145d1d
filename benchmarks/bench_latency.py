"""Serving latency and throughput: SavedModel (TF), TFLite fp32/int8 (LiteRT), ONNX Runtime
fp32/int8 and PyTorch (HF), all with the same weights.

For each model size (albert_tiny and albert_base, google style, random weights: latency does not
depend on the values) the script writes a checkpoint, a SavedModel (export_savedmodel.py),
.tflite files (export_tflite.py: fixed [1, seq] for batch 1, dynamic for larger batches; fp32 and
int8 dynamic-range) and, through convert_albert_tf_checkpoint_to_pytorch.py, the same weights as
a Hugging Face AlbertModel. The peers are what a user would pick instead:
  * ONNX Runtime: that HF model exported by torch.onnx.export (opset 17, dynamic batch and
    sequence), fused by ORT's transformer optimizer (onnxruntime.transformers.optimizer,
    model_type "bert": what fuses on ALBERT is Gelu and SkipLayerNormalization; its attention
    fusion does not match ALBERT's graph), and for int8 quantized by
    onnxruntime.quantization.quantize_dynamic (int8 weights, per-tensor);
  * PyTorch: HF transformers' AlbertModel in eager mode (`torch.inference_mode`).
Every runtime is timed in its own subprocess (own peak RSS; a LiteRT or ORT process never imports
TensorFlow) with the same thread count (intra-op threads; inter-op 1). Before timing, each
checks its sequence output on the timed input against the TF model's: fp32 runtimes within
1e-3, int8 ones reported as the largest absolute difference.

Every row: `warmup` untimed calls, then `iterations` timed calls of [batch, seq] full-length
sequences (mask all ones); p50 / p90 in ms per call, and sequences/s at the p50; with
`--repeats`, every runtime runs that many times, round-robin, and rows give the medians. Size =
bytes on disk of what that runtime loads. GFLOP/s = the encoder's matrix-product FLOPs per call over the
p50. Each TFLite and ORT worker also times its runtime's own single matrix product (fp32 or
int8 weights, [n, n] @ [n, n] for n in PEAK_SIZES, same threads, the fastest call): that
runtime's matmul peak on this CPU, the ceiling a model's GFLOP/s can approach but not pass.
With --profile, each TFLite and ORT runtime runs once more at the first batch size and sequence
length with a profiler on, and a table gives the share of its time per kernel group (matrix
products, softmax, GELU, ...): LiteRT's XNNPACK kernels from Linux `perf record` samples taken
only during the timed calls, ORT's nodes from its own profiler (op_profile.py).

  python benchmarks/bench_latency.py                                   # the README numbers
  python benchmarks/bench_latency.py --models=tiny --batch_sizes=1 --iterations=20   # quick
  python benchmarks/bench_latency.py --models=tiny --batch_sizes=1 --seq_lengths=128 \
      --runtimes=tflite_fp32,tflite_int8,ort_fp32,ort_int8 --iterations=100 --warmup=10 \
      --repeats=3 --profile                                 # the peak and profile tables

Prints a Markdown table and writes a JSON (--output_json).
"""

import argparse
import itertools
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import op_profile  # (benchmarks/: this script's directory)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": "configs/albert_config_tiny_google.json",
    "base": "configs/google_albert_base_zh.json",
}
RUNTIMES = ("savedmodel", "tflite_fp32", "tflite_int8", "ort_fp32", "ort_int8", "pytorch")
# The peer of each of our runtimes in the ratio columns.
ORT_PEER = {"tflite_fp32": "ort_fp32", "tflite_int8": "ort_int8", "savedmodel": "ort_fp32"}
FP32_TOLERANCE = 1e-3  # sequence output vs the TF model (values are O(1))
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
PEAK_SIZES = (512, 1024)  # the single matrix products that measure each runtime's peak


# ----------------------------------------------------------------------------------------------
# Preparing the files (main process; imports TensorFlow).
# ----------------------------------------------------------------------------------------------


def prepare_model(model_name, shapes, directory):
    """Write checkpoint, SavedModel, .tflite, HF and ONNX files of one size and the TF model's
    reference outputs for every [batch, seq] in `shapes`; return their paths."""
    sys.path.insert(0, str(REPO_ROOT))
    import checkpoints
    import convert_albert_tf_checkpoint_to_pytorch as to_hf
    import export_savedmodel
    import export_tflite
    import modeling

    config = modeling.AlbertConfig.from_json_file(REPO_ROOT / MODELS[model_name])
    encoder = modeling.AlbertModel(config, style="google", seed=0)
    prefix = checkpoints.save_tensors(
        encoder.named_variables(), os.path.join(directory, "model.ckpt")
    )
    files = {"config": config.to_dict(), "tflite_fp32": {}, "tflite_int8": {}, "reference": {}}
    for quantize in ("none", "int8"):
        key = "tflite_fp32" if quantize == "none" else "tflite_int8"
        for batch, seq_length in shapes:
            dynamic = batch > 1
            name = f"{model_name}_{'dynamic' if dynamic else seq_length}_{quantize}.tflite"
            path = os.path.join(directory, name)
            if not os.path.exists(path):
                export_tflite.export_tflite(
                    config,
                    prefix,
                    path,
                    head="encoder",
                    quantize=quantize,
                    max_seq_length=seq_length,
                    dynamic=dynamic,
                )
            files[key][shape_key(batch, seq_length)] = path
    # The SavedModel as the project ships it (dynamic [batch, seq] serving_default).
    savedmodel_dir = os.path.join(directory, "savedmodel")
    export_savedmodel.export_savedmodel(config, prefix, savedmodel_dir)
    files["savedmodel"] = savedmodel_dir
    for batch, seq_length in shapes:
        inputs = make_inputs(batch, seq_length, config.vocab_size)
        output = encoder(inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"])
        path = os.path.join(directory, f"reference_{batch}x{seq_length}.npy")
        np.save(path, output["sequence_output"].numpy())
        files["reference"][shape_key(batch, seq_length)] = path
    hf_dir = os.path.join(directory, "pytorch")
    to_hf.convert(config, prefix, hf_dir, style="google")
    files["pytorch"] = hf_dir
    files["ort_fp32"], files["ort_int8"] = prepare_onnx(config, hf_dir, directory)
    files["peak"] = prepare_peak_models(os.path.dirname(directory))
    return files


def prepare_peak_models(directory):
    """[n, n] @ [n, n] products (n in PEAK_SIZES) for each TFLite and ORT variant, written once:
    {runtime: {n: path}}. A runtime's fastest matrix product bounds what a model can do in it."""
    import onnx
    import tensorflow as tf
    from onnx import TensorProto, helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import export_tflite

    paths = {}
    for n in PEAK_SIZES:
        name = os.path.join(directory, f"peak_{n}")
        files = {
            "tflite_fp32": f"{name}_fp32.tflite",
            "tflite_int8": f"{name}_int8.tflite",
            "ort_fp32": f"{name}_fp32.onnx",
            "ort_int8": f"{name}_int8.onnx",
        }
        for runtime, path in files.items():
            paths.setdefault(runtime, {})[n] = path
        if all(os.path.exists(path) for path in files.values()):
            continue
        weight = np.random.default_rng(n).standard_normal((n, n)).astype(np.float32) / n**0.5
        module = tf.Module()
        module.weight = tf.Variable(weight)
        function = tf.function(
            lambda x, module=module: {"y": tf.matmul(x, module.weight)},
            input_signature=[tf.TensorSpec([n, n], tf.float32, name="x")],
        ).get_concrete_function()
        for runtime, quantize in (("tflite_fp32", "none"), ("tflite_int8", "int8")):
            with open(files[runtime], "wb") as f:
                f.write(export_tflite.convert(function, module, quantize))
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "weight"], ["y"])],
            "peak",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
            [onnx.numpy_helper.from_array(weight, "weight")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(model, files["ort_fp32"])
        quantize_dynamic(files["ort_fp32"], files["ort_int8"], weight_type=QuantType.QInt8)
    return paths


def prepare_onnx(config, hf_dir, directory):
    """The HF model as ONNX: exported, fused by ORT's optimizer, and int8-quantized."""
    import onnx
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    model = transformers.AlbertModel.from_pretrained(hf_dir).eval()
    exported = os.path.join(directory, "albert.onnx")
    ids = torch.ones(1, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        exported,
        input_names=names,
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={name: {0: "batch", 1: "seq"} for name in names},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter: dynamic axes without a dynamo trace
    )
    fused = os.path.join(directory, "albert_fused.onnx")
    optimized = optimizer.optimize_model(
        exported,
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
    )
    print(f"ORT fusion: {optimized.get_fused_operator_statistics()}", flush=True)
    optimized.save_model_to_file(fused)
    quantized = os.path.join(directory, "albert_fused_int8.onnx")
    # The fused ops (com.microsoft domain) have no ONNX type inference: say their type.
    quantize_dynamic(
        fused,
        quantized,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return fused, quantized


def shape_key(batch, seq_length):
    return f"{batch}x{seq_length}"


def disk_size(path):
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------
# Timing (one subprocess per runtime, model and thread count).
# ----------------------------------------------------------------------------------------------


def make_inputs(batch, seq_length, vocab_size):
    rng = np.random.default_rng(seq_length * 1000 + batch)
    ids = rng.integers(1000, vocab_size, size=(batch, seq_length), dtype=np.int32)
    segments = np.zeros_like(ids)
    segments[:, seq_length // 2 :] = 1
    return {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": segments}


def time_calls(call, warmup, iterations):
    """Latencies in ms of `iterations` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    latencies = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1e3)
    return latencies


def tflite_runner(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path, num_threads=threads).get_signature_runner()


def tflite_caller(path, threads, inputs):
    runner = tflite_runner(path, threads)
    return lambda: runner(**inputs)["sequence_output"]


def savedmodel_caller(path, threads, inputs):
    import tensorflow as tf

    if not getattr(savedmodel_caller, "threads_set", False):  # only before the first op
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        savedmodel_caller.threads_set = True
        savedmodel_caller.loaded = tf.saved_model.load(path)
    signature = savedmodel_caller.loaded.signatures["serving_default"]
    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    return lambda: signature(**tensors)["sequence_output"].numpy()


def hf_inputs(inputs):
    """Our input names -> HF's (int64, as HF's ONNX export and PyTorch take them)."""
    return {
        "input_ids": inputs["input_ids"].astype(np.int64),
        "attention_mask": inputs["input_mask"].astype(np.int64),
        "token_type_ids": inputs["segment_ids"].astype(np.int64),
    }


def ort_session(path, threads, profile_prefix=None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_caller(path, threads, inputs):
    if getattr(ort_caller, "path", None) != path:
        ort_caller.session = ort_session(path, threads)
        ort_caller.path = path
    session, feed = ort_caller.session, hf_inputs(inputs)
    return lambda: session.run(["last_hidden_state"], feed)[0]


def pytorch_caller(path, threads, inputs):
    import torch
    import transformers

    if not getattr(pytorch_caller, "model", None):
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        pytorch_caller.model = transformers.AlbertModel.from_pretrained(path).eval()
    model = pytorch_caller.model
    tensors = {name: torch.from_numpy(value) for name, value in hf_inputs(inputs).items()}

    def call():
        with torch.inference_mode():
            return model(**tensors).last_hidden_state.numpy()

    return call


def make_caller(spec, inputs, key):
    runtime, path, threads = spec["runtime"], spec["path"], spec["threads"]
    if runtime == "savedmodel":
        return savedmodel_caller(path, threads, inputs)
    if runtime == "pytorch":
        return pytorch_caller(path, threads, inputs)
    if runtime.startswith("ort_"):
        return ort_caller(path, threads, inputs)
    return tflite_caller(path[key], threads, inputs)


def worker(spec):
    """Check, then time one runtime at every shape; print one JSON line with the results."""
    results = []
    for batch, seq_length in spec["shapes"]:
        key = shape_key(batch, seq_length)
        inputs = make_inputs(batch, seq_length, spec["config"]["vocab_size"])
        call = make_caller(spec, inputs, key)
        reference = np.load(spec["reference"][key])
        difference = float(np.abs(call() - reference).max())
        if spec["runtime"] in ("savedmodel", "tflite_fp32", "ort_fp32", "pytorch"):
            if not difference <= FP32_TOLERANCE:
                raise RuntimeError(
                    f"{spec['runtime']} {key}: sequence output differs from TF's by "
                    f"{difference:.2e} > {FP32_TOLERANCE}: not the same model, nothing timed"
                )
        if spec.get("profile"):
            return profile_worker(spec, call, inputs)
        latencies = time_calls(call, spec["warmup"], spec["iterations"])
        p50 = statistics.median(latencies)
        results.append(
            {
                "batch": batch,
                "seq_length": seq_length,
                "p50_ms": p50,
                "p90_ms": float(np.percentile(latencies, 90)),
                "sequences_per_s": batch * 1e3 / p50,
                "max_abs_difference": difference,
            }
        )
    peak = None
    if spec.get("peak_path"):  # after the model, so its peak RSS is the model's alone
        peak = time_peak(spec["runtime"], spec["peak_path"], spec["threads"])
    print(json.dumps({"results": results, "peak_rss_mb": peak_rss_mb(), "peak_gflops": peak}))


def profile_worker(spec, call, inputs):
    """Time one shape inside a profiled window; print one JSON line. LiteRT: the parent runs
    this process under perf, sampling between enable() and disable(); ONNX Runtime: its own
    profiler (a fresh session with profiling on, so the check and warm-up calls are left out by
    counting model runs)."""
    if spec["runtime"].startswith("ort_"):
        session = ort_session(spec["path"], spec["threads"], spec["profile"])
        feed = hf_inputs(inputs)

        def call():
            return session.run(["last_hidden_state"], feed)

        latencies = time_calls(call, spec["warmup"], spec["iterations"])
        split = op_profile.ort_node_split(session.end_profiling(), spec["iterations"])
    else:
        for _ in range(spec["warmup"]):
            call()
        window = op_profile.PerfWindow(spec["profile"])
        window.enable()
        latencies = time_calls(call, 0, spec["iterations"])
        window.disable()
        split = None  # the parent reads perf's data once this process has exited
    print(json.dumps({"p50_ms": statistics.median(latencies), "split": split}))


def time_peak(runtime, paths, threads, warmup=3, iterations=20):
    """Best GFLOP/s of the runtime's single [n, n] @ [n, n] products (its fastest call)."""
    best = 0.0
    for n, path in paths.items():
        n = int(n)  # a JSON key in the worker's spec
        x = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
        if runtime.startswith("ort_"):
            session = ort_session(path, threads)

            def call(session=session, x=x):
                return session.run(None, {"x": x})
        else:
            runner = tflite_runner(path, threads)

            def call(runner=runner, x=x):
                return runner(x=x)

        fastest_ms = min(time_calls(call, warmup, iterations))
        best = max(best, 2 * n**3 / (fastest_ms * 1e-3) / 1e9)
    return best


def peak_rss_mb():
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that over from the parent through fork + exec, so every worker would report the parent's."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def run_worker(spec, prefix=()):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [*prefix, sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{spec['runtime']} worker failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Main: prepare, time, report.
# ----------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,base", help="comma list of tiny,base")
    parser.add_argument("--seq_lengths", default="128,32")
    parser.add_argument("--batch_sizes", default="1,32", help="1: latency; 32: throughput")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument(
        "--batch_iterations", type=int, default=20, help="timed calls when batch > 1"
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over all runtimes; rows give medians"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile the TFLite and ORT runtimes at the first batch size and "
        "sequence length: time per kernel group (TFLite: Linux perf; ORT: its own profiler)",
    )
    parser.add_argument("--work_dir", default=None, help="default: a temporary directory")
    parser.add_argument("--output_json", default="/tmp/bench_latency.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    import cpu_kernels  # noqa: F401  (before TensorFlow, here and in the workers it starts)

    if args.worker:
        return worker(json.loads(args.worker))

    seq_lengths = [int(s) for s in args.seq_lengths.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    runtimes = args.runtimes.split(",")
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        parser.error(f"unknown --runtimes {unknown}: use {','.join(RUNTIMES)}")
    if args.profile and any(r.startswith("tflite") for r in runtimes) and not shutil.which("perf"):
        parser.error("--profile needs Linux perf for the TFLite runtimes (Debian: apt install "
                     "linux-perf), or leave tflite_* out of --runtimes")  # fmt: skip
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_latency_")
    rows, profiles = [], []
    for model_name in args.models.split(","):
        directory = os.path.join(work_dir, model_name)
        os.makedirs(directory, exist_ok=True)
        start = time.time()
        shapes = [(b, s) for b in batch_sizes for s in seq_lengths]
        files = prepare_model(model_name, shapes, directory)
        print(f"{model_name}: files ready in {time.time() - start:.0f} s", flush=True)
        repeats = {}  # (runtime, threads, batch, seq) -> [(result, its worker's output), ...]
        # Round-robin over the runtimes, so a slow spell of a shared machine hits them alike.
        rounds = itertools.product(range(args.repeats), runtimes, thread_counts, batch_sizes)
        for repeat, runtime, threads, batch in rounds:
            spec = worker_spec(runtime, threads, batch, seq_lengths, files, args)
            measured = run_worker({**spec, "peak_path": files["peak"].get(runtime)})
            for result in measured["results"]:
                key = (runtime, threads, batch, result["seq_length"])
                repeats.setdefault(key, []).append((result, measured))
                print(
                    f"done ({repeat + 1}/{args.repeats}): {key} p50 {result['p50_ms']:.2f} ms",
                    flush=True,
                )
        for (runtime, threads, _, _), measured in repeats.items():
            rows.append(combine_repeats(model_name, runtime, threads, measured, files))
        if args.profile:
            shape = (batch_sizes[0], seq_lengths[0])
            for runtime, threads in itertools.product(runtimes, thread_counts):
                if runtime.startswith(("tflite", "ort")):
                    split = profile_runtime(runtime, threads, shape, files, args)
                    profiles.append({"model": model_name, "runtime": runtime,
                                     "threads": threads, "batch": shape[0],
                                     "seq_length": shape[1], **split})  # fmt: skip
    report(rows, profiles, args)


def worker_spec(runtime, threads, batch, seq_lengths, files, args):
    """What a worker needs to check and time one runtime at `batch` and each of `seq_lengths`."""
    return {
        "runtime": runtime,
        "path": files[runtime],
        "threads": threads,
        "shapes": [(batch, s) for s in seq_lengths],
        "iterations": args.iterations if batch == 1 else args.batch_iterations,
        "warmup": args.warmup if batch == 1 else max(args.warmup // 5, 2),
        "config": files["config"],
        "reference": files["reference"],
    }


def profile_runtime(runtime, threads, shape, files, args):
    """One profiled worker: p50 inside the profiled window and the time per kernel group."""
    spec = worker_spec(runtime, threads, shape[0], [shape[1]], files, args)
    with tempfile.TemporaryDirectory(prefix="bench_latency_profile_") as scratch:
        if runtime.startswith("ort_"):
            measured = run_worker({**spec, "profile": os.path.join(scratch, "ort")})
        else:
            window = op_profile.PerfWindow(scratch)
            window.make_fifos()
            data = os.path.join(scratch, "perf.data")
            measured = run_worker({**spec, "profile": scratch}, prefix=window.command(data))
            measured["split"] = op_profile.kernel_split(data)
    print(f"profiled {runtime}, {threads} thread(s): p50 {measured['p50_ms']:.2f} ms", flush=True)
    return {"p50_ms": measured["p50_ms"], **measured["split"]}


def encoder_and_pooler_flops(config, seq_length):
    """Matrix-product FLOPs of one sequence through what the timed models compute."""
    return op_profile.encoder_flops(config, seq_length) + 2 * config["hidden_size"] ** 2


def combine_repeats(model_name, runtime, threads, measured, files):
    """One row from a runtime's repeats: medians of the p50 / p90 latencies, the largest
    difference from TF and peak RSS, the best matmul peak (a ceiling)."""
    results = [result for result, _ in measured]
    batch, seq_length = results[0]["batch"], results[0]["seq_length"]
    p50 = statistics.median(r["p50_ms"] for r in results)
    path = files[runtime]
    if isinstance(path, dict):
        path = path[shape_key(batch, seq_length)]
    peaks = [worker["peak_gflops"] for _, worker in measured if worker["peak_gflops"]]
    return {
        "model": model_name,
        "runtime": runtime,
        "threads": threads,
        "batch": batch,
        "seq_length": seq_length,
        "p50_ms": p50,
        "p50_ms_repeats": [r["p50_ms"] for r in results],
        "p90_ms": statistics.median(r["p90_ms"] for r in results),
        "sequences_per_s": batch * 1e3 / p50,
        "max_abs_difference": max(r["max_abs_difference"] for r in results),
        "size_mb": disk_size(path) / 2**20,
        "peak_rss_mb": max(worker["peak_rss_mb"] for _, worker in measured),
        "gflops": batch * encoder_and_pooler_flops(files["config"], seq_length) / (p50 * 1e6),
        "matmul_peak_gflops": max(peaks) if peaks else None,
    }


def cpu_name():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def share_of_peak(row):
    peak = row.get("matmul_peak_gflops")
    return f"{100 * row['gflops'] / peak:.0f}%" if peak else "-"


def report(rows, profiles, args):
    p50 = {(r["model"], r["runtime"], r["threads"], r["batch"], r["seq_length"]): r["p50_ms"]
           for r in rows}  # fmt: skip

    def ratio(row, peer):
        theirs = p50.get((row["model"], peer, row["threads"], row["batch"], row["seq_length"]))
        return f"{theirs / row['p50_ms']:.2f}x" if theirs and row["runtime"] != peer else "-"

    print(
        f"\n{cpu_name()}, {os.cpu_count()} CPUs; {args.iterations} timed calls at batch 1, "
        f"{args.batch_iterations} at larger batches, after warm-up; medians of "
        f"{args.repeats} round(s) over the runtimes; random weights, the same in every runtime\n"
    )
    print(
        "| model | runtime | threads | batch | seq | p50 ms | p90 ms | seq/s | GFLOP/s | "
        "of its matmul peak | ORT p50 / this | PyTorch p50 / this | max abs diff vs TF | "
        "size MB | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(
        rows,
        key=lambda r: (
            r["model"] != "tiny",
            r["batch"],
            -r["seq_length"],
            r["threads"],
            RUNTIMES.index(r["runtime"]),
        ),
    ):
        print(
            f"| albert_{r['model']} | {r['runtime']} | {r['threads']} | {r['batch']} | "
            f"{r['seq_length']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['sequences_per_s']:.1f} | {r['gflops']:.1f} | {share_of_peak(r)} | "
            f"{ratio(r, ORT_PEER.get(r['runtime'], ''))} | "
            f"{ratio(r, 'pytorch')} | {r['max_abs_difference']:.1e} | {r['size_mb']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    peaks = sorted({(r["runtime"], r["threads"], r["matmul_peak_gflops"]) for r in rows
                    if r.get("matmul_peak_gflops")})  # fmt: skip
    if peaks:
        sizes = " and ".join(f"[{n}, {n}] @ [{n}, {n}]" for n in PEAK_SIZES)
        print(f"\nEach runtime's own matmul peak (fastest call of {sizes}), GFLOP/s:")
        for runtime, threads, gflops in peaks:
            print(f"- {runtime}, {threads} thread(s): {gflops:.1f}")
    if profiles:
        report_profiles(profiles)
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(
            {
                "rows": rows,
                "profiles": profiles,
                "iterations": args.iterations,
                "batch_iterations": args.batch_iterations,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "cpu": cpu_name(),
                "cpu_count": os.cpu_count(),
            },
            f,
            indent=1,
        )
    print(f"\nwrote {args.output_json}")


def report_profiles(profiles):
    """Share of each profiled runtime's time per kernel group, and its largest kernels."""
    print(
        "\nWhere the time goes (TFLite: CPU samples of Linux perf by XNNPACK kernel; ORT: node "
        "time of its profiler by op type):\n"
    )
    print(f"| model | runtime | threads | batch | seq | p50 ms | {' | '.join(op_profile.GROUPS)} "
          "| largest |")  # fmt: skip
    print("|---" * (7 + len(op_profile.GROUPS)) + "|")
    for p in profiles:
        shares = " | ".join(f"{100 * p['shares'][g]:.1f}%" for g in op_profile.GROUPS)
        largest = ", ".join(f"{name} {100 * share:.1f}%" for name, share in p["largest"][:3])
        print(
            f"| albert_{p['model']} | {p['runtime']} | {p['threads']} | {p['batch']} | "
            f"{p['seq_length']} | {p['p50_ms']:.2f} | {shares} | {largest} |"
        )


if __name__ == "__main__":
    main()
