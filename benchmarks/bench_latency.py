"""Benchmark batch-1 serving latency: SavedModel (TF), TFLite fp32/int8 (LiteRT), PyTorch (HF).

For each model size (albert_tiny and albert_base, google style, random weights: latency does not
depend on the values) the script writes a checkpoint, a SavedModel (export_savedmodel.py) and
fixed-shape [1, seq] .tflite files (fp32 and int8 dynamic-range, via export_tflite.py), then
times every runtime in its own subprocess, so each one's peak RSS is its own (a LiteRT process
never imports TensorFlow). The named peer is Hugging Face transformers' AlbertModel in PyTorch
eager mode (`torch.inference_mode`), same sizes, same thread counts, in the same run.

Every row: `warmup` untimed calls, then `iterations` timed calls of one full-length sequence
(mask all ones); p50 / p90 in ms. Size = bytes on disk of what that runtime loads (SavedModel
directory, .tflite file, HF save_pretrained safetensors).

  python benchmarks/bench_latency.py                                   # the README numbers
  python benchmarks/bench_latency.py --models=tiny --iterations=20     # a quick check

Prints a Markdown table and writes a JSON (--output_json).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": "configs/albert_config_tiny_google.json",
    "base": "configs/google_albert_base_zh.json",
}
RUNTIMES = ("savedmodel", "tflite_fp32", "tflite_int8", "pytorch")
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


# ----------------------------------------------------------------------------------------------
# Preparing the files (main process; imports TensorFlow).
# ----------------------------------------------------------------------------------------------


def prepare_model(model_name, seq_lengths, directory):
    """Write checkpoint, SavedModel and .tflite files of one size; return their paths."""
    sys.path.insert(0, str(REPO_ROOT))
    import checkpoints
    import export_savedmodel
    import export_tflite
    import modeling

    config = modeling.AlbertConfig.from_json_file(REPO_ROOT / MODELS[model_name])
    encoder = modeling.AlbertModel(config, style="google", seed=0)
    prefix = checkpoints.save_tensors(
        encoder.named_variables(), os.path.join(directory, "model.ckpt")
    )
    files = {"config": config.to_dict(), "tflite_fp32": {}, "tflite_int8": {}}
    for seq_length in seq_lengths:
        for quantize in ("none", "int8"):
            key = "tflite_fp32" if quantize == "none" else "tflite_int8"
            path = os.path.join(directory, f"{model_name}_{seq_length}_{quantize}.tflite")
            export_tflite.export_tflite(
                config, prefix, path, head="encoder", quantize=quantize, max_seq_length=seq_length
            )
            files[key][seq_length] = path
    # The SavedModel as the project ships it (dynamic [batch, seq] serving_default).
    savedmodel_dir = os.path.join(directory, "savedmodel")
    export_savedmodel.export_savedmodel(config, prefix, savedmodel_dir)
    files["savedmodel"] = savedmodel_dir
    return files


def disk_size(path):
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------
# Timing (one subprocess per runtime, model and thread count).
# ----------------------------------------------------------------------------------------------


def make_inputs(seq_length, vocab_size):
    rng = np.random.default_rng(seq_length)
    ids = rng.integers(1000, vocab_size, size=(1, seq_length), dtype=np.int32)
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


def tflite_caller(path, threads, inputs):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=threads).get_signature_runner()
    return lambda: runner(**inputs)


def savedmodel_caller(path, threads, inputs):
    import tensorflow as tf

    if not getattr(savedmodel_caller, "threads_set", False):  # only before the first op
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        savedmodel_caller.threads_set = True
        savedmodel_caller.loaded = tf.saved_model.load(path)
    signature = savedmodel_caller.loaded.signatures["serving_default"]
    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    return lambda: signature(**tensors)


def pytorch_caller(config, threads, inputs, save_dir):
    import torch
    import transformers

    if not getattr(pytorch_caller, "model", None):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        hf_config = transformers.AlbertConfig(
            vocab_size=config["vocab_size"],
            embedding_size=config["embedding_size"],
            hidden_size=config["hidden_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_hidden_groups=config["num_hidden_groups"],
            num_attention_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            inner_group_num=config["inner_group_num"],
            hidden_act="gelu_new",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=config["max_position_embeddings"],
            type_vocab_size=config["type_vocab_size"],
        )
        model = transformers.AlbertModel(hf_config).eval()
        model.save_pretrained(save_dir)  # for the size on disk
        pytorch_caller.model = model
    model = pytorch_caller.model
    tensors = {name: torch.from_numpy(value.astype(np.int64)) for name, value in inputs.items()}

    def call():
        with torch.inference_mode():
            return model(
                input_ids=tensors["input_ids"],
                attention_mask=tensors["input_mask"],
                token_type_ids=tensors["segment_ids"],
            )

    return call


def worker(spec):
    """Time one runtime at every sequence length; print one JSON line with the results."""
    results = []
    for seq_length in spec["seq_lengths"]:
        inputs = make_inputs(seq_length, spec["config"]["vocab_size"])
        if spec["runtime"] == "savedmodel":
            call = savedmodel_caller(spec["path"], spec["threads"], inputs)
        elif spec["runtime"] == "pytorch":
            call = pytorch_caller(spec["config"], spec["threads"], inputs, spec["path"])
        else:
            call = tflite_caller(spec["path"][str(seq_length)], spec["threads"], inputs)
        latencies = time_calls(call, spec["warmup"], spec["iterations"])
        results.append(
            {
                "seq_length": seq_length,
                "p50_ms": statistics.median(latencies),
                "p90_ms": float(np.percentile(latencies, 90)),
            }
        )
    print(json.dumps({"results": results, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb():
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that over from the parent through fork + exec, so every worker would report the parent's."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def run_worker(spec):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
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
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--work_dir", default=None, help="default: a temporary directory")
    parser.add_argument("--output_json", default="/tmp/bench_latency.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    seq_lengths = [int(s) for s in args.seq_lengths.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    runtimes = args.runtimes.split(",")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_latency_")
    rows = []
    for model_name in args.models.split(","):
        directory = os.path.join(work_dir, model_name)
        os.makedirs(directory, exist_ok=True)
        start = time.time()
        files = prepare_model(model_name, seq_lengths, directory)
        print(f"{model_name}: files ready in {time.time() - start:.0f} s", flush=True)
        for runtime in runtimes:
            path = os.path.join(directory, "pytorch") if runtime == "pytorch" else files[runtime]
            for threads in thread_counts:
                spec = {
                    "runtime": runtime,
                    "path": path,
                    "threads": threads,
                    "seq_lengths": seq_lengths,
                    "iterations": args.iterations,
                    "warmup": args.warmup,
                    "config": files["config"],
                }
                measured = run_worker(spec)
                for result in measured["results"]:
                    size_path = path[result["seq_length"]] if isinstance(path, dict) else path
                    rows.append(
                        {
                            "model": model_name,
                            "runtime": runtime,
                            "threads": threads,
                            **result,
                            "size_mb": disk_size(size_path) / 2**20,
                            "peak_rss_mb": measured["peak_rss_mb"],
                        }
                    )
                    print(f"done: {rows[-1]}", flush=True)
    report(rows, args)


def report(rows, args):
    peer = {
        (r["model"], r["threads"], r["seq_length"]): r["p50_ms"]
        for r in rows
        if r["runtime"] == "pytorch"
    }
    print(
        f"\nbatch 1, {args.iterations} timed calls after {args.warmup} warm-up calls; "
        "random weights; PyTorch = HF transformers AlbertModel eager\n"
    )
    print(
        "| model | runtime | threads | seq | p50 ms | p90 ms | PyTorch p50 / this p50 | "
        "size MB | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(
        rows,
        key=lambda r: (
            r["model"] != "tiny",
            -r["seq_length"],
            RUNTIMES.index(r["runtime"]),
            r["threads"],
        ),
    ):
        ratio = peer.get((r["model"], r["threads"], r["seq_length"]))
        ratio_text = f"{ratio / r['p50_ms']:.2f}x" if ratio else "-"
        print(
            f"| albert_{r['model']} | {r['runtime']} | {r['threads']} | {r['seq_length']} | "
            f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {ratio_text} | {r['size_mb']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(
            {
                "rows": rows,
                "iterations": args.iterations,
                "warmup": args.warmup,
                "cpu_count": os.cpu_count(),
            },
            f,
            indent=1,
        )
    print(f"\nwrote {args.output_json}")


if __name__ == "__main__":
    main()
