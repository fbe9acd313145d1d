"""NER benchmark: training speed against HF transformers, and CLUENER dev F1 of both heads.

Two parts, on the real CLUENER2020 files (../shared/data/cluener):

1. `speed`: training throughput (sentences/s; forward + backward + AdamW update with clipping)
   of our AlbertForTokenClassification (softmax, and CRF) against HF transformers'
   `AlbertForTokenClassification` (PyTorch; no CRF exists there) with the same google-style
   albert_tiny config, on the very same batches: CLUENER train windows as run_ner.py reads
   them, dynamic padding with length bucketing (padded to the batch's longest row, rounded up
   to 16). Both run in this process, interleaved, each with the machine's default threads.
2. `f1`: run_ner.py on CLUENER (train 10,748 sentences, dev 1,343) for albert_tiny, softmax
   head and CRF head, for a fixed budget (default: 1 epoch), printing the dev micro F1 and the
   F1 of each type.

No pretrained albert_zh checkpoint is available offline (prev_trained_model/ is empty) and
the pretraining walk-through's checkpoint is not on this machine, so the `f1` runs start from
RANDOM weights unless --init_checkpoint is given: they compare the heads on a from-scratch
tiny model after a short CPU training, they are not what albert_tiny reaches. CLUENER dev F1
is never comparable with published CLUENER results, which are F1 on the hidden test labels.

    python benchmarks/bench_ner.py                     # both parts
    python benchmarks/bench_ner.py --parts=speed --steps=20 --repeats=3

Prints Markdown tables and writes every measurement to --output (JSON).
"""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cpu_kernels  # noqa: E402, F401  # isort: skip  (before TensorFlow: its CPU kernels)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import classifier_data  # noqa: E402
import modeling  # noqa: E402
import ner_data  # noqa: E402
import optimization  # noqa: E402
import tokenization  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("ALBERT_ZH_DATA", os.path.join(REPO, "..", "shared", "data"))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="speed,f1", help="comma list: speed, f1")
    parser.add_argument("--data_dir", default=os.path.join(DATA, "cluener"))
    parser.add_argument("--vocab_file", default=os.path.join(DATA, "vocab.txt"))
    parser.add_argument(
        "--config", default=os.path.join(REPO, "configs/albert_config_tiny_google.json")
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=1.0, help="f1: training epochs")
    # 1e-4: from random weights, 3e-4 and above leave this model predicting O everywhere
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--crf_learning_rate", type=float, default=1e-3)
    parser.add_argument("--init_checkpoint", default=None, help="f1: a pretrained model")
    parser.add_argument("--output", default="/tmp/bench_ner.json")
    return parser.parse_args()


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- 1. speed


def training_batches(args):
    """(batches as NumPy dicts, tags): CLUENER train windows, dynamic padding, full batches."""
    tokenizer = tokenization.FullTokenizer(args.vocab_file)
    examples, _ = ner_data.read_cluener(os.path.join(args.data_dir, "train.json"))
    tags = ner_data.tag_list(ner_data.entity_types(examples), "BIO")
    features = ner_data.convert_examples_to_features(
        examples, tokenizer, tags, "BIO", max_seq_length=args.max_seq_length
    )
    indices = classifier_data.make_batches(features.lengths, args.batch_size, shuffle=True, seed=3)
    indices = [i for i in indices if len(i) == args.batch_size][: args.steps]
    dataset = classifier_data.make_dataset(features, indices, args.max_seq_length)
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset], tags


def ours_step_fn(args, tags, use_crf):
    """Our google-style token classifier + AdamW: one training step per call (tf.function)."""
    config = modeling.AlbertConfig.from_json_file(args.config)
    allowed = modeling.crf_allowed_transitions(tags, "BIO") if use_crf else None
    model = modeling.AlbertForTokenClassification(
        config, len(tags), style="google", use_crf=use_crf, allowed_transitions=allowed, seed=1
    )
    optimizer = optimization.create_optimizer(1e-4, 10000, 0)
    optimizer.build(model.named_variables())
    names = list(model.named_variables())
    variables = [model.named_variables()[n] for n in names]
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec] * 5)
    def step(input_ids, input_mask, segment_ids, label_ids, label_mask):
        with tf.GradientTape() as tape:
            logits = model(input_ids, input_mask, segment_ids, training=True)
            loss = model.loss(logits, label_ids, label_mask)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, names, strict=True))
        return loss

    columns = ("input_ids", "input_mask", "segment_ids", "label_ids", "label_mask")
    return lambda b: float(step(*(b[c] for c in columns)))


def hf_step_fn(args, tags):
    """HF AlbertForTokenClassification with the same config; unlabelled positions are -100."""
    import torch
    from transformers import AlbertConfig, AlbertForTokenClassification

    values = json.load(open(args.config))
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
        num_labels=len(tags),
    )
    torch.manual_seed(1)
    model = AlbertForTokenClassification(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def step(b):
        labels = np.where(b["label_mask"] == 1, b["label_ids"], -100)
        optimizer.zero_grad()
        out = model(
            input_ids=torch.from_numpy(b["input_ids"]).long(),
            attention_mask=torch.from_numpy(b["input_mask"]).long(),
            token_type_ids=torch.from_numpy(b["segment_ids"]).long(),
            labels=torch.from_numpy(labels).long(),
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(out.loss.detach())

    return step


def bench_speed(args, results):
    batches, tags = training_batches(args)
    lengths = [b["input_ids"].shape[1] for b in batches]
    real = [int(b["input_mask"].sum()) / b["input_mask"].size for b in batches]
    print(
        f"  {len(batches)} batches of {args.batch_size}: padded lengths {min(lengths)}-"
        f"{max(lengths)} (mean {np.mean(lengths):.1f}), {np.mean(real):.0%} real tokens",
        flush=True,
    )
    implementations = {
        "ours softmax (TF, tf.function)": ours_step_fn(args, tags, use_crf=False),
        "ours CRF (TF, tf.function)": ours_step_fn(args, tags, use_crf=True),
        "HF AlbertForTokenClassification (PyTorch)": hf_step_fn(args, tags),
    }
    for step in implementations.values():
        for b in batches[:2]:
            step(b)  # warm-up: tracing, allocators
    rates = {name: [] for name in implementations}
    for _ in range(args.repeats):  # interleaved, so that load changes hit every variant
        for name, step in implementations.items():
            start = time.perf_counter()
            for b in batches:
                step(b)
            rates[name].append(len(batches) * args.batch_size / (time.perf_counter() - start))
            print(f"  {name}: {rates[name][-1]:.1f} sentences/s", flush=True)
    rows = {
        name: {"sentences_per_second_median": statistics.median(r), "sentences_per_second": r}
        for name, r in rates.items()
    }
    hf = rows["HF AlbertForTokenClassification (PyTorch)"]["sentences_per_second_median"]
    for row in rows.values():
        row["vs_hf"] = row["sentences_per_second_median"] / hf
    results["speed"] = {
        "rows": rows,
        "batch_size": args.batch_size,
        "steps": len(batches),
        "mean_padded_length": float(np.mean(lengths)),
        "config": os.path.relpath(args.config, REPO),
    }


# ----------------------------------------------------------------------------- 2. f1


def pretrained_note(args):
    """What starting point the f1 runs have, said plainly."""
    if args.init_checkpoint:
        return f"from {args.init_checkpoint}"
    released = glob.glob(os.path.join(REPO, "prev_trained_model", "**", "*.index"), recursive=True)
    walkthrough = os.path.join(REPO, "output", "pretrain_albert_tiny")
    return (
        "from RANDOM weights: no pretrained checkpoint is available offline "
        f"(prev_trained_model/ holds {len(released)} checkpoint files) and the pretraining "
        f"walk-through's checkpoint ({os.path.relpath(walkthrough, REPO)}) is "
        + ("present but not used" if os.path.isdir(walkthrough) else "not on this machine")
    )


def run_ner(args, head):
    output_dir = f"/tmp/bench_ner_{head}_{int(time.time())}"
    command = [
        sys.executable, os.path.join(REPO, "run_ner.py"), "--task_name=cluener",
        f"--data_dir={args.data_dir}", f"--vocab_file={args.vocab_file}",
        f"--bert_config_file={args.config}", f"--output_dir={output_dir}",
        "--do_train", "--do_eval", f"--max_seq_length={args.max_seq_length}",
        f"--train_batch_size={args.batch_size}", f"--learning_rate={args.learning_rate}",
        f"--num_train_epochs={args.epochs}", "--eval_batch_size=128",
        "--iterations_per_loop=50", "--save_checkpoints_steps=0",
    ] + (["--use_crf", f"--crf_learning_rate={args.crf_learning_rate}"] if head == "crf" else []) + (
        [f"--init_checkpoint={args.init_checkpoint}"] if args.init_checkpoint else []
    )  # fmt: skip
    start = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    final = json.load(open(os.path.join(output_dir, "final_results.json")))
    dev = final["dev"]
    return {
        "f1": dev["f1"],
        "precision": dev["precision"],
        "recall": dev["recall"],
        "per_type": {name: row["f1"] for name, row in dev["per_type"].items()},
        "best_step": final["global_step"],
        "seconds": time.time() - start,
        "output_dir": output_dir,
        "command": " ".join(command[1:]),
    }


def bench_f1(args, results):
    note = pretrained_note(args)
    print(f"  f1 runs start {note}", flush=True)
    rows = {head: run_ner(args, head) for head in ("softmax", "crf")}
    results["f1"] = {"rows": rows, "start": note, "epochs": args.epochs}


# ----------------------------------------------------------------------------- report


def markdown(results):
    lines = []
    if "speed" in results:
        r = results["speed"]
        lines += [
            f"| training, batch {r['batch_size']}, CLUENER train, dynamic padding (mean "
            f"{r['mean_padded_length']:.1f}) | sentences/s | vs HF |",
            "|---|---|---|",
        ]
        for name, row in r["rows"].items():
            lines.append(
                f"| {name} | {row['sentences_per_second_median']:.1f} | {row['vs_hf']:.2f}x |"
            )
        lines.append("")
    if "f1" in results:
        r = results["f1"]
        types = sorted(next(iter(r["rows"].values()))["per_type"])
        lines += [
            f"CLUENER dev F1, albert_tiny {r['start']}, {r['epochs']:g} epoch(s) "
            "(NOT comparable with published CLUENER test results)",
            "",
            "| head | micro F1 | precision | recall | " + " | ".join(types) + " | minutes |",
            "|---" * (len(types) + 5) + "|",
        ]
        for head, row in r["rows"].items():
            per_type = " | ".join(f"{row['per_type'].get(t, 0.0):.3f}" for t in types)
            lines.append(
                f"| {head} | {row['f1']:.4f} | {row['precision']:.4f} | {row['recall']:.4f} | "
                f"{per_type} | {row['seconds'] / 60:.1f} |"
            )
    return "\n".join(lines)


def main():
    args = parse_args()
    parts = set(args.parts.split(","))
    results = {
        "args": vars(args),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    if "speed" in parts:
        bench_speed(args, results)
    if "f1" in parts:
        bench_f1(args, results)
    results["load_average_at_end"] = os.getloadavg()
    report = markdown(results)
    print(report)
    results["markdown"] = report
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2, default=float)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
