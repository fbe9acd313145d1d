"""Pretraining throughput: our tf.distribute loop vs Hugging Face AlbertForPreTraining.

For each config (default albert_tiny and albert_base, google style) at seq 128, batch 32,
P=20 masked positions, one training step = forward + backward + AdamW update:

- ours: training.Trainer (the loop run_pretraining.py uses), fp32 and bf16, XLA off and on,
  `--steps` steps inside one compiled call per timed window;
- HF: transformers AlbertForPreTraining (PyTorch), the same config, batch, labels at the same
  masked positions (-100 elsewhere), sentence-order labels, torch.optim.AdamW and
  clip_grad_norm_(1.0), fp32.

Windows of all variants are interleaved (round-robin) so machine noise hits them alike; the
table reports medians. TFLOP/s counts the same useful matmul FLOPs for every variant
(3 x forward: embedding projection, attention, FFN, pooler, the MLM head on the P masked
positions and SOP). HF's head projects all S positions onto the vocab, so it does more work
than it is credited for: that is part of what the comparison measures. Utilisation is against
this machine's measured dense-matmul peak (TF, square matmuls) in the same dtype; "products
alone" is what the step's own matrix products reach when run one by one at the model's shapes
(forward and both gradients), the ceiling for a step on this CPU with every other op free.

    python benchmarks/bench_pretraining.py                      # full run
    python benchmarks/bench_pretraining.py --models tiny --repeats 2 --steps 3   # quick check
"""

import argparse
import functools
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import cpu_kernels  # noqa: E402, F401  # isort: skip  (before TensorFlow: its CPU kernels)
import numpy as np  # noqa: E402
import op_profile  # noqa: E402  (benchmarks/: this script's directory)
import tensorflow as tf  # noqa: E402

import modeling  # noqa: E402
import optimization  # noqa: E402
import training  # noqa: E402

CONFIGS = {
    "tiny": "configs/albert_config_tiny_google.json",
    "base": "configs/google_albert_base_zh.json",
}
SEQ, BATCH, P = 128, 32, 20
DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16}


def forward_flops_per_sequence(c, seq=SEQ, predictions=P):
    """Matmul FLOPs of one forward pass of ALBERT (google style) + pretraining heads."""
    H, E, V = c.hidden_size, c.embedding_size, c.vocab_size
    heads = 2 * H * H + 2 * predictions * (H * E + E * V) + 2 * H * 2  # pooler, MLM, SOP
    return op_profile.encoder_flops(c.to_dict(), seq) + heads


def synthetic_batch(vocab_size, seed=0):
    """A fixed batch with the pretraining schema: full-length sequences, P masked positions."""
    rng = np.random.default_rng(seed)
    positions = np.sort(
        np.stack([rng.choice(np.arange(1, SEQ - 1), P, replace=False) for _ in range(BATCH)]),
        axis=1,
    )
    return {
        "input_ids": rng.integers(999, vocab_size, (BATCH, SEQ)).astype(np.int32),
        "input_mask": np.ones((BATCH, SEQ), np.int32),
        "segment_ids": np.concatenate(
            [np.zeros((BATCH, SEQ // 2), np.int32), np.ones((BATCH, SEQ // 2), np.int32)], 1
        ),
        "masked_lm_positions": positions.astype(np.int32),
        "masked_lm_ids": rng.integers(999, vocab_size, (BATCH, P)).astype(np.int32),
        "masked_lm_weights": np.ones((BATCH, P), np.float32),
        "next_sentence_labels": rng.integers(0, 2, (BATCH, 1)).astype(np.int32),
    }


# ----------------------------------------------------------------------------------------------
# Ours.
# ----------------------------------------------------------------------------------------------


def ours_runner(config, batch, precision, use_xla):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = modeling.AlbertForPretraining(config, style="google", seed=1)
        optimizer = optimization.create_optimizer(1e-4, 10000, 100, optimizer="adamw")
        optimizer.build(model.named_variables())
    loss_fn, weights_fn = training.pretraining_losses(model)
    trainer = training.Trainer(
        strategy,
        model,
        optimizer,
        loss_fn,
        None,
        loss_weights_fn=weights_fn,
        precision=precision,
        use_xla=use_xla,
    )
    tensors = {k: tf.constant(v) for k, v in batch.items()}

    def dataset_fn(input_context=None, start_step=0):
        return tf.data.Dataset.from_tensors(tensors).repeat()

    iterator = trainer.make_iterator(dataset_fn)

    def run(steps):
        losses, _ = trainer.run_steps(iterator, steps)
        return float(losses[-1])

    return run


# ----------------------------------------------------------------------------------------------
# Hugging Face transformers (PyTorch).
# ----------------------------------------------------------------------------------------------


def hf_runner(config, batch):
    import torch
    from transformers import AlbertConfig, AlbertForPreTraining

    hf_config = AlbertConfig(
        vocab_size=config.vocab_size,
        embedding_size=config.embedding_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_hidden_groups=config.num_hidden_groups,
        inner_group_num=config.inner_group_num,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act="gelu_new",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        layer_norm_eps=1e-12,
    )
    torch.manual_seed(1)
    model = AlbertForPreTraining(hf_config).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01
    )
    labels = np.full((BATCH, SEQ), -100, np.int64)
    np.put_along_axis(
        labels,
        batch["masked_lm_positions"].astype(np.int64),
        batch["masked_lm_ids"].astype(np.int64),
        axis=1,
    )
    inputs = {
        "input_ids": torch.from_numpy(batch["input_ids"].astype(np.int64)),
        "attention_mask": torch.from_numpy(batch["input_mask"].astype(np.int64)),
        "token_type_ids": torch.from_numpy(batch["segment_ids"].astype(np.int64)),
        "labels": torch.from_numpy(labels),
        "sentence_order_label": torch.from_numpy(
            batch["next_sentence_labels"][:, 0].astype(np.int64)
        ),
    }

    def run(steps):
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return float(loss.detach())

    return run


# ----------------------------------------------------------------------------------------------
# Matmul peak.
# ----------------------------------------------------------------------------------------------


def matmul_peak_tflops(dtype, sizes=(1024, 2048, 4096), repeats=3):
    """Best TFLOP/s of square tf.matmul on this CPU (a chain of 4 per call, one warm-up)."""
    best = 0.0
    for n in sizes:
        a = tf.random.normal([n, n], dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)

        @tf.function
        def chain(a, b):
            c = a
            for _ in range(4):
                c = tf.matmul(c, b) * tf.cast(1e-3, dtype)
            return c

        chain(a, b).numpy()
        for _ in range(repeats):
            began = time.perf_counter()
            chain(a, b).numpy()
            best = max(best, 4 * 2 * n**3 / (time.perf_counter() - began) / 1e12)
    return best


def step_products(c, batch=BATCH, seq=SEQ, predictions=P):
    """The forward matrix products of one pretraining step (google style, padded layout), as
    (count, batch dims, m, k, n, transpose_b): the FLOPs of forward_flops_per_sequence."""
    H, E, inner, V = c.hidden_size, c.embedding_size, c.intermediate_size, c.vocab_size
    heads, rows = c.num_attention_heads, batch * seq
    layers = c.num_hidden_layers * c.inner_group_num
    products = [
        (4 * layers, None, rows, H, H, False),  # Q, K, V, attention output
        (layers, None, rows, H, inner, False),  # FFN in
        (layers, None, rows, inner, H, False),  # FFN out
        (layers, batch * heads, seq, H // heads, seq, True),  # scores Q K^T
        (layers, batch * heads, seq, seq, H // heads, False),  # context P V
        (1, None, batch, H, H, False),  # pooler
        (1, None, batch * predictions, H, E, False),  # MLM transform
        (1, None, batch * predictions, E, V, True),  # MLM logits on the tied [V, E] table
        (1, None, batch, H, 2, False),  # sentence order
    ]
    if E != H:
        products.append((1, None, rows, E, H, False))  # embedding projection
    return products


def matmuls_alone_seconds(config, dtype=tf.float32, repeats=3):
    """Seconds the matrix products of one training step take run one by one at the model's
    own shapes (each forward product and its two gradient products, best of `repeats`): the
    step's time with every other op free, so FLOPs / this = the utilisation the model's shapes
    allow on this CPU."""

    def tensor(lead, *shape):
        return tf.cast(tf.random.normal(lead + list(shape)), dtype)

    # One traced function per shape is the point here, not the retracing TF warns about.
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    total = 0.0
    for count, batch_dims, m, k, n, transpose_b in step_products(config):
        lead = [batch_dims] if batch_dims else []
        a, dc = tensor(lead, m, k), tensor(lead, m, n)
        b = tensor(lead, n, k) if transpose_b else tensor(lead, k, n)
        products = [
            (a, b, False, transpose_b),  # forward
            (dc, b, False, not transpose_b),  # gradient of a
            (dc, a, True, False) if transpose_b else (a, dc, True, False),  # gradient of b
        ]
        for x, y, transpose_a, transpose_y in products:
            # Two different left operands, so that the graph cannot merge the products; like
            # the step's, they may run side by side on TensorFlow's inter-op threads.
            xs = [x, x + tf.cast(1.0, dtype)]

            @tf.function
            def run(xs, y, ta=transpose_a, tb=transpose_y):
                return [tf.matmul(x, y, transpose_a=ta, transpose_b=tb)[..., :1, :1] for x in xs]

            run(xs, y)
            best = float("inf")
            for _ in range(repeats):
                began = time.perf_counter()
                [r.numpy() for r in run(xs, y)]
                best = min(best, (time.perf_counter() - began) / len(xs))
            total += count * best
    tf.get_logger().setLevel(level)
    return total


# ----------------------------------------------------------------------------------------------
# main.
# ----------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,base", help="comma list of tiny, base")
    parser.add_argument("--variants", default="fp32,fp32_xla,bf16,bf16_xla,hf_fp32")
    parser.add_argument(
        "--steps", type=int, default=0, help="steps per timed window (default: 10 tiny, 2 base)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per variant")
    parser.add_argument(
        "--peak_sizes", default="1024,2048,4096", help="square matmul sizes for the peak"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, trace one window of each of our variants (tf.profiler) and print "
        "the split between matrix products and the other ops",
    )
    parser.add_argument("--output", default="/tmp/bench_pretraining.json")
    args = parser.parse_args()
    import torch

    print(
        f"TensorFlow {tf.__version__}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), {os.cpu_count()} CPU cores",
        flush=True,
    )

    sizes = [int(n) for n in args.peak_sizes.split(",")]

    def measure_peaks(when):
        peaks = {
            "fp32": matmul_peak_tflops(tf.float32, sizes),
            "bf16": matmul_peak_tflops(tf.bfloat16, sizes),
        }
        print(
            f"matmul peak ({when}): fp32 {peaks['fp32']:.3f} TFLOP/s, "
            f"bf16 {peaks['bf16']:.3f} TFLOP/s",
            flush=True,
        )
        return peaks

    peaks_before = measure_peaks("before")
    rows = []
    alone = {}  # (model, dtype) -> TFLOP/s of the step's products run alone
    dtypes = sorted({"bf16" if v.startswith("bf16") else "fp32" for v in args.variants.split(",")})
    for model_name in args.models.split(","):
        config = modeling.AlbertConfig.from_json_file(CONFIGS[model_name])
        batch = synthetic_batch(config.vocab_size)
        flops_per_step = 3 * forward_flops_per_sequence(config) * BATCH
        for dtype in dtypes:
            seconds = matmuls_alone_seconds(config, DTYPES[dtype])
            alone[model_name, dtype] = flops_per_step / seconds / 1e12
            print(
                f"{model_name}: the step's matrix products alone ({dtype}, at the model's "
                f"shapes): {1e3 * seconds:.0f} ms, {alone[model_name, dtype]:.3f} TFLOP/s",
                flush=True,
            )
        steps = args.steps or (10 if model_name == "tiny" else 2)
        runners, times, losses = {}, {}, {}
        for variant in args.variants.split(","):
            began = time.perf_counter()
            if variant == "hf_fp32":
                runners[variant] = hf_runner(config, batch)
            else:
                precision = variant.split("_")[0]
                runners[variant] = ours_runner(config, batch, precision, variant.endswith("xla"))
            runners[variant](1)  # warm-up: tracing, XLA compilation, allocator
            print(
                f"{model_name} {variant}: ready in {time.perf_counter() - began:.1f}s", flush=True
            )
            times[variant] = []
        for _ in range(args.repeats):
            for variant, run in runners.items():
                began = time.perf_counter()
                losses[variant] = run(steps)
                times[variant].append((time.perf_counter() - began) / steps)
        for variant in runners:
            seconds = statistics.median(times[variant])
            tflops = flops_per_step / seconds / 1e12
            dtype = "bf16" if variant.startswith("bf16") else "fp32"
            rows.append(
                {
                    "model": model_name,
                    "variant": variant,
                    "seconds_per_step": seconds,
                    "sequences_per_second": BATCH / seconds,
                    "tflops": tflops,
                    "peak_dtype": dtype,
                    "last_loss": losses[variant],
                    "windows": times[variant],
                }
            )
            print(
                f"{model_name} {variant}: {BATCH / seconds:.1f} seq/s, {tflops:.3f} TFLOP/s",
                flush=True,
            )
            if args.profile and variant != "hf_fp32":
                split = op_profile.profile_tf(
                    functools.partial(runners[variant], steps), steps, "bench_pretraining_trace_"
                )
                rows[-1]["profile"] = split
                others = ", ".join(f"{op} {ms:.0f}" for op, ms in split["top_other_ops"].items())
                print(
                    f"  profile, ms per step: wall {split['step_ms']:.0f}, op time "
                    f"{split['op_ms_per_step']:.0f}, matrix products "
                    f"{split['matmul_ms_per_step']:.0f} ({100 * split['matmul_share']:.0f}%); "
                    f"largest others: {others}",
                    flush=True,
                )

    # The peak is the best the machine did: measured before and after the windows, since a
    # shared machine's slow minute would otherwise inflate the utilisation (seen: 112%).
    peaks_after = measure_peaks("after")
    peaks = {d: max(peaks_before[d], peaks_after[d]) for d in peaks_before}
    for r in rows:
        r["utilisation"] = r["tflops"] / peaks[r["peak_dtype"]]
        if r["variant"] != "hf_fp32":  # the ceiling of our step's products, not of HF's
            r["products_alone_tflops"] = alone[r["model"], r["peak_dtype"]]
            r["products_alone_utilisation"] = r["products_alone_tflops"] / peaks[r["peak_dtype"]]

    by_key = {(r["model"], r["variant"]): r for r in rows}
    print(
        "\n| model | variant | seq/s | TFLOP/s | util. of peak | products alone | vs HF fp32 "
        "| vs our fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        hf = by_key.get((r["model"], "hf_fp32"))
        ours = by_key.get((r["model"], "fp32"))
        vs_hf = f"{r['sequences_per_second'] / hf['sequences_per_second']:.2f}x" if hf else "-"
        vs_ours = (
            f"{r['sequences_per_second'] / ours['sequences_per_second']:.2f}x" if ours else "-"
        )
        share = r.get("products_alone_utilisation")
        alone_share = f"{100 * share:.1f}%" if share is not None else "-"
        print(
            f"| albert_{r['model']} | {r['variant']} | {r['sequences_per_second']:.1f} | "
            f"{r['tflops']:.3f} | {100 * r['utilisation']:.1f}% ({r['peak_dtype']}) | "
            f"{alone_share} | {vs_hf} | {vs_ours} |"
        )
    result = {
        "seq_length": SEQ,
        "batch_size": BATCH,
        "max_predictions_per_seq": P,
        "matmul_peak_tflops": peaks,
        "matmul_peak_tflops_before_after": [peaks_before, peaks_after],
        "peak_sizes": sizes,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "torch": torch.__version__,
        "rows": rows,
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
