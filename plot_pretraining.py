"""Plot a pretraining run: masked-LM / sentence-order accuracy and loss against the step.

Reads what run_pretraining.py writes in --output_dir: `train_log.jsonl` (one line per host loop
of `iterations_per_loop` steps, metrics averaged over the loop) and the evaluations (--eval_input_file):
`eval_log.jsonl` (one line per checkpoint with --do_train --do_eval), else the single
`eval_results.txt`, drawn as points at their global_step.

    python plot_pretraining.py --output_dir=/tmp/albert_tiny_pretrain --png=/tmp/curve.png
"""

import json
import os

from absl import flags

import errors
from errors import AlbertError

FLAGS = flags.FLAGS


def define_flags():
    """Flags, defined only when run as a script (run_pretraining.py has an --output_dir too)."""
    flags.DEFINE_string("output_dir", None, "The run_pretraining.py --output_dir to plot.")
    flags.DEFINE_string("png", None, "Output PNG (default: <output_dir>/pretraining_curve.png).")
    flags.DEFINE_string("title", None, "Figure title (default: the output_dir name).")


def read_jsonl_by_step(path, step_key="step"):
    """Records of a JSON-lines log sorted by step; a torn last line (run killed mid-write) is
    skipped, and a step logged twice (a resumed run repeats the steps after its last
    checkpoint) keeps its latest record."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise AlbertError(f"{path}:{line_number} is not JSON") from None
    by_step = {r[step_key]: r for r in records}
    return [by_step[s] for s in sorted(by_step)]


def read_evaluations(output_dir):
    """Held-out evaluations, sorted by step: every line of `eval_log.jsonl` (one per
    checkpoint), else the single `eval_results.txt`; [] when there are none."""
    log_path = os.path.join(output_dir, "eval_log.jsonl")
    if os.path.exists(log_path):
        return read_jsonl_by_step(log_path, step_key="global_step")
    path = os.path.join(output_dir, "eval_results.txt")
    if not os.path.exists(path):
        return []
    results = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if " = " in line:
                key, value = line.strip().split(" = ", 1)
                results[key] = float(value)
    return [results]


def plot(records, evaluations, png, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, (acc_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=90)
    for key, label, color in (
        ("masked_lm_accuracy", "masked LM", "tab:blue"),
        ("sentence_order_accuracy", "sentence order", "tab:orange"),
    ):
        acc_axis.plot(steps, [r[key] for r in records], color=color, label=f"{label} (train)")
        if evaluations:
            acc_axis.plot(
                [e["global_step"] for e in evaluations],
                [e[key] for e in evaluations],
                "o--",
                color=color,
                label=f"{label} (eval set)",
            )
    acc_axis.set_xlabel("step")
    acc_axis.set_ylabel("accuracy")
    acc_axis.set_ylim(0, 1)
    acc_axis.grid(alpha=0.3)
    acc_axis.legend(fontsize=8)
    loss_axis.plot(steps, [r["loss"] for r in records], color="tab:green", label="loss (train)")
    if evaluations:
        loss_axis.plot(
            [e["global_step"] for e in evaluations],
            [e["loss"] for e in evaluations],
            "o--",
            color="tab:green",
            label="loss (eval set)",
        )
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("MLM + SOP loss")
    loss_axis.grid(alpha=0.3)
    loss_axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def main(_):
    if not FLAGS.output_dir:
        raise AlbertError("--output_dir is required (the run_pretraining.py output directory)")
    log_path = os.path.join(FLAGS.output_dir, "train_log.jsonl")
    if not os.path.exists(log_path):
        raise AlbertError(f"{log_path} does not exist: run run_pretraining.py --do_train first")
    records = read_jsonl_by_step(log_path)
    if not records:
        raise AlbertError(f"{log_path} is empty: no training loop has finished yet")
    evaluations = read_evaluations(FLAGS.output_dir)
    png = FLAGS.png or os.path.join(FLAGS.output_dir, "pretraining_curve.png")
    plot(
        records,
        evaluations,
        png,
        FLAGS.title or os.path.basename(os.path.normpath(FLAGS.output_dir)),
    )
    print(f"wrote {png} ({len(records)} points, last step {records[-1]['step']})")


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
