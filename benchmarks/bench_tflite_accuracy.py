"""Benchmark what TFLite quantization costs a fine-tuned classifier: accuracy vs the TF model.

Exports the classifier checkpoint with export_tflite.py (fixed [1, max_seq_length]) as float32,
int8 (dynamic-range) and float16, plus, for comparison, a full-integer int8 file calibrated on
real train pairs (`--calibration_examples`, not offered by export_tflite.py: see the result).
Every dev/test example runs through each file in the LiteRT interpreter (batch 1, 1 thread).
The named peer is the TF model of the same checkpoint in the same run: the table gives
accuracy, its change in points, the fraction of predictions equal to TF's and the largest
probability difference.

  python benchmarks/bench_tflite_accuracy.py --albert_config_file=out/albert_config.json \
      --init_checkpoint=out/model.ckpt-best --data_dir=../shared/data/lcqmc_small

Prints a Markdown table and writes a JSON (--output_json).
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DATA_DIR = pathlib.Path(os.environ.get("ALBERT_ZH_DATA", REPO_ROOT.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import cpu_kernels  # noqa: E402, F401  # isort: skip  (before TensorFlow: its CPU kernels)
import tensorflow as tf  # noqa: E402

import classifier_data  # noqa: E402
import export_tflite  # noqa: E402
import modeling  # noqa: E402
import tokenization  # noqa: E402


def load_split(processor, data_dir, split, tokenizer, max_seq_length):
    """Padded [N, max_seq_length] int32 inputs and int32 labels of one split."""
    examples = getattr(processor, f"get_{split}_examples")(data_dir)
    features = classifier_data.convert_examples_to_features(
        examples, processor.get_labels(), max_seq_length, tokenizer
    )
    dataset = classifier_data.make_dataset(
        features, [np.arange(len(features))], max_seq_length, fixed_length=True
    )
    batch = {k: v.numpy() for k, v in next(iter(dataset)).items()}
    labels = batch.pop("label_ids")
    return batch, labels


def calibrated_int8(function, model, calibration_inputs):
    """Full-integer quantization (activations too) calibrated on real examples."""

    def representative_dataset():
        for row in range(len(calibration_inputs["input_ids"])):
            yield {name: value[row : row + 1] for name, value in calibration_inputs.items()}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    return converter.convert()


def tflite_probabilities(path, inputs):
    runner = export_tflite.load_runner(path, num_threads=1)
    rows = [
        runner(**{name: value[i : i + 1] for name, value in inputs.items()})["probabilities"]
        for i in range(len(inputs["input_ids"]))
    ]
    return np.concatenate(rows)


def tf_probabilities(model, inputs, batch_size=64):
    rows = []
    for start in range(0, len(inputs["input_ids"]), batch_size):
        ids, mask, segments = (
            inputs[n][start : start + batch_size] for n in export_tflite.INPUT_NAMES
        )
        rows.append(tf.nn.softmax(model(ids, mask, segments)).numpy())
    return np.concatenate(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--albert_config_file", required=True)
    parser.add_argument("--init_checkpoint", required=True, help="a fine-tuned classifier")
    parser.add_argument("--task_name", default="lcqmc")
    parser.add_argument("--data_dir", default=str(DATA_DIR / "lcqmc_small"))
    parser.add_argument("--vocab_file", default=str(DATA_DIR / "vocab.txt"))
    parser.add_argument("--splits", default="dev,test")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument(
        "--calibration_examples",
        type=int,
        default=200,
        help="train pairs for the full-integer int8 file (0: skip it)",
    )
    parser.add_argument("--work_dir", default=None, help="default: a temporary directory")
    parser.add_argument("--output_json", default="/tmp/bench_tflite_accuracy.json")
    args = parser.parse_args()

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_tflite_accuracy_")
    config = modeling.AlbertConfig.from_json_file(args.albert_config_file)
    tokenizer = tokenization.FullTokenizer(args.vocab_file)
    processor = classifier_data.get_processor(args.task_name)

    files = {}
    for quantize in export_tflite.QUANTIZATIONS:
        files[quantize] = os.path.join(work_dir, f"classifier_{quantize}.tflite")
        model, function = export_tflite.export_tflite(
            config,
            args.init_checkpoint,
            files[quantize],
            head="classifier",
            quantize=quantize,
            max_seq_length=args.max_seq_length,
        )
    if args.calibration_examples:
        train, _ = load_split(processor, args.data_dir, "train", tokenizer, args.max_seq_length)
        calibration = {n: v[: args.calibration_examples] for n, v in train.items()}
        files["int8 full-integer (calibrated)"] = os.path.join(work_dir, "classifier_full.tflite")
        with open(files["int8 full-integer (calibrated)"], "wb") as f:
            f.write(calibrated_int8(function, model, calibration))

    rows = []
    for split in args.splits.split(","):
        inputs, labels = load_split(processor, args.data_dir, split, tokenizer, args.max_seq_length)
        reference = tf_probabilities(model, inputs)
        tf_accuracy = float(np.mean(reference.argmax(-1) == labels))
        rows.append(
            {
                "split": split,
                "variant": "TF (peer)",
                "examples": len(labels),
                "accuracy": tf_accuracy,
                "delta_points": 0.0,
                "agreement": 1.0,
                "max_prob_diff": 0.0,
                "size_mb": None,
                "ms_per_example": None,
            }
        )
        for variant, path in files.items():
            start = time.perf_counter()
            probabilities = tflite_probabilities(path, inputs)
            elapsed_ms = (time.perf_counter() - start) * 1e3 / len(labels)
            accuracy = float(np.mean(probabilities.argmax(-1) == labels))
            rows.append(
                {
                    "split": split,
                    "variant": f"TFLite {variant}",
                    "examples": len(labels),
                    "accuracy": accuracy,
                    "delta_points": 100 * (accuracy - tf_accuracy),
                    "agreement": float(np.mean(probabilities.argmax(-1) == reference.argmax(-1))),
                    "max_prob_diff": float(np.abs(probabilities - reference).max()),
                    "size_mb": os.path.getsize(path) / 2**20,
                    "ms_per_example": elapsed_ms,
                }
            )
            print(f"done: {rows[-1]}", flush=True)

    print(
        f"\n{args.task_name} ({args.data_dir}), max_seq_length {args.max_seq_length}, "
        f"checkpoint {args.init_checkpoint}\n"
    )
    print(
        "| split | model | examples | accuracy | change (points) | same prediction as TF | "
        "max abs prob diff | size MB | ms/example (1 thread) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.2f}"
        speed = "-" if r["ms_per_example"] is None else f"{r['ms_per_example']:.2f}"
        print(
            f"| {r['split']} | {r['variant']} | {r['examples']} | {100 * r['accuracy']:.2f} | "
            f"{r['delta_points']:+.2f} | {100 * r['agreement']:.2f}% | "
            f"{r['max_prob_diff']:.2g} | {size} | {speed} |"
        )
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "args": vars(args)}, f, indent=1)
    print(f"\nwrote {args.output_json}")


if __name__ == "__main__":
    main()
