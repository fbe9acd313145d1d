"""Small real-data runs of run_pretraining.py and run_classifier.py for the fault tests.

Both scripts run either in this process (flags re-parsed per run; fast, no TensorFlow start-up)
or as subprocesses (for kill -9 and for two processes at once). Configs are tiny and sequences
32 tokens long, so a run is start-up plus a few seconds.
"""

import json
import os
import shutil
import sys

import numpy as np
from absl import flags

import run_classifier
import run_pretraining
from tests import pretraining_fixtures as pf
from tests.conftest import REPO_ROOT, shared_data

L, P = 32, 5
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

TINY_CLASSIFIER_CONFIG = dict(pf.TINY_CONFIG, num_attention_heads=4, max_position_embeddings=64)


# ----------------------------------------------------------------------------- pretraining


def make_pretraining_data(directory, num_examples=256, **config_overrides):
    """(TFRecord glob, config file) of real-text pretraining data in `directory`."""
    sentences = pf.read_sentences(shared_data("corpus_sample/news_zh_1.txt"))
    examples = pf.make_examples(sentences, shared_data("vocab.txt"), num_examples, L, P)
    pf.write_tfrecords([directory / f"part-{i}.tfrecord" for i in range(2)], examples)
    return str(directory / "part-*.tfrecord"), pf.write_config(
        directory / "config.json", **config_overrides
    )


def pretraining_flags(data, output_dir, *extra):
    input_glob, config = data
    return [
        f"--bert_config_file={config}",
        f"--input_file={input_glob}",
        f"--output_dir={output_dir}",
        "--do_train",
        f"--max_seq_length={L}",
        f"--max_predictions_per_seq={P}",
        "--train_batch_size=8",
        "--learning_rate=1e-3",
        "--num_warmup_steps=2",
        "--optimizer=lamb",
        "--keep_checkpoint_max=0",
        *extra,
    ]


def pretraining_command(data, output_dir, *extra):
    script = str(REPO_ROOT / "run_pretraining.py")
    return [sys.executable, script, *pretraining_flags(data, output_dir, *extra)]


def run_pretraining_in_process(argv):
    """run_pretraining.main on the global flags (defined once, re-parsed per run)."""
    if "bert_config_file" not in flags.FLAGS:  # defined only when run as a script
        run_pretraining.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["run_pretraining.py", "--verbosity=0", *argv])  # INFO lines reach caplog
    try:
        run_pretraining.main([])
    finally:
        flags.FLAGS.unparse_flags()


# ----------------------------------------------------------------------------- fine-tuning


def make_classifier_data(directory, train_rows=64, dev_rows=32, test_rows=32):
    """A data_dir of real lcqmc_small rows and a tiny config; returns (data_dir, config)."""
    data_dir = directory / "lcqmc"
    data_dir.mkdir()
    for split, rows in (("train", train_rows), ("dev", dev_rows), ("test", test_rows)):
        lines = shared_data(f"lcqmc_small/{split}.txt").read_text(encoding="utf-8").splitlines()
        (data_dir / f"{split}.txt").write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    config = directory / "classifier_config.json"
    config.write_text(json.dumps(TINY_CLASSIFIER_CONFIG))
    return str(data_dir), str(config)


def classifier_flags(data, output_dir, *extra):
    data_dir, config = data
    return [
        "--task_name=lcqmc",
        f"--data_dir={data_dir}",
        f"--vocab_file={shared_data('vocab.txt')}",
        f"--bert_config_file={config}",
        f"--output_dir={output_dir}",
        "--do_train",
        "--do_eval",
        f"--max_seq_length={L}",
        "--train_batch_size=8",
        "--eval_batch_size=16",
        "--learning_rate=1e-3",
        "--classifier_dropout=0",  # dropout masks are not part of a checkpoint (see README)
        "--keep_checkpoint_max=0",
        "--seed=3",
        *extra,
    ]


def classifier_command(data, output_dir, *extra):
    script = str(REPO_ROOT / "run_classifier.py")
    return [sys.executable, script, *classifier_flags(data, output_dir, *extra)]


def run_classifier_in_process(argv):
    """run_classifier.main on its own FlagValues (its flags share names with pretraining's)."""
    flag_values = flags.FlagValues()
    run_classifier.define_flags(flag_values)
    flag_values(["run_classifier.py", *argv])
    saved, run_classifier.FLAGS = run_classifier.FLAGS, flag_values
    try:
        run_classifier.main([])
    finally:
        run_classifier.FLAGS = saved


# ----------------------------------------------------------------------------- comparisons


def copy_run(source, destination):
    shutil.copytree(source, destination)
    return destination


def tensors(prefix):
    return pf.read_tensors(str(prefix))


def step_prefixes(output_dir):
    """{step: prefix} of the complete step checkpoints in output_dir."""
    found = {}
    for name in os.listdir(output_dir):
        if name.startswith("model.ckpt-") and name.endswith(".index"):
            step = name[len("model.ckpt-") : -len(".index")]
            if step.isdigit():
                found[int(step)] = os.path.join(output_dir, name[: -len(".index")])
    return found


def largest_difference(prefix_a, prefix_b):
    """max |a - b| over all variables of two checkpoints (which must hold the same names)."""
    a, b = tensors(prefix_a), tensors(prefix_b)
    assert set(a) == set(b), set(a) ^ set(b)
    return max(
        float(np.max(np.abs(a[n].astype(np.float64) - b[n].astype(np.float64))))
        if a[n].size
        else 0.0
        for n in a
    )


def state_file_names(output_dir):
    with open(os.path.join(output_dir, "checkpoint")) as f:
        return f.readline().strip()


def report(name, **values):
    """Print a line for the test log (pytest -s) and the faults report."""
    print(f"\n[faults] {name}: {json.dumps(values, ensure_ascii=False)}", flush=True)
