"""Score how likely two Chinese sentences mean the same thing, with a fine-tuned ALBERT.

The model is a run_classifier.py output directory (LCQMC or another pair task), an explicit
checkpoint + config + vocab, or a TFLite file from export_tflite.py. Sentence pairs come from
the command line, from a TSV file, or from stdin (interactive prompts on a terminal,
`text_a<TAB>text_b` lines otherwise). For each pair it prints the probability of "same
meaning" (label "1"):

    python similarity.py --model_dir=/tmp/lcqmc_output "我想买手机" "我要买个手机"
    python similarity.py --model_dir=/tmp/lcqmc_output --input_file=pairs.tsv
    python similarity.py --model_dir=/tmp/lcqmc_output            # interactive
    python similarity.py --tflite_file=/tmp/albert_lcqmc.tflite \
        --vocab_file=../shared/data/vocab.txt "我想买手机" "我要买个手机"

Output: one line per pair, `probability<TAB>text_a<TAB>text_b`. For a TSV input with a
third (label) column the accuracy at 0.5 is printed at the end.
"""

import json
import os
import sys

import numpy as np
from absl import flags, logging

import classifier_data
import errors
import tokenization

FLAGS = flags.FLAGS


INFO_FILE = "classifier_info.json"  # written by run_classifier.py
SAME_LABEL = "1"


# ----------------------------------------------------------------------------- inputs


def pairs_from_args(args):
    if len(args) % 2:
        raise errors.AlbertError(
            f"got {len(args)} sentences; give pairs: similarity.py [flags] A1 B1 [A2 B2 ...]"
        )
    return [(args[i], args[i + 1], None) for i in range(0, len(args), 2)]


def pairs_from_file(path):
    """(text_a, text_b, label or None) per row; malformed rows are reported, not dropped."""
    pairs, problems = [], []
    for line_number, text in classifier_data.read_lines(path):
        if text is None or not text.strip():
            if text is None:
                problems.append(f"{path}:{line_number}: invalid UTF-8")
            continue
        fields = text.split("\t")
        if len(fields) not in (2, 3) or not fields[0].strip() or not fields[1].strip():
            problems.append(f"{path}:{line_number}: expected text_a<TAB>text_b[<TAB>label]")
            continue
        label = fields[2].strip() if len(fields) == 3 else None
        if label is not None and label not in ("0", "1"):
            if line_number == 1 and label.lower() in classifier_data.HEADER_LABEL_WORDS:
                continue  # header
            problems.append(f"{path}:{line_number}: label {label!r} is not 0/1")
            continue
        pairs.append((fields[0].strip(), fields[1].strip(), label))
    if problems:
        logging.warning(
            "%d malformed rows skipped, first: %s", len(problems), "; ".join(problems[:5])
        )
    return pairs


# ----------------------------------------------------------------------------- scorers


class CheckpointScorer:
    """A fine-tuned AlbertForClassification restored from a checkpoint."""

    def __init__(self, config_file, checkpoint, num_labels, style=None):
        import tensorflow as tf

        import modeling

        config = modeling.AlbertConfig.from_json_file(config_file)
        style = modeling.resolve_style(config, checkpoint, style)
        self.model = modeling.AlbertForClassification(
            config, num_labels, style=style, classifier_dropout=0.0
        )
        # output_weights/output_bias must come from the checkpoint: no allowed gaps but cls/.
        modeling.load_checkpoint(self.model, checkpoint, allow_missing=("cls/",))
        self.max_positions = config.max_position_embeddings
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec])
        def probabilities(input_ids, input_mask, segment_ids):
            return tf.nn.softmax(self.model(input_ids, input_mask, segment_ids), axis=-1)

        self._probabilities = probabilities
        self.fixed_length = None

    def __call__(self, batch):
        return self._probabilities(
            batch["input_ids"], batch["input_mask"], batch["segment_ids"]
        ).numpy()


class TfliteScorer:
    """A TFLite classifier (export_tflite.py): inputs matched by name, output `probabilities`."""

    INPUTS = ("input_ids", "input_mask", "segment_ids")

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        if not os.path.isfile(path):
            raise errors.AlbertError(f"TFLite file not found: {path}")
        try:
            self.interpreter = Interpreter(model_path=path)
        except ValueError as e:
            raise errors.AlbertError(f"{path}: not a readable TFLite model ({e})") from None
        signatures = self.interpreter.get_signature_list()
        key = "classifier" if "classifier" in signatures else next(iter(signatures), None)
        if key is None:
            raise errors.AlbertError(
                f"{path} has no signature; export it with export_tflite.py (classifier head)"
            )
        self.runner = self.interpreter.get_signature_runner(key)
        details = self.runner.get_input_details()
        self.input_names = {want: self._match(path, details, want) for want in self.INPUTS}
        shape = details[self.input_names["input_ids"]]["shape_signature"]
        self.fixed_batch = int(shape[0]) if shape[0] > 0 else None
        self.fixed_length = int(shape[1]) if shape[1] > 0 else None
        self.dtypes = {want: details[name]["dtype"] for want, name in self.input_names.items()}

    @staticmethod
    def _match(path, details, want):
        """The input whose name is `want` (or ends with it, e.g. serving_default_input_ids)."""
        for name in details:
            if name == want or name.split(":")[0].endswith(want):
                return name
        raise errors.AlbertError(
            f"{path}: no input named {want} (inputs: {', '.join(details)}); "
            "export the classifier with export_tflite.py"
        )

    def __call__(self, batch):
        rows = []
        step = self.fixed_batch or len(batch["input_ids"])
        for start in range(0, len(batch["input_ids"]), step):
            inputs = {
                name: batch[want][start : start + step].astype(self.dtypes[want])
                for want, name in self.input_names.items()
            }
            outputs = self.runner(**inputs)
            probs = (
                outputs["probabilities"]
                if "probabilities" in outputs
                else next(iter(outputs.values()))
            )
            rows.append(np.asarray(probs, np.float32))
        return np.concatenate(rows)


# ----------------------------------------------------------------------------- model setup


def load_model_dir_info():
    """classifier_info.json of --model_dir (labels, lengths, file names), or {}."""
    if not FLAGS.model_dir:
        return {}
    path = os.path.join(FLAGS.model_dir, INFO_FILE)
    if not os.path.isfile(path):
        raise errors.AlbertError(
            f"{path} not found: --model_dir must be a run_classifier.py --output_dir "
            "(or pass --init_checkpoint, --bert_config_file and --vocab_file)"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def model_dir_checkpoint():
    """model_dir's best checkpoint (by dev accuracy) if kept, else its latest."""
    best = os.path.join(FLAGS.model_dir, "model.ckpt-best")
    if os.path.exists(best + ".index"):
        return best
    return FLAGS.model_dir  # modeling resolves the directory's latest checkpoint


def build_scorer(info):
    """(scorer, tokenizer, max_seq_length, index of the "same meaning" class)."""
    labels = info.get("labels", ["0", "1"])
    if SAME_LABEL not in labels or len(labels) != 2:
        raise errors.AlbertError(
            f"the model's labels are {labels}; similarity.py needs a 2-class pair model "
            "with label 1 = same meaning (e.g. fine-tuned on lcqmc)"
        )
    vocab_file = FLAGS.vocab_file or (
        os.path.join(FLAGS.model_dir, "vocab.txt") if FLAGS.model_dir else None
    )
    if not vocab_file:
        raise errors.AlbertError("pass --vocab_file (or --model_dir)")
    do_lower_case = info.get("do_lower_case", FLAGS.do_lower_case)
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    max_seq_length = FLAGS.max_seq_length or info.get("max_seq_length", 128)
    if FLAGS.tflite_file:
        scorer = TfliteScorer(FLAGS.tflite_file)
        if scorer.fixed_length:
            max_seq_length = scorer.fixed_length
    else:
        checkpoint = FLAGS.init_checkpoint or (model_dir_checkpoint() if FLAGS.model_dir else None)
        config_file = FLAGS.bert_config_file or (
            os.path.join(FLAGS.model_dir, info["config_file"]) if FLAGS.model_dir else None
        )
        if not checkpoint or not config_file:
            raise errors.AlbertError(
                "pass --model_dir, or --init_checkpoint with --bert_config_file, or --tflite_file"
            )
        scorer = CheckpointScorer(config_file, checkpoint, len(labels), FLAGS.style)
    return scorer, tokenizer, max_seq_length, labels.index(SAME_LABEL)


def score_pairs(scorer, tokenizer, max_seq_length, same_index, pairs):
    """Probability of "same meaning" for each (text_a, text_b, _) pair."""
    examples = [
        classifier_data.InputExample(str(i), a, b, None) for i, (a, b, _) in enumerate(pairs)
    ]
    features = classifier_data.convert_examples_to_features(examples, [], max_seq_length, tokenizer)
    fixed = scorer.fixed_length is not None
    result = np.zeros(len(pairs), np.float32)
    for indices in classifier_data.make_batches(features.lengths, FLAGS.batch_size, False):
        batch = classifier_data.pad_batch(features, indices, max_seq_length, fixed_length=fixed)
        result[indices] = scorer(batch)[:, same_index]
    return result


def interactive_pairs():
    """Pairs from stdin: prompts on a terminal, text_a<TAB>text_b lines otherwise."""
    if sys.stdin.isatty():
        print("Enter two sentences (empty line to quit).")
        while True:
            a = input("sentence 1: ").strip()
            if not a:
                return
            b = input("sentence 2: ").strip()
            if not b:
                return
            yield (a, b, None)
    else:
        for line_number, line in enumerate(sys.stdin, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
                if line.strip():
                    logging.warning("stdin:%d: expected text_a<TAB>text_b, skipped", line_number)
                continue
            yield (fields[0].strip(), fields[1].strip(), None)


def define_flags():
    """The command-line flags (defined only when run as a script, so modules with flags of
    the same names can be imported together, e.g. by the tests)."""
    flags.DEFINE_string("model_dir", None, "A run_classifier.py --output_dir (fine-tuned model).")
    flags.DEFINE_string("init_checkpoint", None, "Fine-tuned classifier checkpoint (or model_dir's).")
    flags.DEFINE_string("bert_config_file", None, "Config JSON (default: model_dir's copy).")
    flags.DEFINE_string("vocab_file", None, "vocab.txt (default: model_dir's copy).")
    flags.DEFINE_string("tflite_file", None, "Score with this TFLite classifier instead.")
    flags.DEFINE_string("input_file", None, "TSV of text_a<TAB>text_b[<TAB>label] pairs.")
    flags.DEFINE_integer("max_seq_length", None, "Tokens per pair (default: as fine-tuned, or 128).")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (as the Chinese models).")
    flags.DEFINE_integer("batch_size", 32, "Pairs per model call (checkpoint models).")
    flags.DEFINE_string("style", None, "brightmart|google (default: from the checkpoint).")


def main(argv):
    info = load_model_dir_info()
    scorer, tokenizer, max_seq_length, same_index = build_scorer(info)
    if FLAGS.input_file:
        pairs = pairs_from_file(FLAGS.input_file)
    elif len(argv) > 1:
        pairs = pairs_from_args(argv[1:])
    else:
        for pair in interactive_pairs():
            probability = score_pairs(scorer, tokenizer, max_seq_length, same_index, [pair])[0]
            print(f"{probability:.4f}\t{pair[0]}\t{pair[1]}", flush=True)
        return
    if not pairs:
        raise errors.AlbertError("no sentence pairs to score")
    probabilities = score_pairs(scorer, tokenizer, max_seq_length, same_index, pairs)
    for (a, b, _), probability in zip(pairs, probabilities, strict=True):
        print(f"{probability:.4f}\t{a}\t{b}")
    labels = [
        (p, int(label))
        for (_, _, label), p in zip(pairs, probabilities, strict=True)
        if label is not None
    ]
    if labels:
        correct = sum((p >= 0.5) == bool(y) for p, y in labels)
        print(f"accuracy at 0.5: {correct / len(labels):.4f} ({len(labels)} labelled pairs)")


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
