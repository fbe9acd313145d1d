"""modeling.py: configs, variable names and shapes of both styles, forward modes, checkpoints."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import modeling
import tokenization
import training
from errors import AlbertError
from tests import conftest

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.json"))


def small_config(style, **overrides):
    return conftest.small_config(style, **{"num_hidden_layers": 3, **overrides})


def random_inputs(batch=2, seq=12, vocab=97, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, vocab, size=(batch, seq)).astype(np.int32)
    mask = np.ones((batch, seq), np.int32)
    mask[-1, seq // 2 :] = 0  # padding in the last example
    segments = np.zeros((batch, seq), np.int32)
    segments[:, seq // 3 :] = 1
    return tf.constant(ids), tf.constant(mask), tf.constant(segments)


# -- configs ------------------------------------------------------------------------------------


def test_every_released_config_is_present_and_loads():
    names = {p.name for p in CONFIGS}
    for released in (
        "albert_config_tiny.json",
        "albert_config_base.json",
        "albert_config_large.json",
        "albert_config_xlarge.json",
        "albert_config_xxlarge.json",
        "albert_config_tiny_google.json",
        "albert_config_small_google.json",
        "albert_config_tiny_google_fast.json",
        "albert_config_base_google_fast.json",
    ):
        assert released in names
    for path in CONFIGS:
        config = modeling.AlbertConfig.from_json_file(path)
        raw = json.loads(path.read_text())
        expected_style = "brightmart" if "ln_type" in raw else "google"
        assert config.style == expected_style, path.name
        assert config.vocab_size == 21128
        # Round trip: every key of the released file comes back with the same value.
        round_trip = config.to_dict()
        for key, value in raw.items():
            assert round_trip[key] == value, (path.name, key)


def test_released_sizes():
    tiny = modeling.AlbertConfig.from_json_file(REPO / "configs/albert_config_tiny.json")
    assert (
        tiny.hidden_size,
        tiny.embedding_size,
        tiny.intermediate_size,
        tiny.num_hidden_layers,
        tiny.num_attention_heads,
    ) == (312, 128, 1248, 4, 12)
    xxlarge = modeling.AlbertConfig.from_json_file(REPO / "configs/albert_config_xxlarge.json")
    assert xxlarge.ln_type == "preln" and xxlarge.hidden_size == 4096
    small = modeling.AlbertConfig.from_json_file(REPO / "configs/albert_config_small_google.json")
    assert (small.hidden_size, small.num_hidden_layers, small.num_hidden_groups) == (384, 6, 1)


def test_missing_optional_keys_get_original_defaults(tmp_path):
    bm = tmp_path / "bm.json"
    bm.write_text(
        json.dumps(
            {
                "vocab_size": 100,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "ln_type": "postln",
            }
        )
    )
    config = modeling.AlbertConfig.from_json_file(bm)
    assert config.style == "brightmart"
    assert config.embedding_size == 128 and config.type_vocab_size == 16
    assert config.hidden_dropout_prob == 0.1 and config.max_position_embeddings == 512
    google = tmp_path / "g.json"
    google.write_text(json.dumps({"vocab_size": 100, "num_hidden_groups": 1}))
    config = modeling.AlbertConfig.from_json_file(google)
    assert config.style == "google"
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        4096,
        64,
        16384,
    )
    neither = tmp_path / "plain.json"
    neither.write_text(json.dumps({"vocab_size": 100, "hidden_size": 64, "num_attention_heads": 4}))
    assert modeling.AlbertConfig.from_json_file(neither).style is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a valid JSON config"),
        (json.dumps({"hidden_size": 64}), "vocab_size is required"),
        (
            json.dumps({"vocab_size": 10, "hidden_size": 30, "num_attention_heads": 4}),
            "not a multiple of num_attention_heads",
        ),
        (json.dumps({"vocab_size": 10, "ln_type": "sideln"}), "ln_type must be one of"),
        (
            json.dumps({"vocab_size": 10, "num_hidden_groups": 1, "hidden_act": "mish"}),
            "unsupported hidden_act",
        ),
    ],
)
def test_bad_configs_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(AlbertError, match=message) as info:
        modeling.AlbertConfig.from_json_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(AlbertError, match="config file not found"):
        modeling.AlbertConfig.from_json_file(tmp_path / "missing.json")


def test_vocab_size_check(tmp_path, vocab_file):
    config = modeling.AlbertConfig.from_json_file(REPO / "configs/albert_config_tiny.json")
    assert tokenization.check_vocab_size(vocab_file, config.vocab_size) == 21128
    for wrong in (97, 30000):  # both directions are errors
        with pytest.raises(AlbertError, match=f"vocab_size={wrong}"):
            tokenization.check_vocab_size(vocab_file, wrong)


# -- variable names and shapes (docs/formats.md, "Brightmart style", "Google style") ---------------------------------------------------

BRIGHTMART_TINY = {
    "bert/embeddings/word_embeddings": [21128, 128],
    "bert/embeddings/word_embeddings_2": [128, 312],
    "bert/embeddings/token_type_embeddings": [2, 312],
    "bert/embeddings/position_embeddings": [512, 312],
    "bert/embeddings/LayerNorm/beta": [312],
    "bert/embeddings/LayerNorm/gamma": [312],
    "bert/pooler/dense/kernel": [312, 312],
    "bert/pooler/dense/bias": [312],
    "cls/predictions/transform/dense/kernel": [312, 312],
    "cls/predictions/transform/dense/bias": [312],
    "cls/predictions/transform/LayerNorm/beta": [312],
    "cls/predictions/transform/LayerNorm/gamma": [312],
    "cls/predictions/output_bias": [21128],
    "cls/seq_relationship/output_weights": [2, 312],
    "cls/seq_relationship/output_bias": [2],
}
for _p in ("query", "key", "value"):
    BRIGHTMART_TINY[f"bert/encoder/layer_shared/attention/self/{_p}/kernel"] = [312, 312]
    BRIGHTMART_TINY[f"bert/encoder/layer_shared/attention/self/{_p}/bias"] = [312]
BRIGHTMART_TINY.update(
    {
        "bert/encoder/layer_shared/attention/output/dense/kernel": [312, 312],
        "bert/encoder/layer_shared/attention/output/dense/bias": [312],
        "bert/encoder/layer_shared/attention/output/LayerNorm/beta": [312],
        "bert/encoder/layer_shared/attention/output/LayerNorm/gamma": [312],
        "bert/encoder/layer_shared/intermediate/dense/kernel": [312, 1248],
        "bert/encoder/layer_shared/intermediate/dense/bias": [1248],
        "bert/encoder/layer_shared/output/dense/kernel": [1248, 312],
        "bert/encoder/layer_shared/output/dense/bias": [312],
        "bert/encoder/layer_shared/output/LayerNorm/beta": [312],
        "bert/encoder/layer_shared/output/LayerNorm/gamma": [312],
    }
)

_G = "bert/encoder/transformer/group_0/inner_group_0"
GOOGLE_TINY = {
    "bert/embeddings/word_embeddings": [21128, 128],
    "bert/embeddings/token_type_embeddings": [2, 128],
    "bert/embeddings/position_embeddings": [512, 128],
    "bert/embeddings/LayerNorm/beta": [128],
    "bert/embeddings/LayerNorm/gamma": [128],
    "bert/encoder/embedding_hidden_mapping_in/kernel": [128, 312],
    "bert/encoder/embedding_hidden_mapping_in/bias": [312],
    f"{_G}/attention_1/output/dense/kernel": [312, 312],
    f"{_G}/attention_1/output/dense/bias": [312],
    f"{_G}/LayerNorm/beta": [312],
    f"{_G}/LayerNorm/gamma": [312],
    f"{_G}/ffn_1/intermediate/dense/kernel": [312, 1248],
    f"{_G}/ffn_1/intermediate/dense/bias": [1248],
    f"{_G}/ffn_1/intermediate/output/dense/kernel": [1248, 312],
    f"{_G}/ffn_1/intermediate/output/dense/bias": [312],
    f"{_G}/LayerNorm_1/beta": [312],
    f"{_G}/LayerNorm_1/gamma": [312],
    "bert/pooler/dense/kernel": [312, 312],
    "bert/pooler/dense/bias": [312],
    "cls/predictions/transform/dense/kernel": [312, 128],
    "cls/predictions/transform/dense/bias": [128],
    "cls/predictions/transform/LayerNorm/beta": [128],
    "cls/predictions/transform/LayerNorm/gamma": [128],
    "cls/predictions/output_bias": [21128],
    "cls/seq_relationship/output_weights": [2, 312],
    "cls/seq_relationship/output_bias": [2],
}
for _p in ("query", "key", "value"):
    GOOGLE_TINY[f"{_G}/attention_1/self/{_p}/kernel"] = [312, 312]
    GOOGLE_TINY[f"{_G}/attention_1/self/{_p}/bias"] = [312]


@pytest.mark.parametrize(
    "config_name, expected",
    [
        ("albert_config_tiny.json", BRIGHTMART_TINY),
        ("albert_config_tiny_google.json", GOOGLE_TINY),
    ],
)
def test_variable_names_and_shapes_match_the_released_checkpoints(config_name, expected):
    config = modeling.AlbertConfig.from_json_file(REPO / "configs" / config_name)
    model = modeling.AlbertForPretraining(config)
    shapes = {name: list(v.shape) for name, v in model.named_variables().items()}
    assert shapes == expected
    params = sum(int(np.prod(s)) for n, s in shapes.items() if not n.startswith("cls/"))
    if config.style == "brightmart":
        assert (
            4.1e6 < params < 4.25e6
        )  # docs/formats.md#brightmart-style: tiny has 4.18M parameters without heads


def test_google_groups_and_inner_groups():
    config = small_config("google", num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2)
    model = modeling.AlbertModel(config, seed=0)
    scopes = {
        n.split("/")[3] + "/" + n.split("/")[4]
        for n in model.named_variables()
        if "/transformer/" in n
    }
    assert scopes == {
        "group_0/inner_group_0",
        "group_0/inner_group_1",
        "group_1/inner_group_0",
        "group_1/inner_group_1",
    }
    # Google's assignment: layer i uses group int(i / L * G).
    assert [s[0].split("/")[3] for s in modeling.layer_scopes(config, "google")] == [
        "group_0",
        "group_0",
        "group_1",
        "group_1",
    ]
    out = model(*random_inputs())
    assert len(out["all_encoder_layers"]) == 4
    assert out["embedding_output"].shape == (2, 12, 16)


def test_brightmart_unshared_layers_and_preln():
    config = small_config("brightmart", share_parameter_across_layers=False, ln_type="preln")
    model = modeling.AlbertModel(config, seed=0)
    names = model.named_variables()
    assert "bert/encoder/layer_2/attention/output/LayerNorm/gamma" in names
    assert not any("layer_shared" in n for n in names)
    out = model(*random_inputs())
    assert out["embedding_output"].shape == (2, 12, 32)
    with pytest.raises(AlbertError, match="preln"):
        modeling.AlbertModel(small_config("google", ln_type="preln"))


# -- forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["google", "brightmart"])
def test_eager_function_and_xla_agree(style):
    model = modeling.AlbertForPretraining(small_config(style), seed=3)
    ids, mask, segments = random_inputs()
    positions = tf.constant([[1, 2, 5], [0, 3, 4]], tf.int32)
    eager = model(ids, mask, segments, positions)
    graph = tf.function(model.__call__)(ids, mask, segments, positions)
    xla = tf.function(model.__call__, jit_compile=True)(ids, mask, segments, positions)
    for key in ("sequence_output", "pooled_output", "masked_lm_log_probs", "sentence_order_logits"):
        np.testing.assert_allclose(graph[key], eager[key], atol=1e-5)
        np.testing.assert_allclose(xla[key], eager[key], atol=1e-4)
    # log-probabilities are normalised
    np.testing.assert_allclose(tf.reduce_logsumexp(eager["masked_lm_log_probs"], -1), 0, atol=1e-5)


def test_padding_does_not_change_real_tokens():
    model = modeling.AlbertModel(small_config("google"), seed=1)
    ids, _, _ = random_inputs(batch=1, seq=8)
    short = model(ids[:, :5])["sequence_output"]
    padded_ids = tf.concat([ids[:, :5], tf.zeros([1, 3], tf.int32)], axis=1)
    padded_mask = tf.constant([[1, 1, 1, 1, 1, 0, 0, 0]], tf.int32)
    padded = model(padded_ids, padded_mask)["sequence_output"]
    np.testing.assert_allclose(padded[:, :5], short, atol=1e-5)


def ragged_inputs(seed=0):
    """A batch with very different lengths, one of a single token, and padding mid-batch."""
    lengths = np.array([12, 3, 9, 1, 7])
    rng = np.random.RandomState(seed)
    mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.randint(1, 97, size=mask.shape).astype(np.int32) * mask
    segments = ((np.arange(12)[None] > lengths[:, None] // 2) * mask).astype(np.int32)
    return tf.constant(ids), tf.constant(mask), tf.constant(segments)


def _outputs_loss_gradients(model, forward, loss_of):
    """(forward(), loss_of(forward()), d loss / d every variable: zeros where unused)."""
    variables = list(model.named_variables().values())
    with tf.GradientTape() as tape:
        outputs = forward()
        loss = loss_of(outputs)
    grads = tape.gradient(loss, variables)
    return (
        outputs,
        loss,
        [
            np.zeros(v.shape) if g is None else tf.convert_to_tensor(g).numpy()
            for g, v in zip(grads, variables, strict=True)
        ],
    )


SKIP_PADDING_CASES = [("google", {}), ("brightmart", {}), ("brightmart", {"ln_type": "preln"})]


@pytest.mark.parametrize("style,overrides", SKIP_PADDING_CASES)
def test_skip_padding_matches_the_padded_layout(style, overrides):
    """Real tokens (outputs and gradients) are what the padded layout, itself checked against
    Hugging Face, computes; padding rows are zero."""
    model = modeling.AlbertModel(small_config(style, **overrides), seed=6)
    ids, mask, segments = ragged_inputs()
    real = tf.cast(mask, tf.float32)[..., None]
    weights = tf.random.stateless_normal([5, 12, model.config.hidden_size], [1, 2])

    def run(skip_padding):
        return _outputs_loss_gradients(
            model,
            lambda: model(ids, mask, segments, skip_padding=skip_padding),
            lambda out: tf.reduce_sum(out["sequence_output"] * real * weights),
        )

    padded, padded_loss, padded_grads = run(False)
    packed, packed_loss, packed_grads = run(True)
    for key in ("sequence_output", "embedding_output"):
        np.testing.assert_allclose(packed[key] * real, padded[key] * real, atol=2e-6)
        assert np.abs(packed[key] * (1 - real)).max() == 0
    np.testing.assert_allclose(packed["pooled_output"], padded["pooled_output"], atol=2e-6)
    np.testing.assert_allclose(packed_loss, padded_loss, rtol=1e-5)
    for a, b in zip(packed_grads, padded_grads, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("style,overrides", SKIP_PADDING_CASES)
@pytest.mark.parametrize("skip_padding", [False, True])
def test_pooled_only_matches_the_full_encoder(style, overrides, skip_padding):
    """The classifier's path (last layer for [CLS] alone, in training, inference and exports)
    gives the logits and the gradients of the full encoder, in both token layouts, in a
    tf.function with any shape."""
    model = modeling.AlbertForClassification(small_config(style, **overrides), num_labels=3, seed=7)
    ids, mask, segments = ragged_inputs(seed=1)

    def run(pooled_only):
        return _outputs_loss_gradients(
            model,
            lambda: model.logits_from_pooled(
                model.encoder(
                    ids, mask, segments, skip_padding=skip_padding, pooled_only=pooled_only
                )["pooled_output"]
            ),
            lambda logits: tf.reduce_sum(tf.square(logits)),
        )

    full_logits, _, full_grads = run(False)
    logits, _, grads = run(True)
    np.testing.assert_allclose(logits, full_logits, atol=2e-6)
    np.testing.assert_allclose(model(ids, mask, segments), full_logits, atol=2e-6)  # inference
    for a, b in zip(grads, full_grads, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5 * max(1.0, np.abs(b).max()))

    # model(training=True) takes this path; without dropout it is the inference output.
    spec = tf.TensorSpec([None, None], tf.int32)
    train_call = tf.function(
        lambda a, b, c: model(a, b, c, training=True), input_signature=[spec] * 3
    )
    model.set_skip_padding(skip_padding)
    no_dropout = model.config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.encoder.config, model.classifier_dropout = no_dropout, 0.0
    np.testing.assert_allclose(train_call(ids, mask, segments), full_logits, atol=2e-6)
    np.testing.assert_allclose(
        train_call(ids[:2, :5], mask[:2, :5], segments[:2, :5]),
        model(ids[:2, :5], mask[:2, :5], segments[:2, :5]),
        atol=2e-6,
    )


def test_trainer_keeps_the_padded_layout_under_xla():
    model = modeling.AlbertForClassification(small_config("google"), num_labels=2, seed=8)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    training.Trainer(strategy, model, None, None, None)
    assert model.encoder.skip_padding_in_training
    training.Trainer(strategy, model, None, None, None, use_xla=True)
    assert not model.encoder.skip_padding_in_training


def test_dropout_only_in_training():
    config = small_config("google", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model = modeling.AlbertForClassification(config, num_labels=3, seed=2)
    ids, mask, segments = random_inputs()
    a = model(ids, mask, segments, training=False)
    b = model(ids, mask, segments, training=False)
    np.testing.assert_array_equal(a, b)
    c = model(ids, mask, segments, training=True)
    assert np.abs(c.numpy() - a.numpy()).max() > 1e-3


def test_sequence_longer_than_max_position_embeddings():
    model = modeling.AlbertModel(small_config("google"))
    with pytest.raises(AlbertError, match="exceeds max_position_embeddings 40"):
        model(tf.ones([1, 41], tf.int32))
    dynamic = tf.function(model.__call__, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_position_embeddings"):
        dynamic(tf.ones([1, 41], tf.int32))


def test_bfloat16_compute_is_close_to_float32():
    model = modeling.AlbertForPretraining(small_config("brightmart"), seed=4)
    inputs = random_inputs()
    positions = tf.constant([[1, 2], [3, 4]], tf.int32)
    fp32 = model(*inputs, positions)
    model.set_compute_dtype(tf.bfloat16)
    bf16 = model(*inputs, positions)
    assert bf16["sequence_output"].dtype == tf.float32
    np.testing.assert_allclose(bf16["pooled_output"], fp32["pooled_output"], atol=0.05)
    np.testing.assert_allclose(bf16["masked_lm_log_probs"], fp32["masked_lm_log_probs"], atol=0.15)


def test_runs_inside_a_distribution_strategy():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = modeling.AlbertForClassification(small_config("google"), num_labels=2, seed=5)
    ids, mask, segments = random_inputs()
    logits = strategy.run(tf.function(lambda a, b, c: model(a, b, c)), args=(ids, mask, segments))
    np.testing.assert_allclose(logits, model(ids, mask, segments), atol=1e-6)


# -- checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["google", "brightmart"])
def test_checkpoint_round_trip_ignores_slots(tmp_path, style):
    config = small_config(style)
    model = modeling.AlbertForPretraining(config, seed=6)
    tensors = dict(model.named_variables())
    for name, variable in list(tensors.items()):  # what a training checkpoint also holds
        tensors[name + "/adam_m"] = tf.zeros_like(variable)
        tensors[name + "/lamb_v"] = tf.zeros_like(variable)
    tensors["global_step"] = tf.constant(7, tf.int64)
    prefix = checkpoints.save_tensors(tensors, tmp_path / "model.ckpt-7")
    stored = checkpoints.checkpoint_variable_names(prefix)
    assert stored["global_step"] == []
    assert checkpoints.detect_checkpoint_style(tmp_path / "model.ckpt-7.index") == style

    restored = modeling.AlbertForPretraining(config, seed=99)
    report = checkpoints.load_checkpoint(restored, prefix)
    assert len(report.loaded) == len(model.named_variables()) and not report.missing_allowed
    ids, mask, segments = random_inputs()
    positions = tf.constant([[1, 2], [3, 4]], tf.int32)
    np.testing.assert_array_equal(
        restored(ids, mask, segments, positions)["masked_lm_log_probs"],
        model(ids, mask, segments, positions)["masked_lm_log_probs"],
    )

    # A classifier starting from this pretraining checkpoint: heads stay freshly initialised.
    classifier = modeling.AlbertForClassification(config, num_labels=2)
    report = checkpoints.load_checkpoint(classifier, prefix)
    assert sorted(report.missing_allowed) == ["output_bias", "output_weights"]

    # Directory with a `checkpoint` state file resolves to the latest checkpoint.
    tf.compat.v1.train.update_checkpoint_state(str(tmp_path), str(prefix))
    assert checkpoints.resolve_checkpoint_path(tmp_path) == str(prefix)


def test_style_resolution(tmp_path):
    google = small_config("google")
    prefix = checkpoints.save_tensors(
        modeling.AlbertModel(google).named_variables(), tmp_path / "g.ckpt"
    )
    brightmart_config = small_config("brightmart")
    assert checkpoints.resolve_style(brightmart_config) == "brightmart"
    assert checkpoints.resolve_style(brightmart_config, init_checkpoint=prefix) == "google"
    assert checkpoints.resolve_style(brightmart_config, prefix, style_flag="brightmart") == (
        "brightmart"
    )
    with pytest.raises(AlbertError, match="--style"):
        checkpoints.resolve_style(google, style_flag="bert")


def test_checkpoint_mismatch_errors(tmp_path):
    prefix = checkpoints.save_tensors(
        modeling.AlbertModel(small_config("google"), seed=0).named_variables(), tmp_path / "g.ckpt"
    )
    # Wrong style for the checkpoint: the error names the cause and what differs.
    with pytest.raises(AlbertError) as info:
        checkpoints.load_checkpoint(modeling.AlbertModel(small_config("brightmart")), prefix)
    message = str(info.value)
    assert "google-style but the model was built brightmart-style" in message
    assert "missing" in message and "unexpected" in message and "mis-shaped" in message
    assert "\n" not in message
    # Wrong sizes: a bigger config for a small checkpoint.
    with pytest.raises(AlbertError, match="hidden_size=64 but the checkpoint 32"):
        checkpoints.load_checkpoint(
            modeling.AlbertModel(small_config("google", hidden_size=64)), prefix
        )
    # Missing checkpoint.
    with pytest.raises(AlbertError, match="checkpoint not found"):
        checkpoints.load_checkpoint(
            modeling.AlbertModel(small_config("google")), tmp_path / "nothing.ckpt"
        )
    # Truncated data file.
    data_file = str(prefix) + ".data-00000-of-00001"
    truncated = tmp_path / "t.ckpt"
    shutil.copy(str(prefix) + ".index", str(truncated) + ".index")
    with open(data_file, "rb") as src, open(str(truncated) + ".data-00000-of-00001", "wb") as dst:
        dst.write(src.read()[: os.path.getsize(data_file) // 2])
    with pytest.raises(AlbertError, match="truncated or corrupt"):
        checkpoints.load_checkpoint(modeling.AlbertModel(small_config("google")), truncated)


def test_interchange_with_tf1_saver(tmp_path):
    """Files written by the original code's tf.compat.v1 Saver load, and ours load back in TF1."""
    config = small_config("brightmart")
    reference = modeling.AlbertForClassification(config, num_labels=2, seed=8)
    values = {name: v.numpy() for name, v in reference.named_variables().items()}

    # Write the way TF1 albert_zh did: graph-mode variables named by scope, plus slots and step.
    graph = tf.Graph()
    with graph.as_default():
        tf1_vars = {
            name: tf.compat.v1.get_variable(name, initializer=value)
            for name, value in values.items()
        }
        for name, value in values.items():
            tf.compat.v1.get_variable(name + "/adam_m", initializer=np.zeros_like(value))
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf1_prefix = saver.save(session, str(tmp_path / "tf1" / "model.ckpt"), global_step=3)

    restored = modeling.AlbertForClassification(config, num_labels=2, seed=1)
    checkpoints.load_checkpoint(restored, tf1_prefix)
    inputs = random_inputs()
    np.testing.assert_array_equal(restored(*inputs), reference(*inputs))

    # And the other way: a TF1 Saver restores our file by name.
    ours = checkpoints.save_tensors(restored.named_variables(), tmp_path / "ours" / "model.ckpt")
    graph = tf.Graph()
    with graph.as_default():
        targets = {
            name: tf.compat.v1.get_variable(name, shape=value.shape)
            for name, value in values.items()
        }
        saver = tf.compat.v1.train.Saver(var_list=targets)
        with tf.compat.v1.Session() as session:
            saver.restore(session, ours)
            for name, variable in targets.items():
                np.testing.assert_array_equal(session.run(variable), values[name])
    assert tf1_vars  # names were created exactly as given
