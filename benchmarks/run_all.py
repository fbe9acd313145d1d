"""Every headline ratio of benchmarks/README.md, measured in one run on this machine.

    python benchmarks/run_all.py --quick    # short settings: about 10 minutes on 2 cores
    python benchmarks/run_all.py            # each benchmark's own settings (a few hours)

Each benchmark script runs in its own process (with short settings under --quick) and writes
its JSON into --work_dir; this script reads them and prints one table: the claim, the ratio
measured here and the target it is held to. Above the table: the CPU, the vector extensions
that decide which kernels run (AVX2, AVX-512, VNNI, BF16, AMX), whether TensorFlow's oneDNN
kernels are on, and the matrix-product peaks of this machine (fp32 and bf16, measured by
bench_pretraining.py in the same run). Absolute speeds move 2-4x between machines; the ratios
are what the README claims, so they are what a user can check here.

--quick times fewer steps and calls than the full benchmarks, so its ratios are noisier; a
ratio near its target deserves the full run. A benchmark that fails is reported as failed (its
last error line) and the others still run; the exit status is then 1.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import cpu_kernels  # noqa: E402  # isort: skip  (its kernel choice reaches every benchmark)

# CPU features that change which kernels TensorFlow, PyTorch, ONNX Runtime and LiteRT use.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")

TINY_GOOGLE = os.path.join(REPO, "configs", "albert_config_tiny_google.json")


# ----------------------------------------------------------------------------- the machine


def cpu_description():
    """(model name, {feature: present}) from /proc/cpuinfo (Linux), else platform's name."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.partition(":")[::2] for line in f if ":" in line)  # all CPUs alike
    except OSError:
        fields = {}
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:  # e.g. AMD family 25 model 1 = Zen 3, model 17 = Zen 4
        name += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    return name, {feature: feature in flags for feature in CPU_FEATURES}


# ----------------------------------------------------------------------------- running


def run_benchmark(name, script, output_flag, arguments, work_dir):
    """Run one benchmark script; its JSON, or {"error": its last error line}."""
    output = os.path.join(work_dir, f"{name}.json")
    log_path = os.path.join(work_dir, f"{name}.log")
    command = [sys.executable, os.path.join(REPO, "benchmarks", script)]
    command += arguments + [f"{output_flag}={output}"]
    if name == "latency":
        command.append(f"--work_dir={os.path.join(work_dir, 'latency_models')}")
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[1:])}", flush=True)
    start = time.time()
    with open(log_path, "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.time() - start
    if finished.returncode != 0 or not os.path.exists(output):
        with open(log_path) as log:
            lines = [line.strip() for line in log if line.strip()]
        last = lines[-1] if lines else f"exit status {finished.returncode}"
        print(f"    failed after {seconds:.0f} s: {last} (log: {log_path})", flush=True)
        return {"error": last, "log": log_path, "seconds": seconds}
    print(f"    done in {seconds:.0f} s", flush=True)
    with open(output) as f:
        result = json.load(f)
    result["_seconds"] = seconds
    return result


# ----------------------------------------------------------------------------- the claims


PEAK_SHARE_TARGETS = {"tiny": ">= 70%", "base": ">= 85%"}


def pretraining_claims(r):
    claims = []
    for model in dict.fromkeys(row["model"] for row in r["rows"]):
        rows = {row["variant"]: row for row in r["rows"] if row["model"] == model}
        ours, hf = rows["fp32"], rows.get("hf_fp32")
        if hf:
            claims.append(
                (
                    f"pretraining albert_{model}: ours fp32 / HF AlbertForPreTraining (seq/s)",
                    f"{ours['sequences_per_second'] / hf['sequences_per_second']:.2f}x",
                    "> 1x",
                )
            )
        # The ceiling: the step's own matrix products run alone at the model's shapes.
        claims.append(
            (
                f"pretraining albert_{model} fp32: share of the fp32 matmul peak "
                "(its matrix products alone)",
                f"{100 * ours['utilisation']:.0f}% "
                f"({100 * ours['products_alone_utilisation']:.0f}%)",
                PEAK_SHARE_TARGETS[model],
            )
        )
    return claims


def finetune_claims(r):
    rows = r["hf"]["rows"]
    return [
        (
            f"fine-tuning albert_tiny, {padding}: ours / HF AlbertForSequenceClassification",
            f"{rows[f'ours / HF | {padding}']['ratio_median']:.2f}x",
            ">= 1.5x",
        )
        for padding in ("fixed seq 128", "dynamic padding")
    ]


def model_name(config_file):
    """'albert_config_tiny_google.json' -> 'albert_tiny' (the file's stem if it names no size)."""
    stem = os.path.basename(config_file).removesuffix(".json")
    sizes = [
        s for s in ("tiny", "small", "base", "large", "xlarge", "xxlarge") if s in stem.split("_")
    ]
    return f"albert_{sizes[0]}" if sizes else stem


def inference_claims(r):
    claims = []
    for row in r["rows"]:
        modes = {m: v["median_seq_per_s"] for m, v in row["modes"].items()}
        hf = modes.pop("hf_torch")
        best_mode, best = max(modes.items(), key=lambda item: item[1])
        claims.append(
            (
                f"encoder inference {model_name(row['config'])}, batch "
                f"{row['batch_size']}: ours ({best_mode}) / HF PyTorch",
                f"{best / hf:.2f}x",
                "> 1x",
            )
        )
    return claims


def latency_claims(r):
    p50 = {
        (row["model"], row["batch"], row["seq_length"], row["threads"], row["runtime"]): row[
            "p50_ms"
        ]
        for row in r["rows"]
    }
    claims = []
    for model, batch, seq, threads in dict.fromkeys(key[:4] for key in p50):
        for ours, peer, target in (
            ("tflite_int8", "ort_int8", ">= 1.5x"),
            ("tflite_fp32", "ort_fp32", ">= 1.5x"),
            ("tflite_int8", "pytorch", "> 1x"),
        ):
            shape = (model, batch, seq, threads)
            if (*shape, ours) in p50 and (*shape, peer) in p50:
                claims.append(
                    (
                        f"serving albert_{model} seq {seq} batch {batch}, {threads} thread(s): "
                        f"{ours} / {peer} (p50 latency)",
                        f"{p50[(*shape, peer)] / p50[(*shape, ours)]:.2f}x",
                        target,
                    )
                )
    return claims


def ner_claims(r):
    return [
        (f"NER training: {name} / HF AlbertForTokenClassification", f"{row['vs_hf']:.2f}x", "> 1x")
        for name, row in r["speed"]["rows"].items()
        if not name.startswith("HF")
    ]


def text_serving_claims(r):
    results, hf = r["results"], r["results"]["hf"]
    return [
        (
            f"raw text -> probabilities, {runtime}: batch 32 pairs/s / HF tokenizer + PyTorch",
            f"{results[runtime]['pairs_per_s'] / hf['pairs_per_s']:.2f}x",
            "> 1x",
        )
        for runtime in results
        if runtime != "hf"
    ]


# name: (script, its output flag, the claims read from its JSON, --quick arguments, arguments of
# the full run). The --quick arguments keep the whole run near 10 minutes on 2 cores.
BENCHMARKS = {
    "pretraining": (
        "bench_pretraining.py",
        "--output",
        pretraining_claims,
        ["--models=tiny", "--variants=fp32,hf_fp32", "--steps=3", "--repeats=3"]
        + ["--peak_sizes=2048"],
        [],
    ),
    "finetune": (
        "bench_finetune.py",
        "--output",
        finetune_claims,
        ["--parts=hf", "--hf_steps=3", "--repeats=3"],
        ["--parts=hf"],
    ),
    "inference": (
        "bench_inference.py",
        "--output_json",
        inference_claims,
        [f"--configs={TINY_GOOGLE}", "--batch_sizes=1,32", "--modes=tf_function,hf_torch"]
        + ["--repeats=3", "--min_repeat_seconds=1"],
        [],
    ),
    "latency": (
        "bench_latency.py",
        "--output_json",
        latency_claims,
        ["--models=tiny", "--seq_lengths=128", "--batch_sizes=1", "--threads=1,2"]
        + ["--runtimes=tflite_fp32,tflite_int8,ort_fp32,ort_int8,pytorch"]
        + ["--iterations=60", "--warmup=10"],
        [],
    ),
    "ner": (
        "bench_ner.py",
        "--output",
        ner_claims,
        ["--parts=speed", "--steps=3", "--repeats=2"],
        ["--parts=speed"],
    ),
    "text_serving": (
        "bench_text_serving.py",
        "--output_json",
        text_serving_claims,
        ["--warmup=5", "--calls=20", "--batches=3", "--repeats=1"],
        [],
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short settings (~10 min, 2 cores)")
    parser.add_argument(
        "--only", default="", help="comma list of: " + ", ".join(BENCHMARKS) + " (default: all)"
    )
    parser.add_argument("--work_dir", default=f"/tmp/bench_run_all_{int(time.time())}")
    parser.add_argument("--output", default="/tmp/bench_run_all.json")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    unknown = sorted(wanted - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown --only {unknown}: use {', '.join(BENCHMARKS)}")
    os.makedirs(args.work_dir, exist_ok=True)

    cpu, features = cpu_description()
    onednn = os.environ.get(cpu_kernels.ONEDNN_VARIABLE)
    print(f"CPU: {cpu}, {os.cpu_count()} cores", flush=True)
    print("features: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in features.items()))
    print(f"{cpu_kernels.ONEDNN_VARIABLE}={onednn}; results in {args.work_dir}\n", flush=True)

    start = time.time()
    results, claims, failed = {}, [], []
    for name, (script, output_flag, read_claims, quick, full) in BENCHMARKS.items():
        if wanted and name not in wanted:
            continue
        arguments = quick if args.quick else full
        results[name] = run_benchmark(name, script, output_flag, arguments, args.work_dir)
        if "error" in results[name]:
            failed.append(name)
            claims.append((f"{name}: FAILED ({results[name]['error']})", "-", "-"))
        else:
            claims.extend(read_claims(results[name]))

    pretraining = results.get("pretraining", {})
    peaks = pretraining.get("matmul_peak_tflops", {})
    lines = [
        f"\nCPU: {cpu}, {os.cpu_count()} cores; "
        + ", ".join(f for f, present in features.items() if present),
        f"oneDNN kernels: {cpu_kernels.ONEDNN_VARIABLE}={onednn}",
    ]
    if peaks:
        lines.append(
            "matmul peak (TensorFlow, best square size of "
            + ", ".join(map(str, pretraining.get("peak_sizes", [])))
            + "): "
            + ", ".join(f"{dtype} {1000 * tflops:.1f} GFLOP/s" for dtype, tflops in peaks.items())
        )
    lines += [
        f"{'quick' if args.quick else 'full'} run, {(time.time() - start) / 60:.1f} min\n",
        "| claim | measured here | target |",
        "|---|---|---|",
    ]
    lines += [f"| {claim} | {value} | {target} |" for claim, value, target in claims]
    report = "\n".join(lines)
    print(report)
    with open(args.output, "w") as f:
        json.dump(
            {
                "cpu": cpu,
                "cpu_count": os.cpu_count(),
                "features": features,
                "onednn": onednn,
                "quick": args.quick,
                "claims": [{"claim": c, "measured": v, "target": t} for c, v, t in claims],
                "benchmarks": results,
                "seconds": time.time() - start,
                "report": report,
            },
            f,
            indent=1,
            default=float,
        )
    print(f"\nwrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
