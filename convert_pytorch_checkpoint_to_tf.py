"""Convert a Hugging Face ALBERT directory (PyTorch) into an original-format TF checkpoint.

The output directory holds what the TF1 code and every script here read:
  * model.ckpt-0.index / .data-*  -- the weights under the original variable names (google
                                     style: bert/encoder/transformer/group_g/inner_group_k/...),
                                     plus the `checkpoint` file naming it;
  * albert_config.json            -- the hyper-parameters (hidden_act "gelu" = tanh GELU);
  * vocab.txt                     -- the WordPiece vocabulary.

So `--init_checkpoint=OUT/model.ckpt-0 --albert_config_file=OUT/albert_config.json
--vocab_file=OUT/vocab.txt` works for run_classifier.py, run_pretraining.py and
export_savedmodel.py. Heads are kept when the HF model has them: AlbertForPreTraining ->
cls/predictions + cls/seq_relationship, AlbertForMaskedLM -> cls/predictions,
AlbertForSequenceClassification / AlbertForTokenClassification -> output_weights/output_bias.

`model.safetensors` is read with numpy alone; a `pytorch_model.bin` needs torch. English
(SentencePiece) ALBERT, non-ALBERT models and settings our model cannot compute exactly are
refused with one `error:` line (see hf_checkpoint.py). The way there is
convert_albert_tf_checkpoint_to_pytorch.py.

Usage:
  python convert_pytorch_checkpoint_to_tf.py --hf_dir=albert_chinese_base \
      --output_dir=/tmp/albert_chinese_base_tf
"""

import json
import os
import shutil

from absl import flags, logging

import checkpoints
import errors
import hf_checkpoint
import modeling
import tokenization
from errors import AlbertError

FLAGS = flags.FLAGS

CHECKPOINT_NAME = "model.ckpt-0"
CONFIG_FILE = "albert_config.json"


def define_flags():
    """Command-line flags (not defined on import, so tests can call `convert`)."""
    flags.DEFINE_string("hf_dir", None, "Hugging Face ALBERT directory (save_pretrained output).")
    flags.DEFINE_string("output_dir", None, "Directory for model.ckpt-0, albert_config.json, ...")
    flags.DEFINE_enum(
        "style", "google", list(modeling.STYLES), "Variable naming of the written checkpoint."
    )
    flags.DEFINE_string(
        "vocab_file", None, "vocab.txt to ship when the HF directory has none (WordPiece)."
    )


def convert(hf_dir, output_dir, style="google", vocab_file=None):
    """Write the TF checkpoint, config and vocab for an HF directory; return a summary dict."""
    if style != "google":
        raise AlbertError(
            "--style must be google: HF's ALBERT is Google's layout (E-wide embeddings and an "
            "E->H projection), which brightmart's variables (word_embeddings_2, H-wide "
            "embeddings) cannot hold in general; every script here loads google style"
        )
    checkpoint = hf_checkpoint.read_hf_checkpoint(hf_dir)
    config = checkpoint.config
    vocab_file = vocab_file or checkpoint.vocab_file
    if not vocab_file:
        raise AlbertError(
            f"{hf_dir} has no vocab.txt: pass --vocab_file (the WordPiece vocab of the model)"
        )
    tokenization.check_vocab_size(vocab_file, config.vocab_size)

    os.makedirs(output_dir, exist_ok=True)
    prefix = checkpoints.save_tensors(checkpoint.weights, os.path.join(output_dir, CHECKPOINT_NAME))
    checkpoints.write_checkpoint_state(output_dir, prefix, [prefix])
    with open(os.path.join(output_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
        f.write(config.to_json_string())
    vocab_copy = os.path.join(output_dir, "vocab.txt")
    if os.path.abspath(vocab_file) != os.path.abspath(vocab_copy):
        shutil.copyfile(vocab_file, vocab_copy)
    info = checkpoints.hf_model_info(checkpoint)
    if info:  # a classifier: its task (token or sequence) and label names travel with it
        do_lower_case = checkpoint.do_lower_case
        info = dict(info, style="google", source=os.path.abspath(hf_dir),
                    do_lower_case=True if do_lower_case is None else do_lower_case)  # fmt: skip
        checkpoints.write_model_info(output_dir, config, vocab_copy, info)
    verify_loads(config, prefix)
    return {
        "output_dir": output_dir,
        "checkpoint": prefix,
        "architecture": checkpoint.architecture,
        "heads": checkpoint.heads,
        "num_labels": checkpoint.num_labels,
        "id2label": checkpoint.id2label,
        "do_lower_case": checkpoint.do_lower_case,
        "num_variables": len(checkpoint.weights),
        "notes": checkpoint.notes,
    }


def verify_loads(config, prefix):
    """Load the written checkpoint into our models of every head it holds.

    checkpoints.build_models checks every name and shape, so a converter bug fails here
    instead of in the user's next script. A token classifier has the same `output_weights`
    / `output_bias` as the sequence classifier, so the classifier checks both.
    """
    checkpoints.build_models(config, prefix, style="google")


def main(argv):
    del argv
    if not FLAGS.hf_dir:
        raise AlbertError("--hf_dir is required (a Hugging Face ALBERT directory).")
    if not FLAGS.output_dir:
        raise AlbertError("--output_dir is required.")
    errors.check_output_path(FLAGS.output_dir, "output_dir", directory=True)
    summary = convert(FLAGS.hf_dir, FLAGS.output_dir, FLAGS.style, FLAGS.vocab_file)
    for note in summary["notes"]:
        logging.info("%s", note)
    logging.info(
        "wrote %s (%s: heads %s, %d variables)",
        summary["checkpoint"],
        summary["architecture"],
        ", ".join(summary["heads"]) or "none",
        summary["num_variables"],
    )
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    errors.run_main(main)
