"""Export an albert_zh checkpoint (either style) to a TensorFlow Lite / LiteRT `.tflite` file.

One command replaces the original freeze_graph + nightly-converter recipe:

  python export_tflite.py --albert_config_file=albert_tiny_zh/albert_config_tiny.json \
      --init_checkpoint=lcqmc_output/model.ckpt-best --head=classifier \
      --quantize=int8 --max_seq_length=128 --output_file=/tmp/albert_tiny_lcqmc.tflite

The file holds ONE signature, `serving_default`, so apps address tensors by name:
  inputs  (int32, [1, max_seq_length]; or [batch, seq] with --dynamic):
      input_ids, input_mask (1 = real token, 0 = padding), segment_ids (0 = text_a, 1 = text_b)
      + masked_lm_positions [1, max_predictions_per_seq] for --head=pretraining
  outputs (float32), named as export_savedmodel.py's signatures:
      --head=encoder      sequence_output [B, S, hidden], pooled_output [B, hidden]
      --head=classifier   probabilities [B, num_labels]            (softmax of the logits)
      --head=pretraining  masked_lm_log_probs [B, P, vocab], sentence_order_logits [B, 2]
      --head=token_classifier (a run_ner.py model)
                          tag_ids [B, S] int32, probabilities [B, S, num_tags]
                          (as the SavedModel's token_classifier signature: a CRF's Viterbi
                          decoding, with the tag scheme's constraints, runs inside the file
                          with TFLite builtins only; see inference.token_classifier_outputs)

In Python (the LiteRT runtime, `pip install ai-edge-litert`):
  from ai_edge_litert.interpreter import Interpreter
  runner = Interpreter(model_path="albert.tflite", num_threads=2).get_signature_runner()
  probabilities = runner(input_ids=ids, input_mask=mask, segment_ids=segments)["probabilities"]

--quantize: `none` keeps float32 weights; `int8` is dynamic-range quantization (weights stored
as int8, activations computed in float; no calibration data needed); `float16` stores weights as
float16 (half the size, dequantized to float32 on CPUs).

A dynamic-shape file accepts any sequence length up to max_position_embeddings; longer input
fails in the interpreter (TFLite drops the model's length assertion), so truncate before calling.

--init_checkpoint may be a Hugging Face ALBERT directory (its config.json then replaces
--albert_config_file). The printed summary names the classes (`label_names`) when the
checkpoint does: an HF directory's id2label, a run_classifier.py output's model_info.json.
"""

import cpu_kernels  # noqa: F401  # isort: skip  (first: TensorFlow reads its kernel choice on load)
import json
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

import checkpoints
import errors
import inference
from errors import AlbertError

FLAGS = flags.FLAGS

HEADS = ("encoder", "classifier", "pretraining", "token_classifier")
QUANTIZATIONS = ("none", "int8", "float16")
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
OUTPUT_NAMES = {
    "encoder": ("sequence_output", "pooled_output"),
    "classifier": ("probabilities",),
    "pretraining": ("masked_lm_log_probs", "sentence_order_logits"),
    "token_classifier": ("tag_ids", "probabilities"),
}
SIGNATURE_KEY = inference.TFLITE_SIGNATURE


def define_flags():
    """Command-line flags (defined only when run as a script, so tests and benchmarks import)."""
    checkpoints.define_model_flags(
        FLAGS,
        "Checkpoint prefix (e.g. .../albert_model.ckpt) or a model directory (its best, "
        "else latest checkpoint).",
    )
    flags.DEFINE_string("output_file", None, "Where to write the .tflite file.")
    flags.DEFINE_enum(
        "head",
        "encoder",
        list(HEADS),
        "encoder: sequence/pooled output; classifier: a fine-tuned classifier's "
        "probabilities; pretraining: masked-LM and sentence-order outputs; "
        "token_classifier: a run_ner.py model's tag_ids and per-token probabilities.",
    )
    flags.DEFINE_enum(
        "quantize",
        "none",
        list(QUANTIZATIONS),
        "none: float32; int8: dynamic-range (int8 weights); float16: fp16 weights.",
    )
    flags.DEFINE_integer(
        "max_seq_length", 128, "Fixed input shape [1, max_seq_length]. Not used with --dynamic."
    )
    flags.DEFINE_bool(
        "dynamic", False, "Dynamic [batch, seq] inputs instead of the fixed [1, max_seq_length]."
    )
    flags.DEFINE_integer(
        "max_predictions_per_seq",
        20,
        "--head=pretraining: number of masked_lm_positions (fixed shape only).",
    )
    flags.DEFINE_bool(
        "verify",
        True,
        "Run the .tflite file and the TF model on one random input and log the "
        "largest output difference.",
    )


# ----------------------------------------------------------------------------------------------
# Model: the requested head, loaded from the checkpoint.
# ----------------------------------------------------------------------------------------------


def build_model(config, init_checkpoint, head, style=None):
    """The loaded model for `head`; AlbertError if the checkpoint lacks that head's weights."""
    heads = checkpoints.checkpoint_heads(init_checkpoint)
    if head == "classifier" and not heads.num_labels:
        raise AlbertError(
            f"checkpoint {init_checkpoint} has no classifier head (output_weights): pass a "
            "fine-tuned run_classifier.py checkpoint, or use --head=encoder"
        )
    if head == "classifier" and heads.token_level:
        raise AlbertError(
            f"checkpoint {init_checkpoint} is a token classifier (run_ner.py): use "
            "--head=token_classifier"
        )
    if head == "token_classifier" and not heads.token_level:
        raise AlbertError(
            f"checkpoint {init_checkpoint} has no token classifier (a run_ner.py model with "
            "its model_info.json): pass a run_ner.py output, or use --head=encoder"
        )
    if head == "pretraining" and not heads.pretraining:
        raise AlbertError(
            f"checkpoint {init_checkpoint} has no pretraining heads (cls/predictions/...): "
            "pass a pretrained albert_model.ckpt, or use --head=encoder"
        )
    models = checkpoints.build_models(config, init_checkpoint, style)
    return {
        "encoder": models.encoder,
        "pretraining": models.pretraining,
        "classifier": models.classifier,
        "token_classifier": models.token_classifier,
    }[head]


def head_outputs(model, head, input_ids, input_mask, segment_ids, masked_lm_positions=None):
    """The named outputs of one head (the same names as the SavedModel signatures)."""
    if head == "token_classifier":
        return inference.token_classifier_outputs(
            model, input_ids, input_mask, segment_ids, decode_row_by_row=True
        )
    if head == "classifier":
        return inference.classifier_probabilities(model, input_ids, input_mask, segment_ids)
    if head == "pretraining":
        outputs = model(input_ids, input_mask, segment_ids, masked_lm_positions, training=False)
        return {name: outputs[name] for name in OUTPUT_NAMES["pretraining"]}
    outputs = model(input_ids, input_mask, segment_ids, training=False)
    return {name: outputs[name] for name in OUTPUT_NAMES["encoder"]}


def input_specs(head, seq_length=None, max_predictions=None):
    """TensorSpecs of the inputs: [1, seq_length] when given, else dynamic [batch, seq]."""
    shape = [1, seq_length] if seq_length else [None, None]
    specs = [tf.TensorSpec(shape, tf.int32, name=name) for name in INPUT_NAMES]
    if head == "pretraining":
        positions_shape = [1, max_predictions] if seq_length else [None, None]
        specs.append(tf.TensorSpec(positions_shape, tf.int32, name="masked_lm_positions"))
    return specs


def serving_function(model, head, seq_length=None, max_predictions=None):
    """The concrete function that becomes the file's `serving_default` signature."""

    if head == "pretraining":

        def serve(input_ids, input_mask, segment_ids, masked_lm_positions):
            return head_outputs(
                model, head, input_ids, input_mask, segment_ids, masked_lm_positions
            )
    else:

        def serve(input_ids, input_mask, segment_ids):
            return head_outputs(model, head, input_ids, input_mask, segment_ids)

    specs = input_specs(head, seq_length, max_predictions)
    return tf.function(serve, input_signature=specs).get_concrete_function()


# ----------------------------------------------------------------------------------------------
# Conversion.
# ----------------------------------------------------------------------------------------------


def convert(concrete_function, model, quantize="none"):
    """The .tflite bytes of a concrete function, with the requested weight quantization."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], model)
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize != "none":
        raise AlbertError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError/RuntimeError with MLIR dumps
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AlbertError(f"TFLite conversion failed: {first}") from None


def export_tflite(
    config,
    init_checkpoint,
    output_file,
    head="encoder",
    quantize="none",
    max_seq_length=128,
    dynamic=False,
    max_predictions_per_seq=20,
    style=None,
):
    """Build, load and convert; write `output_file`. Returns (model, concrete function)."""
    if head not in HEADS:
        raise AlbertError(f"--head must be one of {', '.join(HEADS)}, got {head!r}")
    seq_length = None if dynamic else max_seq_length
    if seq_length is not None:
        if seq_length <= 0:
            raise AlbertError(
                f"--max_seq_length must be positive, got {seq_length} "
                "(use --dynamic for a dynamic sequence length)"
            )
        config.check_max_seq_length(seq_length)
        if head == "pretraining" and not 0 < max_predictions_per_seq <= seq_length:
            raise AlbertError(
                f"--max_predictions_per_seq must be in 1..{seq_length}, "
                f"got {max_predictions_per_seq}"
            )
    model = build_model(config, init_checkpoint, head, style)
    function = serving_function(model, head, seq_length, max_predictions_per_seq)
    data = convert(function, model, quantize)
    directory = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(directory, exist_ok=True)
    with open(output_file, "wb") as f:
        f.write(data)
    return model, function


# ----------------------------------------------------------------------------------------------
# Running a .tflite file (LiteRT) and checking it against TF.
# ----------------------------------------------------------------------------------------------


def load_runner(tflite_file, num_threads=None):
    """The signature runner of a .tflite file (LiteRT interpreter)."""
    return inference.TflitePredictor(tflite_file, num_threads).runner


def describe(tflite_file):
    """{"inputs": {name: [shape, dtype]}, "outputs": {...}} of the file's signature (-1 = any)."""
    runner = load_runner(tflite_file)

    def table(details):
        return {
            name: [[int(d) for d in detail["shape_signature"]], np.dtype(detail["dtype"]).name]
            for name, detail in details.items()
        }

    return {
        "inputs": table(runner.get_input_details()),
        "outputs": table(runner.get_output_details()),
    }


def example_inputs(head, config, batch_size=1, seq_length=16, max_predictions=4, seed=0):
    """Deterministic random int32 inputs with some padding and both segments."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, config.vocab_size, size=(batch_size, seq_length), dtype=np.int32)
    mask = np.ones_like(ids)
    segments = np.zeros_like(ids)
    segments[:, seq_length // 2 :] = 1
    for row in range(batch_size):  # pad the tail of every other row
        if row % 2 and seq_length > 2:
            mask[row, seq_length - seq_length // 3 :] = 0
    inputs = {"input_ids": ids, "input_mask": mask, "segment_ids": segments}
    if head == "pretraining":
        inputs["masked_lm_positions"] = rng.integers(
            0, seq_length, size=(batch_size, max_predictions), dtype=np.int32
        )
    return inputs


def max_differences(tflite_file, concrete_function, inputs):
    """dict output name -> largest |TFLite - TF| on `inputs`."""
    tflite_outputs = load_runner(tflite_file)(**inputs)
    tf_outputs = concrete_function(**{k: tf.constant(v) for k, v in inputs.items()})
    return {
        name: float(np.max(np.abs(tflite_outputs[name] - tf_outputs[name].numpy()), initial=0.0))
        for name in tf_outputs
    }


def main(argv):
    del argv
    for flag in ("init_checkpoint", "output_file"):
        if not FLAGS[flag].value:
            raise AlbertError(f"--{flag} is required")
    errors.check_output_path(FLAGS.output_file, "output_file")
    if FLAGS.dynamic and FLAGS["max_seq_length"].present:
        raise AlbertError(
            "pass either --max_seq_length (fixed [1, N] input) or --dynamic "
            "(any [batch, seq]), not both"
        )
    config = checkpoints.config_from_flags(FLAGS)
    _, function = export_tflite(
        config,
        FLAGS.init_checkpoint,
        FLAGS.output_file,
        head=FLAGS.head,
        quantize=FLAGS.quantize,
        max_seq_length=FLAGS.max_seq_length,
        dynamic=FLAGS.dynamic,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        style=FLAGS.style,
    )
    summary = {
        "output_file": FLAGS.output_file,
        "head": FLAGS.head,
        "checkpoint": checkpoints.resolve_checkpoint_path(FLAGS.init_checkpoint),
        "quantize": FLAGS.quantize,
        "size_mb": round(os.path.getsize(FLAGS.output_file) / 2**20, 2),
        "signature": SIGNATURE_KEY,
        **describe(FLAGS.output_file),
    }
    if FLAGS.head == "classifier":
        summary["label_names"] = checkpoints.label_names(FLAGS.init_checkpoint)
    if FLAGS.verify:
        seq_length = 16 if FLAGS.dynamic else FLAGS.max_seq_length
        inputs = example_inputs(
            FLAGS.head,
            config,
            batch_size=2 if FLAGS.dynamic else 1,
            seq_length=seq_length,
            max_predictions=FLAGS.max_predictions_per_seq,
        )
        summary["max_abs_diff_vs_tf"] = max_differences(FLAGS.output_file, function, inputs)
    logging.info("wrote %s (%.2f MB)", FLAGS.output_file, summary["size_mb"])
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    errors.run_main(main)
