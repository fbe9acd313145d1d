"""Encoder inference throughput: our TF ALBERT (eager, tf.function, XLA) vs HF transformers.

For each config and batch size, both implementations run the same encoder (random weights,
same shapes: sequence_output + pooled_output) on the same number of CPU threads; each mode is
repeated and the median sequences/second is reported, with the ratio ours / HF.

Classifier modes time what serving a sentence-pair classifier costs (2 labels, tf.function):
`classifier` is modeling.AlbertForClassification as inference and the exports run it (the last
layer for [CLS] alone), `classifier_all_positions` the same logits from the full encoder's
pooled output, and `hf_classifier` HF's AlbertForSequenceClassification, their peer.

Usage:
  python benchmarks/bench_inference.py \
      --configs=configs/albert_config_tiny_google.json,configs/google_albert_base_zh.json \
      --batch_sizes=1,32 --seq_length=128 --repeats=5 --output_json=/tmp/bench_inference.json

Prints a Markdown table and writes the JSON (every repeat's timing plus the medians).
"""

import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cpu_kernels  # noqa: E402, F401  # isort: skip  (before TensorFlow: its CPU kernels)

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "configs",
    ["configs/albert_config_tiny_google.json", "configs/google_albert_base_zh.json"],
    "Config JSON files.",
)
flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes.")
flags.DEFINE_integer("seq_length", 128, "Sequence length.")
flags.DEFINE_integer("repeats", 5, "Timed repeats per mode (the median is reported).")
flags.DEFINE_float(
    "min_repeat_seconds", 1.0, "Each repeat runs whole calls until at least this long has passed."
)
flags.DEFINE_integer("threads", None, "CPU threads for TF (intra-op) and torch; default: all.")
flags.DEFINE_list(
    "modes",
    ["eager", "tf_function", "xla", "hf_torch"],
    "What to time: eager, tf_function, xla, hf_torch (encoders); classifier, "
    "classifier_all_positions, hf_classifier (2-label classifiers).",
)
HF_MODES = ("hf_torch", "hf_classifier")
PEER = {"classifier": "hf_classifier", "classifier_all_positions": "hf_classifier"}
flags.DEFINE_string("output_json", "/tmp/albert_bench/bench_inference.json", "Results file.")
flags.DEFINE_bool(
    "omp_passive",
    True,
    "Set OMP_WAIT_POLICY=PASSIVE for torch: on a shared/loaded machine OpenMP's "
    "spin-waiting threads made HF 30-70x slower at 2 threads (measured).",
)


def configure_threads(threads):
    """Same thread count for both libraries; one inter-op thread so they do not oversubscribe."""
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def random_batch(batch_size, seq_length, vocab_size, seed=0):
    """Token ids with the last quarter of every second row padded, two segments."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(batch_size, seq_length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1::2, seq_length * 3 // 4 :] = 0
    segments = np.zeros_like(ids)
    segments[:, seq_length // 2 :] = 1
    return ids * mask, mask, segments * mask


def time_calls(run_once, batch_size, repeats, min_seconds):
    """Warm up, then `repeats` timings of >= min_seconds each; returns sequences/s per repeat."""
    warmup_start = time.perf_counter()
    run_once()
    first_call_s = time.perf_counter() - warmup_start
    run_once()
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            run_once()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(calls * batch_size / elapsed)
    return rates, first_call_s


def ours_runner(encoder, mode, ids, mask, segments):
    """A no-argument callable running our encoder in the given execution mode."""
    import tensorflow as tf

    def encode(input_ids, input_mask, segment_ids):
        outputs = encoder(input_ids, input_mask, segment_ids, training=False)
        return outputs["sequence_output"], outputs["pooled_output"]

    if mode == "tf_function":
        encode = tf.function(encode)
    elif mode == "xla":
        encode = tf.function(encode, jit_compile=True)
    inputs = [tf.constant(x) for x in (ids, mask, segments)]

    def run_once():
        sequence, _ = encode(*inputs)
        return sequence.numpy()  # wait for the result

    return run_once


def classifier_runner(classifier, mode, ids, mask, segments):
    """A no-argument callable computing our classifier's logits in a tf.function."""
    import tensorflow as tf

    def logits(input_ids, input_mask, segment_ids):
        if mode == "classifier":
            return classifier(input_ids, input_mask, segment_ids)
        pooled = classifier.encoder(input_ids, input_mask, segment_ids)["pooled_output"]
        return classifier.logits_from_pooled(pooled)

    logits = tf.function(logits)
    inputs = [tf.constant(x) for x in (ids, mask, segments)]
    return lambda: logits(*inputs).numpy()


def hf_runner(config, ids, mask, segments, mode="hf_torch"):
    """A no-argument callable running transformers' AlbertModel (or, for hf_classifier, a
    2-label AlbertForSequenceClassification) in PyTorch on the same shapes."""
    import torch
    import transformers

    import hf_checkpoint

    classifier = mode == "hf_classifier"
    architecture = "AlbertForSequenceClassification" if classifier else "AlbertModel"
    values = hf_checkpoint.hf_config_dict(
        config,
        config.embedding_size,
        config.num_hidden_groups,
        config.inner_group_num,
        2 if classifier else None,
        [architecture],
    )
    if config.style == "brightmart":  # what the converter writes for brightmart models
        values.update(embedding_size=config.hidden_size, num_hidden_groups=1, inner_group_num=1)
    model = getattr(transformers, architecture)(transformers.AlbertConfig(**values)).eval()
    inputs = dict(
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long),
        token_type_ids=torch.tensor(segments, dtype=torch.long),
    )

    def run_once():
        with torch.inference_mode():
            outputs = model(**inputs)
            return (outputs.logits if classifier else outputs.last_hidden_state).numpy()

    return run_once, model.config._attn_implementation


def benchmark_config(config_file, batch_sizes):
    import modeling

    config = modeling.AlbertConfig.from_json_file(config_file)
    style = config.style or "google"
    encoder = modeling.AlbertModel(config, style=style, seed=0)
    classifier = modeling.AlbertForClassification(config, 2, style=style, seed=0, encoder=encoder)
    rows = []
    for batch_size in batch_sizes:
        ids, mask, segments = random_batch(batch_size, FLAGS.seq_length, config.vocab_size)
        row = {
            "config": os.path.basename(config_file),
            "style": style,
            "batch_size": batch_size,
            "seq_length": FLAGS.seq_length,
            "modes": {},
        }
        for mode in FLAGS.modes:
            if mode in HF_MODES:
                run_once, attention = hf_runner(config, ids, mask, segments, mode)
                row["hf_attention"] = attention
            elif mode.startswith("classifier"):
                run_once = classifier_runner(classifier, mode, ids, mask, segments)
            else:
                run_once = ours_runner(encoder, mode, ids, mask, segments)
            rates, first_call_s = time_calls(
                run_once, batch_size, FLAGS.repeats, FLAGS.min_repeat_seconds
            )
            row["modes"][mode] = {
                "median_seq_per_s": statistics.median(rates),
                "seq_per_s": rates,
                "first_call_s": first_call_s,
            }
            logging.info(
                "%s batch %d %s: median %.2f seq/s (repeats %s)",
                row["config"],
                batch_size,
                mode,
                statistics.median(rates),
                ", ".join(f"{r:.2f}" for r in rates),
            )
        rows.append(row)
    return rows


def markdown_table(rows):
    modes = FLAGS.modes
    # Each of our modes against its HF peer (the encoder's or the classifier's), when timed.
    ratios = [(m, PEER.get(m, "hf_torch")) for m in modes if m not in HF_MODES]
    ratios = [(m, peer) for m, peer in ratios if peer in modes]
    header = ["config", "batch"] + [f"{m} seq/s" for m in modes]
    header += [f"{m}/{peer}" for m, peer in ratios]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        medians = {m: row["modes"][m]["median_seq_per_s"] for m in modes}
        cells = [row["config"], str(row["batch_size"])] + [f"{medians[m]:.1f}" for m in modes]
        cells += [f"{medians[m] / medians[peer]:.2f}x" for m, peer in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.omp_passive:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP
    import tensorflow as tf
    import torch
    import transformers

    threads = FLAGS.threads or os.cpu_count()
    configure_threads(threads)
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    rows = []
    for config_file in FLAGS.configs:
        rows.extend(benchmark_config(config_file, batch_sizes))
    table = markdown_table(rows)
    print(table)
    result = {
        "command": " ".join(sys.argv),
        "threads": threads,
        "repeats": FLAGS.repeats,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "min_repeat_seconds": FLAGS.min_repeat_seconds,
        "versions": {
            "tensorflow": tf.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "markdown": table,
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
    with open(FLAGS.output_json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    logging.info("wrote %s", FLAGS.output_json)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
