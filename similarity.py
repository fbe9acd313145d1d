"""Score how likely two Chinese sentences mean the same thing, with a fine-tuned ALBERT.

The model is a run_classifier.py output directory (LCQMC or another pair task), a Hugging Face
AlbertForSequenceClassification directory (config, weights and vocab.txt in it), an explicit
checkpoint + config + vocab, a SavedModel directory from export_savedmodel.py (raw text goes
through its classify_text signature: its tokenizer, vocab and labels are inside it), or a
TFLite file from export_tflite.py. Sentence pairs come from
the command line, from a TSV file, or from stdin (interactive prompts on a terminal,
`text_a<TAB>text_b` lines otherwise). For each pair it prints the probability of "same
meaning" (label "1"):

    python similarity.py --model_dir=/tmp/lcqmc_output "我想买手机" "我要买个手机"
    python similarity.py --model_dir=/tmp/lcqmc_output --input_file=pairs.tsv
    python similarity.py --model_dir=/tmp/lcqmc_output            # interactive
    python similarity.py --init_checkpoint=/tmp/albert_lcqmc_hf "我想买手机" "我要买个手机"
    python similarity.py --saved_model=/tmp/lcqmc_savedmodel "我想买手机" "我要买个手机"
    python similarity.py --tflite_file=/tmp/albert_lcqmc.tflite \
        --vocab_file=../shared/data/vocab.txt "我想买手机" "我要买个手机"

Output: one line per pair, `probability<TAB>text_a<TAB>text_b`. For a TSV input with a
third (label) column the accuracy at 0.5 is printed at the end. A pair the model cannot see
well gets a warning on stderr: mostly [UNK] tokens (emoji, scripts the vocab lacks), or
truncated to max_seq_length tokens; the probability of such a pair means little.
"""

import cpu_kernels  # noqa: F401  # isort: skip  (first: TensorFlow reads its kernel choice on load)
import sys

from absl import flags, logging

import classifier_data
import errors
import tokenization

FLAGS = flags.FLAGS

SAME_LABELS = ("1", "same")  # our lcqmc label, and its name (an HF classifier's id2label)
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
    """(predictor, tokenizer, max_seq_length, index of the "same meaning" class).

    A SavedModel brings its own tokenizer: then tokenizer and max_seq_length are None.
    """
    if FLAGS.saved_model:
        others = ("model_dir", "init_checkpoint", "tflite_file", "vocab_file", "max_seq_length")
        given = [f"--{name}" for name in others if FLAGS[name].value]
        if given:
            raise errors.AlbertError(
                f"--saved_model brings its own tokenizer, vocab and max_seq_length: drop "
                f"{', '.join(given)}"
            )
    import checkpoints  # TensorFlow loads only once the arguments are known to be fine
    import inference

    if FLAGS.saved_model:
        predictor = inference.SavedModelTextPredictor(FLAGS.saved_model)
        return predictor, None, None, same_label_index(predictor.labels)
    source = FLAGS.init_checkpoint or FLAGS.model_dir
    info = {}
    if FLAGS.model_dir and not checkpoints.is_hf_directory(FLAGS.model_dir):
        info = checkpoints.read_model_info(FLAGS.model_dir)
        if info is None:
            raise errors.AlbertError(
                f"{FLAGS.model_dir} has no {checkpoints.MODEL_INFO_FILE}: --model_dir must be a "
                "run_classifier.py --output_dir or a Hugging Face ALBERT classifier directory "
                "(or pass --init_checkpoint, --bert_config_file and --vocab_file)"
            )
    found = checkpoints.tokenizer_files(source)
    labels = info.get("labels")
    if not labels and source and not FLAGS.tflite_file:
        labels = checkpoints.label_names(source)  # an HF classifier's id2label
    labels = labels or ["0", "1"]
    same_index = same_label_index(labels)
    vocab_file = FLAGS.vocab_file or info.get("vocab_file") or found.vocab_file
    if not vocab_file:
        raise errors.AlbertError("pass --vocab_file (or --model_dir)")
    do_lower_case = info.get("do_lower_case", found.do_lower_case)
    tokenizer = tokenization.FullTokenizer(
        vocab_file, do_lower_case=FLAGS.do_lower_case if do_lower_case is None else do_lower_case
    )
    max_seq_length = FLAGS.max_seq_length or info.get("max_seq_length", 128)
    if FLAGS.tflite_file:
        predictor = inference.TflitePredictor(FLAGS.tflite_file)
        max_seq_length = predictor.fixed_length or max_seq_length
    else:
        if not source:
            raise errors.AlbertError(
                "pass --model_dir, or --init_checkpoint with --bert_config_file, or --tflite_file"
            )
        config = checkpoints.model_config(FLAGS.bert_config_file or info.get("config_file"), source)
        if not FLAGS.max_seq_length:
            max_seq_length = min(max_seq_length, config.max_position_embeddings)
        model, _ = inference.load_classifier(source, config, len(labels), FLAGS.style)
        predictor = inference.Predictor(model)
    return predictor, tokenizer, max_seq_length, same_index


def same_label_index(labels):
    """The column of the "same meaning" class (label 1, or "same") of a 2-class pair model."""
    same = [i for i, label in enumerate(labels) if label in SAME_LABELS]
    if len(labels) != 2 or len(same) != 1:
        raise errors.AlbertError(
            f"the model's labels are {labels}; similarity.py needs a 2-class pair model "
            'with label 1 (or "same") = same meaning (e.g. fine-tuned on lcqmc)'
        )
    return same[0]


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
    if tokenizer is None:  # a SavedModel: raw text in, its own tokenizer
        texts_a, texts_b = [a for a, *_ in pairs], [b for _, b, *_ in pairs]
        outputs = inference.predict_texts(predictor, texts_a, texts_b, FLAGS.batch_size)
        return outputs["probabilities"][:, same_index]
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
    flags.DEFINE_string(
        "model_dir",
        None,
        "A run_classifier.py --output_dir or a Hugging Face ALBERT classifier directory.",
    )
    flags.DEFINE_string(
        "init_checkpoint",
        None,
        "Fine-tuned classifier: a checkpoint, a run_classifier.py output directory or a "
        "Hugging Face AlbertForSequenceClassification directory (default: model_dir's).",
    )
    flags.DEFINE_string(
        "bert_config_file", None, "Config JSON (default: the model directory's own)."
    )
    flags.DEFINE_string("vocab_file", None, "vocab.txt (default: the model directory's own).")
    flags.DEFINE_string("tflite_file", None, "Score with this TFLite classifier instead.")
    flags.DEFINE_string(
        "saved_model", None, "Score with this SavedModel's classify_text (export_savedmodel.py)."
    )
    flags.DEFINE_string("input_file", None, "TSV of text_a<TAB>text_b[<TAB>label] pairs.")
    flags.DEFINE_integer(
        "max_seq_length", None, "Tokens per pair (default: as fine-tuned, or 128)."
    )
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (as the Chinese models).")
    flags.DEFINE_integer("batch_size", 32, "Pairs per model call (checkpoints, SavedModels).")
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
