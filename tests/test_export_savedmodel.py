"""export_savedmodel.py: signatures, dynamic shapes, numerics and user errors.

The SavedModel is checked against the eager model it was exported from (1e-5) and, for the
brightmart pre-LN layout that HF cannot hold, against an independent NumPy forward (1e-4).
HF parity of the other layouts is in test_hf_parity.py.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import export_savedmodel
from tests import export_test_utils as u
from tests.conftest import REPO_ROOT

# name -> (style, config overrides, has cls/ heads, classifier labels)
CASES = {
    "brightmart_postln": ("brightmart", {}, True, None),
    "brightmart_preln": ("brightmart", {"ln_type": "preln"}, True, 3),
    "google_inner2_classifier": ("google", {"inner_group_num": 2}, False, 2),
}
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """case name -> dict(config, ckpt, models, weights, savedmodel); exported lazily, once."""
    cache = {}

    def get(name):
        if name not in cache:
            case = u.checkpoint_case(tmp_path_factory, name, CASES[name], seed=len(cache) + 10)
            case["weights"] = {}
            for model in case["models"]:
                if model is not None:
                    case["weights"].update(
                        {k: v.numpy() for k, v in model.named_variables().items()}
                    )
            export_dir = str(case["directory"] / "savedmodel")
            case["names"] = export_savedmodel.export_savedmodel(
                case["config"], case["ckpt"], export_dir
            )
            case["loaded"] = tf.saved_model.load(export_dir)
            cache[name] = case
        return cache[name]

    return get


def _call(signature, ids, mask, segments, **extra):
    extra = {k: tf.constant(v) for k, v in extra.items()}
    return signature(
        input_ids=tf.constant(ids),
        input_mask=tf.constant(mask),
        segment_ids=tf.constant(segments),
        **extra,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_signatures_have_the_documented_names_dtypes_and_dynamic_shapes(exported, name):
    case = exported(name)
    _, _, pretraining, num_labels = CASES[name]
    signatures = case["loaded"].signatures
    expected = (
        {"serving_default"}
        | ({"pretraining"} if pretraining else set())
        | ({"classifier"} if num_labels else set())
    )
    assert set(signatures) == expected == set(case["names"])
    H, V = case["config"].hidden_size, case["config"].vocab_size
    outputs = {
        "serving_default": {"sequence_output": [None, None, H], "pooled_output": [None, H]},
        "pretraining": {"masked_lm_log_probs": [None, None, V], "sentence_order_logits": [None, 2]},
        "classifier": {"probabilities": [None, num_labels]},
    }
    for signature_name, signature in signatures.items():
        inputs = signature.structured_input_signature[1]
        expected_inputs = INPUT_NAMES + (
            ("masked_lm_positions",) if signature_name == "pretraining" else ()
        )
        assert sorted(inputs) == sorted(expected_inputs)
        for spec in inputs.values():
            assert spec.dtype == tf.int32 and spec.shape.as_list() == [None, None]
        got = {k: v.shape.as_list() for k, v in signature.structured_outputs.items()}
        assert got == outputs[signature_name]
        assert all(v.dtype == tf.float32 for v in signature.structured_outputs.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_serving_default_matches_the_eager_model_for_two_shapes(exported, name):
    case = exported(name)
    encoder = case["models"][0]
    for batch, seq in ((1, 5), (3, 17)):
        ids, mask, segments = u.random_inputs(batch, seq, seed=batch)
        served = _call(case["loaded"].signatures["serving_default"], ids, mask, segments)
        eager = encoder(ids, mask, segments)
        assert served["sequence_output"].shape == (batch, seq, case["config"].hidden_size)
        for key in ("sequence_output", "pooled_output"):
            np.testing.assert_allclose(served[key].numpy(), eager[key].numpy(), atol=1e-5, rtol=0)


def test_pretraining_and_classifier_signatures_match_the_eager_heads(exported):
    case = exported("brightmart_postln")
    ids, mask, segments = u.random_inputs(2, 9, seed=4)
    positions = np.array([[1, 2, 7], [0, 4, 4]], np.int32)
    served = _call(
        case["loaded"].signatures["pretraining"], ids, mask, segments, masked_lm_positions=positions
    )
    eager = case["models"][1](ids, mask, segments, positions)
    # Log-probs reach -30, where float32 spacing is ~2e-6: graph vs eager rounding differs.
    for key, atol in (("masked_lm_log_probs", 1e-4), ("sentence_order_logits", 1e-5)):
        np.testing.assert_allclose(served[key].numpy(), eager[key].numpy(), atol=atol, rtol=0)

    case = exported("google_inner2_classifier")
    served = _call(case["loaded"].signatures["classifier"], ids, mask, segments)
    eager = tf.nn.softmax(case["models"][2](ids, mask, segments))
    np.testing.assert_allclose(served["probabilities"].numpy(), eager.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(served["probabilities"].numpy().sum(-1), 1.0, atol=1e-6)


def test_preln_savedmodel_matches_numpy_reference(exported):
    """Brightmart pre-LN (no HF equivalent): SavedModel and eager model vs an independent NumPy
    forward, including the `loss/LayerNorm` of the pre-LN classifier."""
    case = exported("brightmart_preln")
    config, weights, signatures = case["config"], case["weights"], case["loaded"].signatures
    ids, mask, segments = u.random_inputs(3, 13, seed=8)
    positions = np.array([[1, 5, 2], [0, 3, 9], [12, 2, 4]], np.int32)
    sequence, pooled = u.numpy_brightmart_forward(weights, config, ids, mask, segments)
    log_probs, sop = u.numpy_brightmart_pretraining(weights, config, ids, mask, segments, positions)
    probs = u.numpy_brightmart_classifier_probs(weights, config, ids, mask, segments)
    served = _call(signatures["serving_default"], ids, mask, segments)
    eager = case["models"][0](ids, mask, segments)
    heads = _call(signatures["pretraining"], ids, mask, segments, masked_lm_positions=positions)
    classified = _call(signatures["classifier"], ids, mask, segments)
    for ours in (served, eager):
        np.testing.assert_allclose(ours["sequence_output"].numpy(), sequence, atol=1e-4, rtol=0)
        np.testing.assert_allclose(ours["pooled_output"].numpy(), pooled, atol=1e-4, rtol=0)
    np.testing.assert_allclose(heads["masked_lm_log_probs"].numpy(), log_probs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(heads["sentence_order_logits"].numpy(), sop, atol=1e-4, rtol=0)
    np.testing.assert_allclose(classified["probabilities"].numpy(), probs, atol=1e-4, rtol=0)
    # Pre-LN has no final LayerNorm: the output is not normalised, unlike post-LN.
    assert np.abs(sequence.std(-1) - 1).max() > 0.1


def test_sequence_longer_than_max_position_embeddings_fails_clearly(exported):
    case = exported("google_inner2_classifier")
    limit = case["config"].max_position_embeddings
    ids, mask, segments = u.random_inputs(2, limit, seed=1)
    _call(case["loaded"].signatures["serving_default"], ids, mask, segments)  # the limit is fine
    ids, mask, segments = u.random_inputs(2, limit + 1, seed=1)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=f"sequence length exceeds max_position_embeddings {limit}",
    ):
        _call(case["loaded"].signatures["serving_default"], ids, mask, segments)


def test_cli_exports_and_reports_bad_inputs(tmp_path):
    config = u.small_config("google", num_hidden_groups=2)
    good = tmp_path / "good"
    good.mkdir()
    ckpt, config_path, (encoder, _, _) = u.write_checkpoint(good, config, "google", True, None)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    bad_ckpt, _, _ = u.write_checkpoint(truncated, config, "google", True, None)
    data_file = bad_ckpt + ".data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)
    script = "export_savedmodel.py"
    results = u.run_clis(
        [
            [
                script,
                "--bert_config_file",
                config_path,
                "--init_checkpoint",
                ckpt,
                "--export_dir",
                str(tmp_path / "sm"),
                "--style",
                "google",
            ],
            [
                script,
                "--albert_config_file",
                config_path,
                "--init_checkpoint",
                str(tmp_path / "missing.ckpt"),
                "--export_dir",
                str(tmp_path / "sm1"),
            ],
            [
                script,
                "--albert_config_file",
                config_path,
                "--init_checkpoint",
                bad_ckpt,
                "--export_dir",
                str(tmp_path / "sm2"),
            ],
            [
                script,
                "--albert_config_file",
                str(REPO_ROOT / "configs/albert_config_tiny_google.json"),
                "--init_checkpoint",
                ckpt,
                "--export_dir",
                str(tmp_path / "sm3"),
            ],
        ]
    )
    code, stdout, stderr = results[0]
    assert code == 0, stderr
    assert '"signatures": ["pretraining", "serving_default"]' in stdout
    u.assert_one_line_error(results[1], "checkpoint not found", "missing.ckpt.index")
    u.assert_one_line_error(results[2], "truncated or corrupt")
    u.assert_one_line_error(results[3], "does not match the model", "hidden_size=312")
    for failed in ("sm1", "sm2", "sm3"):
        assert not (tmp_path / failed).exists()

    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    ids, mask, segments = u.random_inputs(2, 6)
    served = _call(loaded.signatures["serving_default"], ids, mask, segments)
    np.testing.assert_allclose(
        served["pooled_output"].numpy(),
        encoder(ids, mask, segments)["pooled_output"].numpy(),
        atol=1e-5,
        rtol=0,
    )
