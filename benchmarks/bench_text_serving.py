"""Benchmark raw text -> probabilities: the SavedModel's classify_text vs two tokenize-then-run peers.

One albert_tiny classifier (google style, random weights spread far from their initial values
so that the outputs differ between pairs; 2 labels; LCQMC's model_info.json and vocab), served
three ways, each from raw LCQMC pairs (lcqmc_small/test.txt) to class probabilities:

  * classify_text: the SavedModel of export_savedmodel.py, tokenizer inside the graph;
  * FullTokenizer + classifier: tokenization.FullTokenizer.encode_pair in Python, padded, then
    the same SavedModel's id signature `classifier`;
  * HF: transformers' BertTokenizerFast + AlbertForSequenceClassification (PyTorch eager,
    torch.inference_mode), converted from the same checkpoint by
    convert_albert_tf_checkpoint_to_pytorch.py.

The three must give the same probabilities on 64 pairs before anything is timed (classify_text
vs the id signature within 1e-6, vs HF within 1e-4). Then, each runtime in its own process with
the same number of threads: latency at batch 1 (p50 and p90 of `--calls` calls after
`--warmup`, a different pair each call) and throughput at batch 32 (pairs/s over `--batches`
batches, median of `--repeats` passes). The scripts it builds on run as subprocesses.

  python benchmarks/bench_text_serving.py                          # the README numbers
  python benchmarks/bench_text_serving.py --calls=20 --batches=3   # a quick check
  python benchmarks/bench_text_serving.py --profile   # also where a batch-1 call's time goes

Prints a Markdown table and the CPU (lscpu), and writes a JSON (--output_json).
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
import op_profile  # (benchmarks/: this script's directory)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = pathlib.Path(os.environ.get("ALBERT_ZH_DATA", REPO_ROOT.parent / "shared" / "data"))
CONFIG = REPO_ROOT / "configs" / "albert_config_tiny_google.json"
MAX_SEQ_LENGTH = 128
RUNTIMES = ("classify_text", "fulltokenizer_classifier", "hf")
NAMES = {
    "classify_text": "SavedModel `classify_text` (tokenizer in the graph)",
    "fulltokenizer_classifier": "Python `FullTokenizer` + SavedModel `classifier`",
    "hf": "HF `BertTokenizerFast` + `AlbertForSequenceClassification` (PyTorch)",
}
CHECK_PAIRS = 64
PROFILED_CALLS = 50  # batch-1 calls traced by --profile


def run(argv):
    """Run a repository script (or this one) in a subprocess; its stdout, or the error."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout


def read_pairs(count):
    with open(DATA_DIR / "lcqmc_small" / "test.txt", encoding="utf-8") as f:
        lines = f.read().splitlines()[:count]
    return [tuple(line.split("\t")[:2]) for line in lines]


# ----------------------------------------------------------------------------------------------
# Preparing the model: a fine-tuned-like output directory, its SavedModel and its HF copy.
# ----------------------------------------------------------------------------------------------


def write_classifier(directory):
    """A random albert_tiny classifier as run_classifier.py leaves it; returns the directory."""
    sys.path.insert(0, str(REPO_ROOT))
    import checkpoints
    import modeling

    config = modeling.AlbertConfig.from_json_file(CONFIG)
    model = modeling.AlbertForClassification(config, 2, style="google", classifier_dropout=0.0)
    rng = np.random.default_rng(0)
    for name, variable in model.named_variables().items():
        shape = variable.shape.as_list()
        if name.endswith("/gamma"):
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith("_embeddings"):
            value = 0.5 * rng.standard_normal(shape)
        else:  # kernels and biases scaled by fan-in, so activations and logits stay O(1)
            fan_in = shape[1] if name == "output_weights" else shape[0] if len(shape) == 2 else 64
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        variable.assign(value.astype(np.float32))
    checkpoints.save_tensors(model.named_variables(), os.path.join(directory, "model.ckpt-best"))
    info = {
        "task": "classification",
        "task_name": "lcqmc",
        "labels": ["0", "1"],
        "label_names": ["different", "same"],
        "max_seq_length": MAX_SEQ_LENGTH,
        "do_lower_case": True,
        "style": "google",
    }
    checkpoints.write_model_info(directory, config, str(DATA_DIR / "vocab.txt"), info)
    return directory


def prepare(work_dir):
    """Paths of the fine-tuned directory, its SavedModel and its HF directory."""
    model_dir = os.path.join(work_dir, "lcqmc_tiny")
    os.makedirs(model_dir, exist_ok=True)
    write_classifier(model_dir)
    savedmodel = os.path.join(work_dir, "savedmodel")
    run(["export_savedmodel.py", f"--init_checkpoint={model_dir}", f"--export_dir={savedmodel}"])
    hf_dir = os.path.join(work_dir, "hf")
    run(
        [
            "convert_albert_tf_checkpoint_to_pytorch.py",
            f"--tf_checkpoint_path={os.path.join(model_dir, 'model.ckpt-best')}",
            f"--albert_config_file={os.path.join(model_dir, 'albert_config.json')}",
            f"--vocab_file={os.path.join(model_dir, 'vocab.txt')}",
            f"--output_dir={hf_dir}",
        ]
    )
    return {"model_dir": model_dir, "savedmodel": savedmodel, "hf": hf_dir}


# ----------------------------------------------------------------------------------------------
# Workers: one runtime each, in its own process.
# ----------------------------------------------------------------------------------------------


def text_classifier(spec):
    """classify_text: a function (texts_a, texts_b) -> probabilities [N, 2]."""
    import tensorflow as tf

    signature = tf.saved_model.load(spec["paths"]["savedmodel"]).signatures["classify_text"]

    def probabilities(texts_a, texts_b):
        outputs = signature(text_a=tf.constant(texts_a), text_b=tf.constant(texts_b))
        return outputs["probabilities"].numpy()

    return probabilities


def fulltokenizer_classifier(spec):
    """Python FullTokenizer, padding in NumPy, then the id signature `classifier`."""
    import tensorflow as tf

    sys.path.insert(0, str(REPO_ROOT))
    import tokenization

    tokenizer = tokenization.FullTokenizer(os.path.join(spec["paths"]["model_dir"], "vocab.txt"))
    signature = tf.saved_model.load(spec["paths"]["savedmodel"]).signatures["classifier"]
    names = ("input_ids", "input_mask", "segment_ids")

    def probabilities(texts_a, texts_b):
        encoded = [
            tokenizer.encode_pair(a, b or None, MAX_SEQ_LENGTH)
            for a, b in zip(texts_a, texts_b, strict=True)
        ]
        width = max(len(e["input_ids"]) for e in encoded)
        inputs = {
            name: tf.constant([e[name] + [0] * (width - len(e[name])) for e in encoded], tf.int32)
            for name in names
        }
        return signature(**inputs)["probabilities"].numpy()

    return probabilities


def hf_classifier(spec):
    """BertTokenizerFast + AlbertForSequenceClassification (eager, inference_mode)."""
    import torch
    import transformers

    tokenizer = transformers.BertTokenizerFast.from_pretrained(spec["paths"]["hf"])
    model = transformers.AlbertForSequenceClassification.from_pretrained(spec["paths"]["hf"])
    model.eval()

    def probabilities(texts_a, texts_b):
        with torch.inference_mode():
            inputs = tokenizer(
                list(texts_a),
                list(texts_b),
                truncation="longest_first",
                max_length=MAX_SEQ_LENGTH,
                padding="longest",
                return_tensors="pt",
            )
            return torch.softmax(model(**inputs).logits, dim=-1).numpy()

    return probabilities


def set_threads(runtime, threads):
    """The same thread count for every runtime (before the first op)."""
    if runtime == "hf":
        import torch

        torch.set_num_threads(threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def worker(spec):
    """Check mode: probabilities of the check pairs. Time mode: latency and throughput."""
    set_threads(spec["runtime"], spec["threads"])
    make = {
        "classify_text": text_classifier,
        "fulltokenizer_classifier": fulltokenizer_classifier,
        "hf": hf_classifier,
    }[spec["runtime"]]
    probabilities = make(spec)
    pairs = read_pairs(spec["num_pairs"])
    texts_a, texts_b = [a for a, _ in pairs], [b for _, b in pairs]
    if spec["mode"] == "check":
        check = probabilities(texts_a[:CHECK_PAIRS], texts_b[:CHECK_PAIRS])
        print(json.dumps({"probabilities": check.tolist()}))
        return

    def one(i):
        i %= len(pairs)
        return probabilities(texts_a[i : i + 1], texts_b[i : i + 1])

    for i in range(spec["warmup"]):
        one(i)
    latencies = []
    for i in range(spec["calls"]):
        start = time.perf_counter()
        one(spec["warmup"] + i)
        latencies.append((time.perf_counter() - start) * 1e3)

    batch = 32
    for i in range(2):  # warm-up at this shape
        probabilities(texts_a[i * batch : (i + 1) * batch], texts_b[i * batch : (i + 1) * batch])
    rates = []
    for repeat in range(spec["repeats"]):
        start = time.perf_counter()
        for b in range(spec["batches"]):
            first = (repeat * spec["batches"] + b) * batch % (len(pairs) - batch)
            probabilities(texts_a[first : first + batch], texts_b[first : first + batch])
        rates.append(spec["batches"] * batch / (time.perf_counter() - start))
    split = None
    if spec.get("profile"):  # after the timing, so the profiler does not touch it
        calls = range(spec["warmup"], spec["warmup"] + PROFILED_CALLS)

        def run():
            for i in calls:
                one(i)

        if spec["runtime"] == "hf":
            split = op_profile.profile_torch(run, PROFILED_CALLS)
        else:
            split = op_profile.profile_tf(run, PROFILED_CALLS, prefix="bench_text_trace_")
    print(
        json.dumps(
            {
                "p50_ms": statistics.median(latencies),
                "p90_ms": float(np.percentile(latencies, 90)),
                "pairs_per_s": statistics.median(rates),
                "rates": rates,
                "batch1_profile": split,
            }
        )
    )


def run_worker(spec):
    return json.loads(run([__file__, "--worker", json.dumps(spec)]).strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Main: prepare, check, time, report.
# ----------------------------------------------------------------------------------------------


def cpu_name():
    """lscpu's model name, core count and whether AVX-512 is there."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU (no lscpu)"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    model = fields.get("Model name", "?").strip()
    flags = fields.get("Flags", "")
    vector = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "?"
    family, number = fields.get("CPU family", "?").strip(), fields.get("Model", "?").strip()
    return f"{model} (family {family}, model {number}), {os.cpu_count()} cores, {vector}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200, help="timed batch-1 calls")
    parser.add_argument("--batches", type=int, default=20, help="batches of 32 per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the median is reported")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"after timing, profile {PROFILED_CALLS} batch-1 calls of each runtime (TF: "
        "tf.profiler, HF: torch.profiler) and print where a call's time goes",
    )
    parser.add_argument("--work_dir", default=None, help="default: a temporary directory")
    parser.add_argument("--output_json", default="/tmp/bench_text_serving.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    import cpu_kernels  # noqa: F401  (before TensorFlow, here and in the workers it starts)

    if args.worker:
        return worker(json.loads(args.worker))

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_text_serving_")
    start = time.time()
    paths = prepare(work_dir)
    print(f"model, SavedModel and HF copy ready in {time.time() - start:.0f} s", flush=True)
    measure(paths, args)


def measure(paths, args):
    """Check that the three runtimes agree, then time each one."""
    num_pairs = max(args.warmup + args.calls, (args.repeats * args.batches + 2) * 32 + 32)
    base = {"paths": paths, "threads": args.threads, "num_pairs": num_pairs}

    # The same answers first: nothing is timed unless the three agree.
    checked = {
        r: np.array(run_worker({**base, "runtime": r, "mode": "check"})["probabilities"])
        for r in RUNTIMES
    }
    reference = checked["classify_text"]
    differences = {r: float(np.abs(checked[r] - reference).max()) for r in RUNTIMES}
    print(f"max |probability difference| vs classify_text on {CHECK_PAIRS} pairs: {differences}")
    if differences["fulltokenizer_classifier"] > 1e-6 or differences["hf"] > 1e-4:
        raise SystemExit("the runtimes disagree: not timing them")
    print(f"probabilities spread over pairs: std {reference[:, 1].std():.3f}")

    timing = {"mode": "time", "warmup": args.warmup, "calls": args.calls, "profile": args.profile}
    timing.update(batches=args.batches, repeats=args.repeats)
    results = {}
    for runtime in RUNTIMES:
        results[runtime] = run_worker({**base, **timing, "runtime": runtime})
        print(f"done: {runtime} {results[runtime]}", flush=True)
    report(results, differences, args)


def report(results, differences, args):
    cpu = cpu_name()
    hf = results["hf"]
    print(
        f"\nalbert_tiny (google, random weights, 2 labels), seq <= {MAX_SEQ_LENGTH}, LCQMC test "
        f"pairs, {args.threads} threads per runtime; batch 1: p50/p90 of {args.calls} calls "
        f"after {args.warmup}; batch 32: median pairs/s of {args.repeats} passes of "
        f"{args.batches} batches. CPU: {cpu}\n"
    )
    print(
        "| raw text -> probabilities | batch 1 p50 ms | p90 ms | HF p50 / this | "
        "batch 32 pairs/s | this / HF | max diff vs classify_text |"
    )
    print("|---|---|---|---|---|---|---|")
    for runtime in RUNTIMES:
        r = results[runtime]
        print(
            f"| {NAMES[runtime]} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{hf['p50_ms'] / r['p50_ms']:.2f}x | {r['pairs_per_s']:.1f} | "
            f"{r['pairs_per_s'] / hf['pairs_per_s']:.2f}x | {differences[runtime]:.1e} |"
        )
    if args.profile:
        print(
            f"\nOne batch-1 call, ms ({PROFILED_CALLS} profiled calls; op time: TF ops or HF's "
            "aten ops, so HF's Python tokenizer is in the call but not in its op time):\n"
        )
        print("| runtime | call | op time | matrix products | largest other ops |")
        print("|---|---|---|---|---|")
        for runtime in RUNTIMES:
            p = results[runtime]["batch1_profile"]
            others = ", ".join(f"{op} {ms:.2f}" for op, ms in list(p["top_other_ops"].items())[:4])
            print(
                f"| {NAMES[runtime]} | {p['step_ms']:.2f} | {p['op_ms_per_step']:.2f} | "
                f"{p['matmul_ms_per_step']:.2f} ({100 * p['matmul_share']:.0f}%) | {others} |"
            )
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump({"results": results, "differences": differences, "cpu": cpu}, f, indent=1)
    print(f"\nwrote {args.output_json}")


if __name__ == "__main__":
    main()
