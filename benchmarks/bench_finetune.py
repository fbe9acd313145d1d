"""Fine-tuning benchmark on lcqmc_small: dynamic vs fixed padding, ours vs HF transformers.

Three measurements, all on the real lcqmc_small pairs (never comparable with published
full-LCQMC numbers, which train on 238k pairs):

1. `epoch`: one lcqmc_small training epoch (7,922 pairs, batch 64 = 124 steps) through
   run_classifier.py's data path and training.py's Trainer, with dynamic padding + length
   bucketing (the default) versus fixed padding to seq 128 (--fixed_length).
2. `hf`: training throughput (examples/s, forward + backward + AdamW update) of our model
   versus HF transformers `AlbertForSequenceClassification` with the same config (google
   style: HF's architecture), the same batch size and the very same padded batches, in the
   same process; both for fixed seq-128 batches and for dynamic-padded batches.
3. `profile`: where one training step's time goes, ours (a `tf.profiler` trace) and HF (the
   `torch.profiler`), on the same batches as `hf`: time in matrix products (MatMul,
   BatchMatMul, fused MatMul+BiasAdd; aten::mm/addmm/bmm and HF's fused attention) versus
   everything else, per op type.
4. `accuracy`: lcqmc_small dev/test accuracy of albert_tiny fine-tuned with the seed's
   hyper-parameters (seq 128, batch 64, lr 1e-4, 5 epochs), from scratch and from a given
   pretrained checkpoint (e.g. the pretraining walk-through's output), by running
   run_classifier.py.

Timings repeat `--repeats` times and report medians. Prints a Markdown table and writes JSON:

    python benchmarks/bench_finetune.py --parts=epoch,hf --max_steps=30 --repeats=3
    python benchmarks/bench_finetune.py --parts=profile
    python benchmarks/bench_finetune.py --parts=accuracy \
        --pretrained_checkpoint=/tmp/albert_tiny_pretrain --pretrained_config=configs/...json

`--max_steps` times only the first N steps of the epoch (after warm-up) and extrapolates to
the full epoch; the JSON says so (`steps_timed`).
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cpu_kernels  # noqa: E402, F401  # isort: skip  (before TensorFlow: its CPU kernels)
import op_profile  # noqa: E402  (benchmarks/: this script's directory)
import tensorflow as tf  # noqa: E402

import classifier_data  # noqa: E402
import modeling  # noqa: E402
import optimization  # noqa: E402
import tokenization  # noqa: E402
import training  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("ALBERT_ZH_DATA", os.path.join(REPO, "..", "shared", "data"))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts", default="epoch,hf", help="comma list: epoch, hf, profile, accuracy"
    )
    parser.add_argument("--data_dir", default=os.path.join(DATA, "lcqmc_small"))
    parser.add_argument("--vocab_file", default=os.path.join(DATA, "vocab.txt"))
    parser.add_argument("--config", default=os.path.join(REPO, "configs/albert_config_tiny.json"))
    parser.add_argument(
        "--hf_config", default=os.path.join(REPO, "configs/albert_config_tiny_google.json")
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_steps", type=int, default=0, help="time only N steps (0: all)")
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--hf_steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pretrained_checkpoint", default=None)
    parser.add_argument("--pretrained_config", default=None)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--output", default="/tmp/bench_finetune.json")
    return parser.parse_args()


def load_features(args, split="train"):
    tokenizer = tokenization.FullTokenizer(args.vocab_file)
    processor = classifier_data.get_processor("lcqmc")
    examples = processor.get_examples(processor.split_path(args.data_dir, split), split)
    return classifier_data.convert_examples_to_features(
        examples, processor.get_labels(), args.max_seq_length, tokenizer
    )


# ----------------------------------------------------------------------------- 1. epoch


def time_epoch(args, features, fixed_length):
    """Seconds for one epoch (or max_steps, extrapolated) of Trainer.train; warm-up excluded."""
    config = modeling.AlbertConfig.from_json_file(args.config)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    per_epoch = classifier_data.batches_per_epoch(len(features), args.batch_size, fixed_length)
    with strategy.scope():
        model = modeling.AlbertForClassification(config, 2, seed=1)
        optimizer = optimization.create_optimizer(1e-4, per_epoch + args.warmup_steps, 10)
        optimizer.build(model.named_variables())
    loss_fn, _ = training.classifier_losses(model)
    trainer = training.Trainer(strategy, model, optimizer, loss_fn, output_dir=None)
    timed = min(per_epoch, args.max_steps) if args.max_steps else per_epoch
    dataset_fn = classifier_data.make_train_dataset_fn(
        features,
        args.batch_size,
        1,
        args.max_seq_length,
        fixed_length,
        12345,
        args.warmup_steps + timed,
    )
    trainer.train(dataset_fn, args.warmup_steps, args.batch_size, iterations_per_loop=100)
    start = time.perf_counter()
    trainer.train(dataset_fn, args.warmup_steps + timed, args.batch_size, iterations_per_loop=timed)
    trainer.release_input()  # timed too: deleting the iterator once stalled ~24 s per epoch
    elapsed = time.perf_counter() - start
    return elapsed * per_epoch / timed, timed, per_epoch


def bench_epoch(args, features, results):
    rows = {}
    for name, fixed in (("dynamic padding + bucketing", False), ("fixed seq 128", True)):
        times = []
        for _ in range(args.repeats):
            seconds, timed, per_epoch = time_epoch(args, features, fixed)
            times.append(seconds)
            print(f"  epoch {name}: {seconds:.1f} s (timed {timed}/{per_epoch} steps)", flush=True)
        rows[name] = {
            "epoch_seconds_median": statistics.median(times),
            "epoch_seconds": times,
            "steps_timed": timed,
            "steps_per_epoch": per_epoch,
        }
    dynamic = rows["dynamic padding + bucketing"]["epoch_seconds_median"]
    fixed = rows["fixed seq 128"]["epoch_seconds_median"]
    results["epoch"] = {"rows": rows, "speedup_dynamic_vs_fixed": fixed / dynamic}


# ----------------------------------------------------------------------------- 2. vs HF


def hf_model(config_file):
    import torch
    from transformers import AlbertConfig, AlbertForSequenceClassification

    values = json.load(open(config_file))
    config = AlbertConfig(
        vocab_size=values["vocab_size"],
        embedding_size=values["embedding_size"],
        hidden_size=values["hidden_size"],
        num_hidden_layers=values["num_hidden_layers"],
        num_hidden_groups=values.get("num_hidden_groups", 1),
        num_attention_heads=values["num_attention_heads"],
        intermediate_size=values["intermediate_size"],
        inner_group_num=values.get("inner_group_num", 1),
        hidden_act="gelu_new",
        hidden_dropout_prob=values["hidden_dropout_prob"],
        attention_probs_dropout_prob=values["attention_probs_dropout_prob"],
        classifier_dropout_prob=0.1,
        max_position_embeddings=values["max_position_embeddings"],
        type_vocab_size=values["type_vocab_size"],
        num_labels=2,
    )
    torch.manual_seed(1)
    model = AlbertForSequenceClassification(config)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)


def ours_step_fn(args):
    """Our google-style classifier + AdamW, one training step per call (tf.function)."""
    config = modeling.AlbertConfig.from_json_file(args.hf_config)
    model = modeling.AlbertForClassification(config, 2, style="google", seed=1)
    optimizer = optimization.create_optimizer(1e-4, 10000, 0)
    optimizer.build(model.named_variables())
    names = list(model.named_variables())
    variables = [model.named_variables()[n] for n in names]
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec, tf.TensorSpec([None], tf.int32)])
    def step(input_ids, input_mask, segment_ids, labels):
        with tf.GradientTape() as tape:
            logits = model(input_ids, input_mask, segment_ids, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, names, strict=True))
        return loss

    return lambda b: float(step(b["input_ids"], b["input_mask"], b["segment_ids"], b["label_ids"]))


def hf_step_fn(args):
    import torch

    model, optimizer = hf_model(args.hf_config)

    def step(b):
        optimizer.zero_grad()
        out = model(
            input_ids=torch.from_numpy(b["input_ids"]).long(),
            attention_mask=torch.from_numpy(b["input_mask"]).long(),
            token_type_ids=torch.from_numpy(b["segment_ids"]).long(),
            labels=torch.from_numpy(b["label_ids"]).long(),
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(out.loss.detach())

    return step


def same_batches(args, features):
    """The padded NumPy batches both implementations train on: fixed seq 128 and dynamic."""
    batches = {}
    for name, fixed in (("fixed seq 128", True), ("dynamic padding", False)):
        indices = classifier_data.make_batches(
            features.lengths, args.batch_size, shuffle=True, seed=3, bucket=not fixed
        )
        indices = [i for i in indices if len(i) == args.batch_size][: args.hf_steps]
        dataset = classifier_data.make_dataset(features, indices, args.max_seq_length, fixed)
        batches[name] = [{k: v.numpy() for k, v in batch.items()} for batch in dataset]
    return batches


def bench_hf(args, features, results):
    """Examples/s of both implementations; their repeats alternate, so that a shared machine's
    slow minutes fall on both (the ratio of each repeat pair is reported too)."""
    batches = same_batches(args, features)
    steps = {
        "ours (TF, tf.function)": ours_step_fn(args),
        "HF transformers (PyTorch)": hf_step_fn(args),
    }
    rows, shapes = {}, {}
    for name, data in batches.items():
        real = sum(int(b["input_mask"].sum()) for b in data)
        shapes[name] = {
            "padded_lengths": [int(b["input_ids"].shape[1]) for b in data],
            "real_tokens": real,
            "real_token_share": real / sum(b["input_mask"].size for b in data),
        }
        print(f"  {name} batches: {shapes[name]}", flush=True)
        rates = {impl: [] for impl in steps}
        for step in steps.values():
            for b in data[:2]:
                step(b)  # warm-up (tracing, allocator)
        for _ in range(args.repeats):
            for impl, step in steps.items():
                start = time.perf_counter()
                for b in data:
                    step(b)
                rates[impl].append(len(data) * args.batch_size / (time.perf_counter() - start))
        for impl, values in rates.items():
            rows[f"{impl} | {name}"] = {
                "examples_per_second_median": statistics.median(values),
                "examples_per_second": values,
            }
            print(f"  {impl} {name}: {statistics.median(values):.1f} examples/s", flush=True)
        ours, hf = rates.values()
        ratio = statistics.median(o / h for o, h in zip(ours, hf, strict=True))
        rows[f"ours / HF | {name}"] = {"ratio_median": ratio}
        print(f"  ours / HF {name}: {ratio:.2f}x", flush=True)
    results["hf"] = {
        "rows": rows,
        "batches": shapes,
        "batch_size": args.batch_size,
        "steps": args.hf_steps,
        "config": os.path.relpath(args.hf_config, REPO),
    }


# ----------------------------------------------------------------------------- 3. profile


def bench_profile(args, features, results):
    """Where a step's time goes, ours vs HF, on the same batches: one profiled pass each over
    warm steps, split by TF op type (tf.profiler) and by aten op (torch.profiler)."""
    batches = same_batches(args, features)
    profilers = {
        "ours (TF, tf.function)": (
            ours_step_fn(args),
            functools.partial(op_profile.profile_tf, prefix="bench_finetune_trace_"),
        ),
        "HF transformers (PyTorch)": (hf_step_fn(args), op_profile.profile_torch),
    }
    rows = {}
    for name, data in batches.items():
        for impl, (step, profile) in profilers.items():
            for b in data[:2]:
                step(b)  # warm-up (tracing, allocator), outside the profile

            def run(step=step, data=data):
                for b in data:
                    step(b)

            row = rows[f"{impl} | {name}"] = profile(run, len(data))
            print(
                f"  {impl} | {name}: {row['step_ms']:.0f} ms/step, matrix products "
                f"{100 * row['matmul_share']:.0f}% of op time",
                flush=True,
            )
    results["profile"] = {
        "rows": rows,
        "batch_size": args.batch_size,
        "steps": args.hf_steps,
        "config": os.path.relpath(args.hf_config, REPO),
        "note": "ours: op time summed over TensorFlow's inter-op threads (ops overlap); "
        "HF: self CPU time of each aten op on the calling thread; HF's fused attention "
        "(scaled_dot_product_attention: two matmuls and the softmax) counts as matrix products",
    }


# ----------------------------------------------------------------------------- 4. accuracy


def run_finetune(args, name, init_checkpoint, config):
    output_dir = f"/tmp/bench_finetune_{name}_{int(time.time())}"
    command = [
        sys.executable, os.path.join(REPO, "run_classifier.py"), "--task_name=lcqmc",
        f"--data_dir={args.data_dir}", f"--vocab_file={args.vocab_file}",
        f"--bert_config_file={config}", f"--output_dir={output_dir}",
        "--do_train", "--do_eval", "--do_predict", f"--max_seq_length={args.max_seq_length}",
        f"--train_batch_size={args.batch_size}", "--learning_rate=1e-4",
        f"--num_train_epochs={args.epochs}", "--eval_batch_size=128",
        "--predict_batch_size=128", "--iterations_per_loop=50", "--save_checkpoints_steps=0",
    ] + ([f"--init_checkpoint={init_checkpoint}"] if init_checkpoint else [])  # fmt: skip
    start = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    final = json.load(open(os.path.join(output_dir, "final_results.json")))
    return {
        "dev_accuracy": final["dev"]["accuracy"],
        "test_accuracy": final["test"]["accuracy"],
        "test_macro_f1": final["test"]["macro_f1"],
        "best_step": final["global_step"],
        "seconds": time.time() - start,
        "init_checkpoint": init_checkpoint,
        "output_dir": output_dir,
    }


def bench_accuracy(args, results):
    rows = {"albert_tiny from scratch": run_finetune(args, "scratch", None, args.config)}
    if args.pretrained_checkpoint:
        rows["albert_tiny from pretraining walk-through"] = run_finetune(
            args,
            "pretrained",
            args.pretrained_checkpoint,
            args.pretrained_config or args.config,
        )
    results["accuracy"] = {"rows": rows, "epochs": args.epochs}


# ----------------------------------------------------------------------------- report


def markdown(results):
    lines = []
    if "epoch" in results:
        r = results["epoch"]
        lines += [
            "| one lcqmc_small epoch (albert_tiny, batch 64) | seconds (median) |",
            "|---|---|",
        ]
        for name, row in r["rows"].items():
            lines.append(f"| {name} | {row['epoch_seconds_median']:.1f} |")
        lines += [f"\ndynamic padding speed-up: **{r['speedup_dynamic_vs_fixed']:.2f}x**", ""]
    if "hf" in results:
        r = results["hf"]
        lines += [
            f"| training, batch {r['batch_size']} ({r['config']}) | padding | examples/s |",
            "|---|---|---|",
        ]
        for name, row in r["rows"].items():
            if "ratio_median" in row:
                lines.append(f"| {name} | **{row['ratio_median']:.2f}x** |")
            else:
                lines.append(f"| {name} | {row['examples_per_second_median']:.1f} |")
        lines.append("")
    if "profile" in results:
        r = results["profile"]
        lines += [
            f"| one training step, batch {r['batch_size']} ({r['config']}) | padding | ms/step "
            "| op time/step | matrix products | everything else | largest other ops (ms/step) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in r["rows"].items():
            others = ", ".join(f"{op} {ms:.0f}" for op, ms in row["top_other_ops"].items())
            other_ms = row["op_ms_per_step"] - row["matmul_ms_per_step"]
            lines.append(
                f"| {name} | {row['step_ms']:.0f} | {row['op_ms_per_step']:.0f} | "
                f"{row['matmul_ms_per_step']:.0f} ({100 * row['matmul_share']:.0f}%) | "
                f"{other_ms:.0f} ({100 - 100 * row['matmul_share']:.0f}%) | {others} |"
            )
        lines.append("")
    if "accuracy" in results:
        lines += [
            "| lcqmc_small (NOT full LCQMC) | dev acc | test acc | minutes |",
            "|---|---|---|---|",
        ]
        for name, row in results["accuracy"]["rows"].items():
            lines.append(
                f"| {name} | {row['dev_accuracy']:.4f} | {row['test_accuracy']:.4f} | "
                f"{row['seconds'] / 60:.1f} |"
            )
    return "\n".join(lines)


def main():
    args = parse_args()
    parts = set(args.parts.split(","))
    results = {"args": vars(args), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    features = load_features(args) if parts & {"epoch", "hf", "profile"} else None
    if "epoch" in parts:
        bench_epoch(args, features, results)
    if "hf" in parts:
        bench_hf(args, features, results)
    if "profile" in parts:
        bench_profile(args, features, results)
    if "accuracy" in parts:
        bench_accuracy(args, results)
    report = markdown(results)
    print(report)
    results["markdown"] = report
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2, default=float)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
