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
third (label) column the accuracy at 0.5 is printed at the end. A pair the model cannot see
well gets a warning on stderr: mostly [UNK] tokens (emoji, scripts the vocab lacks), or
truncated to max_seq_length tokens; the probability of such a pair means little.
"""

import sys

from absl import flags, logging

import classifier_data
import errors
import tokenization

FLAGS = flags.FLAGS

SAME_LABEL = "1"
MAX_PAIR_WARNINGS = 20  # warnings about single pairs; after that only the totals


# ----------------------------------------------------------------------------- inputs


def pairs_from_args(args):
    """Pairs from the command line, held to the file mode's rule: no empty sentence."""
    if len(args) % 2:
        raise errors.AlbertError(
            f"got {len(args)} sentences; give pairs: similarity.py [flags] A1 B1 [A2 B2 ...]"
        )
    for position, text in enumerate(args, start=1):
        if not text.strip():
            raise errors.AlbertError(
                f"sentence {position} on the command line is empty; give two non-empty "
                "sentences per pair"
            )
    return [
        (args[i].strip(), args[i + 1].strip(), None, f"arguments {i + 1}-{i + 2}")
        for i in range(0, len(args), 2)
    ]


def pairs_from_file(path):
    """(text_a, text_b, label or None, "file:line") per row, read as the lcqmc task's test
    split: the same rules as run_classifier.py, malformed rows counted and reported, never
    silently dropped."""
    processor = classifier_data.get_processor("lcqmc")
    examples = processor.get_examples(path, "test")
    report = processor.reports["test"]
    (logging.warning if report.num_malformed else logging.info)("%s", report.summary())
    return [(e.text_a, e.text_b, e.label, e.source) for e in examples]


# ----------------------------------------------------------------------------- model


def load_model():
    """(predictor, tokenizer, max_seq_length, index of the "same meaning" class)."""
    import checkpoints  # TensorFlow loads only once the arguments are known to be fine
    import inference

    info = {}
    if FLAGS.model_dir:
        info = checkpoints.read_model_info(FLAGS.model_dir)
        if info is None:
            raise errors.AlbertError(
                f"{FLAGS.model_dir} has no {checkpoints.MODEL_INFO_FILE}: --model_dir must be a "
                "run_classifier.py --output_dir (or pass --init_checkpoint, --bert_config_file "
                "and --vocab_file)"
            )
    labels = info.get("labels", ["0", "1"])
    if SAME_LABEL not in labels or len(labels) != 2:
        raise errors.AlbertError(
            f"the model's labels are {labels}; similarity.py needs a 2-class pair model "
            "with label 1 = same meaning (e.g. fine-tuned on lcqmc)"
        )
    vocab_file = FLAGS.vocab_file or info.get("vocab_file")
    if not vocab_file:
        raise errors.AlbertError("pass --vocab_file (or --model_dir)")
    tokenizer = tokenization.FullTokenizer(
        vocab_file, do_lower_case=info.get("do_lower_case", FLAGS.do_lower_case)
    )
    max_seq_length = FLAGS.max_seq_length or info.get("max_seq_length", 128)
    if FLAGS.tflite_file:
        predictor = inference.TflitePredictor(FLAGS.tflite_file)
        max_seq_length = predictor.fixed_length or max_seq_length
    else:
        checkpoint = FLAGS.init_checkpoint or FLAGS.model_dir
        config_file = FLAGS.bert_config_file or info.get("config_file")
        if not checkpoint or not config_file:
            raise errors.AlbertError(
                "pass --model_dir, or --init_checkpoint with --bert_config_file, or --tflite_file"
            )
        model, _ = inference.load_classifier(checkpoint, config_file, len(labels), FLAGS.style)
        predictor = inference.Predictor(model)
    return predictor, tokenizer, max_seq_length, labels.index(SAME_LABEL)


def pair_problems(text_a, text_b, tokenizer, max_seq_length):
    """What makes a pair's score unreliable: mostly [UNK] tokens, or truncation."""
    tokens = [tokenizer.tokenize(text) for text in (text_a, text_b)]
    problems = []
    for name, text_tokens in zip(("text_a", "text_b"), tokens, strict=True):
        unknown = text_tokens.count(tokenization.UNK_TOKEN)
        if not text_tokens:
            problems.append(f"{name} has no tokens")
        elif unknown * 2 > len(text_tokens):
            problems.append(
                f"most tokens of {name} are [UNK] ({unknown} of {len(text_tokens)}): the "
                "vocabulary lacks its characters (emoji, another script)"
            )
    length = len(tokens[0]) + len(tokens[1]) + 3
    if length > max_seq_length:
        problems.append(
            f"pair truncated to {max_seq_length} tokens (it has {length}): the end of the "
            "longer text is not seen"
        )
    return problems


def warn_about_pairs(pairs, tokenizer, max_seq_length):
    """Log each pair's problems (the first MAX_PAIR_WARNINGS pairs), then the total."""
    flagged = 0
    for a, b, _, where in pairs:
        problems = pair_problems(a, b, tokenizer, max_seq_length)
        if not problems:
            continue
        flagged += 1
        if flagged <= MAX_PAIR_WARNINGS:
            logging.warning("pair %s (%.20s | %.20s): %s", where, a, b, "; ".join(problems))
    if flagged > MAX_PAIR_WARNINGS:
        logging.warning(
            "%d pairs in all have such problems (%d more than shown)",
            flagged,
            flagged - MAX_PAIR_WARNINGS,
        )


def score_pairs(model, pairs):
    """Probability of "same meaning" for each (text_a, text_b, _, _) pair."""
    import inference

    predictor, tokenizer, max_seq_length, same_index = model
    warn_about_pairs(pairs, tokenizer, max_seq_length)
    examples = [
        classifier_data.InputExample(str(i), a, b, None) for i, (a, b, *_) in enumerate(pairs)
    ]
    features = classifier_data.convert_examples_to_features(examples, [], max_seq_length, tokenizer)
    outputs = inference.predict(predictor, features, FLAGS.batch_size, max_seq_length)
    return outputs["probabilities"][:, same_index]


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
            yield (a, b, None, "entered")
    else:
        for line_number, line in enumerate(sys.stdin, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
                if line.strip():
                    logging.warning("stdin:%d: expected text_a<TAB>text_b, skipped", line_number)
                continue
            yield (fields[0].strip(), fields[1].strip(), None, f"stdin:{line_number}")


def define_flags():
    """The command-line flags (defined only when run as a script, so modules with flags of
    the same names can be imported together, e.g. by the tests)."""
    flags.DEFINE_string("model_dir", None, "A run_classifier.py --output_dir (fine-tuned model).")
    flags.DEFINE_string(
        "init_checkpoint", None, "Fine-tuned classifier checkpoint (or model_dir's)."
    )
    flags.DEFINE_string("bert_config_file", None, "Config JSON (default: model_dir's copy).")
    flags.DEFINE_string("vocab_file", None, "vocab.txt (default: model_dir's copy).")
    flags.DEFINE_string("tflite_file", None, "Score with this TFLite classifier instead.")
    flags.DEFINE_string("input_file", None, "TSV of text_a<TAB>text_b[<TAB>label] pairs.")
    flags.DEFINE_integer(
        "max_seq_length", None, "Tokens per pair (default: as fine-tuned, or 128)."
    )
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (as the Chinese models).")
    flags.DEFINE_integer("batch_size", 32, "Pairs per model call (checkpoint models).")
    flags.DEFINE_enum(
        "style", None, ["google", "brightmart"], "Checkpoint style (default: from the checkpoint)."
    )


def main(argv):
    model = load_model()
    if FLAGS.input_file:
        pairs = pairs_from_file(FLAGS.input_file)
    elif len(argv) > 1:
        pairs = pairs_from_args(argv[1:])
    else:
        for pair in interactive_pairs():
            probability = score_pairs(model, [pair])[0]
            print(f"{probability:.4f}\t{pair[0]}\t{pair[1]}", flush=True)
        return
    if not pairs:
        raise errors.AlbertError("no sentence pairs to score")
    probabilities = score_pairs(model, pairs)
    for (a, b, *_), probability in zip(pairs, probabilities, strict=True):
        print(f"{probability:.4f}\t{a}\t{b}")
    labels = [
        (p, int(label))
        for (_, _, label, _), p in zip(pairs, probabilities, strict=True)
        if label is not None
    ]
    if labels:
        correct = sum((p >= 0.5) == bool(y) for p, y in labels)
        print(f"accuracy at 0.5: {correct / len(labels):.4f} ({len(labels)} labelled pairs)")


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
