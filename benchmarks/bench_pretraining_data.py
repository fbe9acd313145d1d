"""Benchmark create_pretraining_data.py: MB of input text per second and peak memory.

Runs the real command line (a subprocess per run) on the shared corpus with 1 and 2 workers
(dupe_factor 1, max_seq_length 128, whole-word masking, the default segmenter rjieba) and on
twice the corpus (every file listed twice), plus one run with `--segmenter=jieba` (the Python
package), sampling the resident memory of the whole process tree (parent + workers) every
0.1 s. The named peer is the word segmenter alone over the same lines in one process (jieba's
`lcut` and rjieba's `cut`): "vs jieba alone" (MB per CPU-second, ours / the jieba package's)
compares the whole generator with segmentation alone, in a way that other load on a shared
machine distorts less than wall-clock MB/s.

  python benchmarks/bench_pretraining_data.py                      # the whole corpus
  python benchmarks/bench_pretraining_data.py --max_mb=5 --repeats=1  # a quick check

Prints a Markdown table and writes a JSON (--output_json).
"""

import argparse
import glob
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
import tokenization  # noqa: E402

DATA_DIR = pathlib.Path(os.environ.get("ALBERT_ZH_DATA", REPO_ROOT.parent / "shared" / "data"))


def slice_corpus(files, max_mb, directory):
    """Copy the first `max_mb` MB of the corpus (whole lines, file order) into `directory`."""
    budget = int(max_mb * 1e6)
    sliced = []
    for path in files:
        if budget <= 0:
            break
        data = pathlib.Path(path).read_bytes()[:budget]
        data = data[: data.rfind(b"\n") + 1]
        target = pathlib.Path(directory) / pathlib.Path(path).name
        target.write_bytes(data)
        sliced.append(str(target))
        budget -= len(data)
    return sliced


def tree_rss(process):
    """Resident bytes of a process and all its descendants."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_generator(input_files, workers, output_dir, vocab_file, segmenter):
    output = os.path.join(output_dir, f"bench_w{workers}.tfrecord")
    command = [
        sys.executable,
        str(REPO_ROOT / "create_pretraining_data.py"),
        f"--input_file={','.join(input_files)}",
        f"--output_file={output}",
        f"--vocab_file={vocab_file}",
        "--do_whole_word_mask",
        "--max_seq_length=128",
        "--max_predictions_per_seq=20",
        "--dupe_factor=1",
        f"--num_workers={workers}",
        f"--segmenter={segmenter}",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    log_path = output + ".log"  # a file, not a pipe: a full pipe would stall a long run
    with open(log_path, "w") as log:
        process = psutil.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process))
        time.sleep(0.1)
    wall = time.time() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers included (reaped)
    cpu_seconds = (
        cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    )
    with open(log_path) as log:
        stderr = log.read()
    if process.returncode != 0:
        raise SystemExit(f"generator failed ({process.returncode}):\n{stderr[-2000:]}")
    with open(output + ".summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    for path in glob.glob(output + "*"):
        os.remove(path)
    return {
        "wall_seconds": wall,
        "generate_seconds": summary["seconds"],
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak / 1e6,
        "instances": summary["instances"],
    }


def segmenter_alone(name, input_files, max_mb):
    """MB per CPU-second of one word segmenter over the lines of (the first `max_mb` MB of)
    the input, in this process (CPU time, so other load on the machine matters less)."""
    segment = tokenization.word_segmenter(name)
    lines, size = [], 0
    for path in input_files:
        for line in pathlib.Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                lines.append(line)
                size += len(line.encode("utf-8")) + 1
            if size > max_mb * 1e6:
                break
        if size > max_mb * 1e6:
            break
    start = time.process_time()
    for line in lines:
        segment(line)
    return size / 1e6 / (time.process_time() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=str(DATA_DIR / "corpus" / "*.txt"))
    parser.add_argument("--vocab_file", default=str(DATA_DIR / "vocab.txt"))
    parser.add_argument("--max_mb", type=float, default=0, help="Use only the first N MB.")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--jieba_mb", type=float, default=5, help="MB for the segmenter peers.")
    parser.add_argument("--skip_double", action="store_true", help="Skip the 2x corpus run.")
    parser.add_argument(
        "--skip_jieba", action="store_true", help="Skip the run with --segmenter=jieba."
    )
    parser.add_argument("--output_json", default="/tmp/bench_pretraining_data.json")
    args = parser.parse_args()

    files = sorted(glob.glob(args.input))
    if not files:
        raise SystemExit(f"no input matches {args.input}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.max_mb:
            files = slice_corpus(files, args.max_mb, tmp)
        input_mb = sum(os.path.getsize(p) for p in files) / 1e6
        rows = []
        worker_counts = [int(w) for w in args.workers.split(",")]
        most_workers = max(worker_counts)
        runs = [("corpus", files, w, "rjieba") for w in worker_counts]
        if not args.skip_double:
            runs.append(("2x corpus", files + files, most_workers, "rjieba"))
        if not args.skip_jieba:
            runs.append(("corpus", files, most_workers, "jieba"))
        for name, inputs, workers, segmenter in runs:
            size_mb = sum(os.path.getsize(p) for p in inputs) / 1e6
            results = [
                run_generator(inputs, workers, tmp, args.vocab_file, segmenter)
                for _ in range(args.repeats)
            ]
            wall = statistics.median(r["wall_seconds"] for r in results)
            generate = statistics.median(r["generate_seconds"] for r in results)
            cpu = statistics.median(r["cpu_seconds"] for r in results)
            rows.append(
                {
                    "input": name,
                    "input_mb": round(size_mb, 2),
                    "workers": workers,
                    "segmenter": segmenter,
                    "mb_per_s": round(size_mb / generate, 3),
                    "mb_per_s_per_worker": round(size_mb / generate / workers, 3),
                    "mb_per_s_end_to_end": round(size_mb / wall, 3),
                    "mb_per_cpu_second": round(size_mb / cpu, 3),
                    "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in results)),
                    "instances": results[0]["instances"],
                    "repeats": args.repeats,
                }
            )
            print(f"done: {rows[-1]}", flush=True)
        alone = {
            name: segmenter_alone(name, files, args.jieba_mb)
            for name in tokenization.WORD_SEGMENTERS
        }

    print(
        f"\nInput: {len(files)} files, {input_mb:.1f} MB; dupe_factor 1, seq 128, "
        f"whole-word masking; {os.cpu_count()} CPU cores; median of {args.repeats}."
    )
    print(
        "Peers, alone in one process over the first "
        f"{args.jieba_mb:g} MB: jieba {alone['jieba']:.2f} MB per CPU-second, "
        f"rjieba {alone['rjieba']:.2f}.\n"
    )
    print(
        "| input | MB | segmenter | workers | MB/s | MB/s per worker | MB/s end-to-end | MB per "
        "CPU-second | vs jieba alone | peak RSS (MB, all processes) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['input']} | {row['input_mb']} | {row['segmenter']} | {row['workers']} | "
            f"{row['mb_per_s']} | {row['mb_per_s_per_worker']} | "
            f"{row['mb_per_s_end_to_end']} | {row['mb_per_cpu_second']} | "
            f"{row['mb_per_cpu_second'] / alone['jieba']:.2f} | {row['peak_rss_mb']} |"
        )
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(
            {
                "rows": rows,
                "segmenter_alone_mb_per_cpu_s": alone,
                "cpu_count": os.cpu_count(),
                "command": " ".join(sys.argv),
            },
            f,
            indent=2,
        )
    print(f"\nwrote {args.output_json}")


if __name__ == "__main__":
    main()
