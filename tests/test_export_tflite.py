"""export_tflite.py: .tflite outputs vs the TF model, fixed and dynamic shapes, quantization, errors.

A small random model per style is saved as a checkpoint (with pretraining and classifier heads);
the exported file runs in the LiteRT interpreter and is compared with the original in-memory
model, which never went through export_tflite.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import export_tflite
import modeling
from errors import AlbertError
from tests import conftest
from tests.conftest import REPO_ROOT

FP32_TOLERANCE = 1e-4
NUM_LABELS = 3
# The heads of the checkpoint below; the token classifier's tests are in test_ner_export.py.
SENTENCE_HEADS = ("encoder", "classifier", "pretraining")


def small_config(style):
    return conftest.small_config(style, vocab_size=200, hidden_size=64, intermediate_size=128)


@pytest.fixture(scope="module", params=["google", "brightmart"])
def saved_model(request, tmp_path_factory):
    """(style, config, checkpoint prefix, reference pretraining model, reference classifier)."""
    style = request.param
    config = small_config(style)
    pretraining = modeling.AlbertForPretraining(config, style=style, seed=11)
    classifier = modeling.AlbertForClassification(
        config, NUM_LABELS, style=style, seed=12, classifier_dropout=0.0
    )
    # Give the classifier the same encoder weights, so one checkpoint holds all heads.
    for name, variable in classifier.encoder.named_variables().items():
        variable.assign(pretraining.named_variables()[name])
    tensors = dict(pretraining.named_variables())
    tensors.update(classifier.head_weights)
    directory = tmp_path_factory.mktemp(f"ckpt_{style}")
    prefix = checkpoints.save_tensors(tensors, str(directory / "model.ckpt"))
    config_file = directory / "config.json"
    config_file.write_text(config.to_json_string())
    return style, config, prefix, pretraining, classifier, config_file


def reference_outputs(head, pretraining, classifier, inputs):
    """What the in-memory TF model computes for the head (no export code involved)."""
    ids, mask, segments = (tf.constant(inputs[n]) for n in export_tflite.INPUT_NAMES)
    if head == "classifier":
        return {"probabilities": tf.nn.softmax(classifier(ids, mask, segments)).numpy()}
    if head == "pretraining":
        out = pretraining(ids, mask, segments, tf.constant(inputs["masked_lm_positions"]))
        return {k: out[k].numpy() for k in ("masked_lm_log_probs", "sentence_order_logits")}
    out = pretraining.encoder(ids, mask, segments)
    return {k: out[k].numpy() for k in ("sequence_output", "pooled_output")}


def assert_close(actual, expected, atol):
    assert set(actual) == set(expected)
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("head", SENTENCE_HEADS)
def test_fp32_fixed_shape_matches_tf(saved_model, head, tmp_path):
    style, config, prefix, pretraining, classifier, _ = saved_model
    path = tmp_path / f"{head}.tflite"
    export_tflite.export_tflite(
        config, prefix, str(path), head=head, max_seq_length=24, max_predictions_per_seq=5
    )
    description = export_tflite.describe(path)
    expected_inputs = {n: [[1, 24], "int32"] for n in export_tflite.INPUT_NAMES}
    if head == "pretraining":
        expected_inputs["masked_lm_positions"] = [[1, 5], "int32"]
    assert description["inputs"] == expected_inputs
    assert sorted(description["outputs"]) == sorted(export_tflite.OUTPUT_NAMES[head])

    inputs = export_tflite.example_inputs(head, config, seq_length=24, max_predictions=5, seed=1)
    inputs["input_mask"][0, 18:] = 0  # padding must be masked the same way
    actual = export_tflite.load_runner(path)(**inputs)
    assert_close(actual, reference_outputs(head, pretraining, classifier, inputs), FP32_TOLERANCE)


@pytest.mark.parametrize("head", SENTENCE_HEADS)
def test_fp32_dynamic_shape_matches_tf_at_several_shapes(saved_model, head, tmp_path):
    style, config, prefix, pretraining, classifier, _ = saved_model
    path = tmp_path / f"{head}_dynamic.tflite"
    export_tflite.export_tflite(config, prefix, str(path), head=head, dynamic=True)
    description = export_tflite.describe(path)
    assert description["inputs"]["input_ids"] == [[-1, -1], "int32"]
    runner = export_tflite.load_runner(path)
    for batch, seq, seed in ((1, 7, 2), (3, 40, 3), (2, 13, 4)):  # 40 = max_position_embeddings
        inputs = export_tflite.example_inputs(
            head, config, batch_size=batch, seq_length=seq, max_predictions=3, seed=seed
        )
        expected = reference_outputs(head, pretraining, classifier, inputs)
        assert_close(runner(**inputs), expected, FP32_TOLERANCE)


# Quantization and the command line do not depend on the style: one style each is enough.
@pytest.mark.parametrize("saved_model", ["google"], indirect=True)
@pytest.mark.parametrize("quantize", ["int8", "float16"])
def test_quantized_files_are_smaller_and_stay_close(saved_model, quantize, tmp_path):
    style, config, prefix, pretraining, classifier, _ = saved_model
    sizes = {}
    for mode in ("none", quantize):
        path = tmp_path / f"encoder_{mode}.tflite"
        export_tflite.export_tflite(
            config, prefix, str(path), head="encoder", quantize=mode, max_seq_length=24
        )
        sizes[mode] = os.path.getsize(path)
    # Weights dominate the file: int8 stores them in a quarter, float16 in half the bytes.
    assert sizes[quantize] < {"int8": 0.45, "float16": 0.65}[quantize] * sizes["none"]

    inputs = export_tflite.example_inputs("encoder", config, seq_length=24, seed=5)
    actual = export_tflite.load_runner(path)(**inputs)
    expected = reference_outputs("encoder", pretraining, classifier, inputs)
    # LayerNorm outputs are O(1); weight rounding moves them by a few hundredths at most.
    tolerance = {"int8": 0.15, "float16": 0.01}[quantize]
    assert_close(actual, expected, tolerance)
    assert not np.allclose(actual["sequence_output"], expected["sequence_output"], atol=1e-7)

    path = tmp_path / f"classifier_{quantize}.tflite"
    export_tflite.export_tflite(
        config, prefix, str(path), head="classifier", quantize=quantize, max_seq_length=24
    )
    inputs = export_tflite.example_inputs("classifier", config, seq_length=24, seed=6)
    expected = reference_outputs("classifier", pretraining, classifier, inputs)
    assert_close(export_tflite.load_runner(path)(**inputs), expected, 0.02)


@pytest.mark.parametrize("saved_model", ["google"], indirect=True)
def test_missing_head_is_an_error(saved_model, tmp_path):
    style, config, prefix, pretraining, _, _ = saved_model
    encoder_only = checkpoints.save_tensors(
        dict(pretraining.encoder.named_variables()), str(tmp_path / "encoder.ckpt")
    )
    for head in ("classifier", "pretraining"):
        with pytest.raises(AlbertError, match="has no .*head"):
            export_tflite.export_tflite(
                config, encoder_only, str(tmp_path / "x.tflite"), head=head, max_seq_length=24
            )


def run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "export_tflite.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=900,
    )


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_missing_checkpoint_is_an_error(saved_model, tmp_path):
    _, config, _, _, _, _ = saved_model
    with pytest.raises(AlbertError, match="checkpoint not found: .*nope"):
        export_tflite.export_tflite(
            config,
            str(tmp_path / "nope" / "model.ckpt"),
            str(tmp_path / "x.tflite"),
            max_seq_length=16,
        )


@pytest.mark.parametrize("saved_model", ["google"], indirect=True)
def test_cli_too_long_sequence_exits_2_with_one_line(saved_model, tmp_path):
    style, config, prefix, _, _, config_file = saved_model
    result = run_cli(
        "--albert_config_file",
        str(config_file),
        "--init_checkpoint",
        prefix,
        "--output_file",
        str(tmp_path / "x.tflite"),
        "--max_seq_length",
        "41",
    )
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "error: --max_seq_length=41 exceeds max_position_embeddings=40 of the config: "
        "use --max_seq_length <= 40"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("saved_model", ["brightmart"], indirect=True)
def test_cli_writes_file_and_reports_signature(saved_model, tmp_path):
    style, config, prefix, _, _, config_file = saved_model
    output = tmp_path / "clf.tflite"
    result = run_cli(
        "--albert_config_file",
        str(config_file),
        "--init_checkpoint",
        prefix,
        "--output_file",
        str(output),
        "--head",
        "classifier",
        "--max_seq_length",
        "16",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["outputs"] == {"probabilities": [[1, NUM_LABELS], "float32"]}
    assert summary["max_abs_diff_vs_tf"]["probabilities"] < FP32_TOLERANCE
    assert output.exists()
