"""run_classifier.py end to end on real lcqmc_small pairs, plus similarity.py on its output.

The main test fine-tunes a small ALBERT (brightmart style, hidden 192, 2 layers, 12 heads)
from scratch for 240 steps (lr 3e-4) at sequence length 64 and checks that it beats the majority-class
baseline of the real dev split, that every output file is there with one line per test row,
and that the checkpoints carry the original variable names. The script runs in-process
(absl flags re-parsed per run) to save TensorFlow start-up time.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import checkpoints
import errors
import modeling
import run_classifier
from tests.conftest import REPO_ROOT, shared_data

SMALL_CONFIG = {
    "vocab_size": 21128, "embedding_size": 64, "hidden_size": 192, "num_hidden_layers": 2,
    "num_attention_heads": 12, "intermediate_size": 768, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
    "ln_type": "postln",
}  # fmt: skip
TINY_GOOGLE_CONFIG = {
    "vocab_size": 21128, "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02,
    "num_hidden_groups": 1, "inner_group_num": 1,
}  # fmt: skip


def write_config(directory, values, name="config.json"):
    path = directory / name
    path.write_text(json.dumps(values), encoding="utf-8")
    return str(path)


def run(args):
    """Run run_classifier.main in-process on its own FlagValues.

    run_classifier defines its flags only when asked, so they do not collide with
    run_pretraining.py's (same names) in this pytest process.
    """
    flag_values = flags.FlagValues()
    run_classifier.define_flags(flag_values)
    flag_values(["run_classifier.py"] + args)
    saved, run_classifier.FLAGS = run_classifier.FLAGS, flag_values
    try:
        run_classifier.main([])
    finally:
        run_classifier.FLAGS = saved


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """Fine-tune once on the real lcqmc_small split; tests read the output directory."""
    data_dir = shared_data("lcqmc_small")
    vocab = shared_data("vocab.txt")
    work = tmp_path_factory.mktemp("lcqmc")
    output_dir = work / "output"
    run(
        [
            "--task_name=lcqmc",
            f"--data_dir={data_dir}",
            f"--vocab_file={vocab}",
            f"--bert_config_file={write_config(work, SMALL_CONFIG)}",
            f"--output_dir={output_dir}",
            "--do_train",
            "--do_eval",
            "--do_predict",
            "--max_seq_length=64",
            "--train_batch_size=32",
            "--eval_batch_size=128",
            "--predict_batch_size=256",
            "--learning_rate=3e-4",
            "--num_train_steps=240",
            "--iterations_per_loop=60",
            "--save_checkpoints_steps=0",
            "--seed=1",
        ]
    )
    return output_dir


def test_finetuning_beats_the_majority_baseline_on_real_dev(finetuned):
    dev_labels = [line.split("\t")[2] for line in read_lines(shared_data("lcqmc_small/dev.txt"))]
    majority = max(dev_labels.count("0"), dev_labels.count("1")) / len(dev_labels)
    results = json.loads((finetuned / "final_results.json").read_text())
    assert results["dev"]["accuracy"] > majority + 0.05, (results, majority)
    records = [json.loads(line) for line in read_lines(finetuned / "eval_results.jsonl")]
    dev = [r for r in records if r["split"] == "dev"]
    assert dev and dev[-1]["num_examples"] == 880 and dev[-1]["global_step"] == 240
    text = (finetuned / "eval_results.txt").read_text()
    for key in ("accuracy", "macro_f1", "loss", "global_step"):
        assert f"{key} = " in text


def test_predictions_have_one_line_per_test_row(finetuned):
    test_rows = read_lines(shared_data("lcqmc_small/test.txt"))
    probabilities = np.loadtxt(finetuned / "test_results.tsv", delimiter="\t")
    assert probabilities.shape == (len(test_rows), 2) == (6250, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    readable = read_lines(finetuned / "test_predictions.tsv")
    assert readable[0].startswith("line\ttext_a\ttext_b\tlabel\tprediction")
    assert len(readable) == 1 + len(test_rows)
    # Row order is the file's order, although prediction ran in length-sorted batches.
    for line_number in (1, 3000, 6250):
        fields = readable[line_number].split("\t")
        a, b, label = test_rows[line_number - 1].split("\t")
        assert fields[:4] == [str(line_number), a, b, label]
        assert int(fields[4]) == probabilities[line_number - 1].argmax()
    test_accuracy = json.loads((finetuned / "final_results.json").read_text())["test"]
    gold = np.array([int(r.split("\t")[2]) for r in test_rows])
    assert test_accuracy["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == gold))


def test_checkpoints_keep_the_original_names(finetuned):
    best = checkpoints.checkpoint_variable_names(finetuned / "model.ckpt-best")
    assert best["output_weights"] == [2, 192] and best["output_bias"] == [2]
    assert "bert/embeddings/word_embeddings_2" in best and "global_step" in best
    # A model directory means its best checkpoint; step checkpoints can resume training.
    assert checkpoints.resolve_checkpoint_path(finetuned) == str(finetuned / "model.ckpt-best")
    latest = checkpoints.checkpoint_variable_names(checkpoints.latest_checkpoint(finetuned))
    assert "output_weights/adam_m" in latest
    info = json.loads((finetuned / "model_info.json").read_text())
    assert info["labels"] == ["0", "1"] and info["max_seq_length"] == 64
    assert (finetuned / "vocab.txt").exists() and (finetuned / info["config_file"]).exists()


def test_similarity_script_agrees_with_the_predictions(finetuned):
    test_rows = read_lines(shared_data("lcqmc_small/test.txt"))[:3]
    pairs = [field for row in test_rows for field in row.split("\t")[:2]]
    result = subprocess.run(
        [sys.executable, "similarity.py", f"--model_dir={finetuned}"] + pairs,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [float(line.split("\t")[0]) for line in result.stdout.strip().splitlines()]
    expected = np.loadtxt(finetuned / "test_results.tsv", delimiter="\t")[:3, 1]
    np.testing.assert_allclose(printed, expected, atol=2e-4)


def test_eval_only_run_reuses_the_best_checkpoint(finetuned, tmp_path):
    dev_file = tmp_path / "dev.txt"
    dev_file.write_text("\n".join(read_lines(shared_data("lcqmc_small/dev.txt"))[:50]) + "\n")
    run(
        [
            "--task_name=lcqmc",
            f"--dev_file={dev_file}",
            f"--vocab_file={shared_data('vocab.txt')}",
            f"--bert_config_file={finetuned / 'albert_config.json'}",
            f"--output_dir={finetuned}",
            "--do_eval",
            "--max_seq_length=64",
        ]
    )
    records = [json.loads(line) for line in read_lines(finetuned / "eval_results.jsonl")]
    assert records[-1]["checkpoint"] == "model.ckpt-best" and records[-1]["num_examples"] == 50


def test_compute_metrics_against_hand_computed_values():
    labels = np.array([0, 0, 1, 1, 2])
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4]]
    )
    metrics = run_classifier.compute_metrics(probabilities, labels, 3)
    # Per class F1 = 2TP / (predicted + actual): 2/4, 4/5, 0/1.
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.8, 0.5, 0.4])))
    unlabelled = run_classifier.compute_metrics(probabilities, np.full(5, -1), 3)
    assert unlabelled is None


@pytest.mark.parametrize("style", ["google", "brightmart"])
def test_initialises_from_a_pretraining_checkpoint_of_either_style(tmp_path, style):
    """A checkpoint with cls/ heads and LAMB slots (as run_pretraining writes) is loaded.

    With learning rate 0 the fine-tuned encoder must equal the checkpoint exactly.
    """
    values = dict(TINY_GOOGLE_CONFIG)
    if style == "brightmart":
        values = {
            k: v for k, v in values.items() if k not in ("num_hidden_groups", "inner_group_num")
        }
        values["ln_type"] = "postln"
    config_file = write_config(tmp_path, values)
    config = modeling.AlbertConfig.from_json_file(config_file)
    pretrained = modeling.AlbertForPretraining(config, style=style, seed=7)
    tensors = {n: v.numpy() for n, v in pretrained.named_variables().items()}
    tensors.update({f"{n}/lamb_m": np.zeros_like(v) for n, v in list(tensors.items())[:3]})
    tensors["global_step"] = np.int64(1000)
    init = checkpoints.save_tensors(tensors, str(tmp_path / "pretrain" / "model.ckpt-1000"))
    rows = read_lines(shared_data("lcqmc_small/train.txt"))[:40]
    (tmp_path / "train.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    output_dir = tmp_path / "out"
    run(
        [
            "--task_name=lcqmc",
            f"--data_dir={tmp_path}",
            f"--vocab_file={shared_data('vocab.txt')}",
            f"--bert_config_file={config_file}",
            f"--init_checkpoint={init}",
            f"--output_dir={output_dir}",
            "--do_train",
            "--max_seq_length=32",
            "--train_batch_size=8",
            "--num_train_steps=2",
            "--learning_rate=0",
        ]
    )
    finetuned = checkpoints.read_tensors(output_dir)
    for name, value in tensors.items():
        if name.startswith("bert/") and "/lamb_" not in name:
            np.testing.assert_array_equal(finetuned[name], value, err_msg=name)
    assert not any(n.startswith("cls/") for n in finetuned)
    assert finetuned["output_weights"].shape == (2, 32) and int(finetuned["global_step"]) == 2


BAD_ROWS = "好的\t不错\t1\nonly\ttwo\n坏\t差\t7\n" + "\n".join(["甲\t乙\t0"] * 8) + "\n"


def test_bad_rows_are_reported_and_strict_stops(tmp_path, caplog):
    (tmp_path / "train.txt").write_text(BAD_ROWS, encoding="utf-8")
    config_file = write_config(
        tmp_path,
        dict(
            SMALL_CONFIG,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            embedding_size=16,
        ),
    )
    args = [
        "--task_name=lcqmc",
        f"--data_dir={tmp_path}",
        f"--vocab_file={shared_data('vocab.txt')}",
        f"--bert_config_file={config_file}",
        f"--output_dir={tmp_path / 'out'}",
        "--do_train",
        "--max_seq_length=16",
        "--train_batch_size=4",
        "--num_train_steps=1",
    ]
    with caplog.at_level("WARNING", logger="absl"):
        run(args)
    warning = " ".join(r.getMessage() for r in caplog.records if "malformed" in r.getMessage())
    assert "2 malformed rows" in warning
    assert f"{tmp_path / 'train.txt'}:2" in warning and f"{tmp_path / 'train.txt'}:3" in warning
    with pytest.raises(errors.AlbertError, match=r"train\.txt:2: malformed row"):
        run(args + ["--strict", f"--output_dir={tmp_path / 'out2'}"])


def test_user_mistakes_are_one_line_errors(tmp_path):
    config_file = write_config(tmp_path, dict(TINY_GOOGLE_CONFIG))
    base = [
        "--task_name=lcqmc",
        f"--vocab_file={shared_data('vocab.txt')}",
        f"--bert_config_file={config_file}",
        f"--output_dir={tmp_path / 'out'}",
    ]
    with pytest.raises(errors.AlbertError, match="nothing to do"):
        run(base)
    with pytest.raises(errors.AlbertError, match="exceeds max_position_embeddings=128"):
        run(base + ["--do_eval", "--max_seq_length=256"])
    with pytest.raises(errors.AlbertError, match="no classifier head"):
        init = modeling.AlbertModel(modeling.AlbertConfig.from_json_file(config_file))
        prefix = checkpoints.save_tensors(
            {n: v.numpy() for n, v in init.named_variables().items()}, str(tmp_path / "enc")
        )
        run(
            base
            + [
                "--do_eval",
                f"--init_checkpoint={prefix}",
                f"--data_dir={shared_data('lcqmc_small')}",
            ]
        )
    result = subprocess.run(
        [sys.executable, "run_classifier.py", "--task_name=nope", "--do_train"] + base[1:],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=600,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown task_name 'nope'")
