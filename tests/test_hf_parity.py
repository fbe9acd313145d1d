"""convert_albert_tf_checkpoint_to_pytorch.py: our TF models vs HF transformers (PyTorch).

Random models of every supported layout are saved in the original checkpoint naming,
converted, and loaded with transformers' AlbertModel / AlbertForPreTraining /
AlbertForSequenceClassification; outputs must agree within 1e-4 (float32, absolute) on padded
two-segment inputs. Brightmart pre-LN has no HF equivalent: the converter must refuse it.
"""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import convert_albert_tf_checkpoint_to_pytorch as converter
import export_savedmodel
import modeling
from errors import AlbertError
from tests import export_test_utils as u
from tests.conftest import REPO_ROOT, shared_data

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4

# name -> (style, config overrides, has cls/ heads, classifier labels)
CASES = {
    "brightmart_postln": ("brightmart", {}, True, None),
    # albert_zh test_changes.py option: one `layer_{i}` scope per layer -> one HF group each.
    "brightmart_unshared": ("brightmart", {"share_parameter_across_layers": False}, True, None),
    "brightmart_classifier": ("brightmart", {}, False, 3),
    "google_groups2": ("google", {"num_hidden_groups": 2, "num_hidden_layers": 4}, True, None),
    # More groups than layers: Google's code only creates groups 0 and 2; HF needs 0..3.
    "google_groups4_layers2": ("google", {"num_hidden_groups": 4}, True, None),
    "google_inner2_e_eq_h": ("google", {"inner_group_num": 2, "embedding_size": 32}, True, None),
    "google_classifier": ("google", {}, False, 4),
}
HEAD_PREFIXES = ("predictions.", "sop_classifier.", "classifier.")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """case name -> dict(config, style, ckpt, hf_dir, our models); built lazily, once."""
    cache = {}

    def get(name):
        if name not in cache:
            case = u.checkpoint_case(
                tmp_path_factory,
                name,
                CASES[name],
                seed=len(cache) + 1,
                with_optimizer_slots=name == "google_groups2",
            )
            case["hf_dir"] = str(case["directory"] / "hf")
            case["summary"] = converter.convert(
                case["config"], case["ckpt"], case["hf_dir"], vocab_file=_vocab()
            )
            cache[name] = case
        return cache[name]

    return get


def _vocab():
    return str(shared_data("vocab.txt"))


def _torch_inputs(ids, mask, segments):
    return dict(
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long),
        token_type_ids=torch.tensor(segments, dtype=torch.long),
    )


def _load_hf(model_class, hf_dir):
    model, info = model_class.from_pretrained(hf_dir, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["mismatched_keys"], info
    assert not info["error_msgs"], info
    return model.eval(), info


@pytest.mark.parametrize("name", sorted(CASES))
def test_checkpoint_names_and_shapes_match_the_originals(converted, name):
    case = converted(name)
    style, _, pretraining, num_labels = CASES[name]
    stored = {
        n: list(s)
        for n, s in tf.train.list_variables(case["ckpt"])
        if not checkpoints.NON_MODEL_VARIABLE_PATTERN.search(n)
    }
    expected = u.expected_variable_shapes(case["config"], style, pretraining, num_labels)
    if name == "google_groups4_layers2":  # groups no layer uses are never created
        expected = {
            n: s for n, s in expected.items() if "/group_1/" not in n and "/group_3/" not in n
        }
        assert case["summary"]["filled_unused_groups"] == [1, 3]
    assert stored == expected


@pytest.mark.parametrize("name", ["brightmart_postln", "google_groups2"])
def test_reloaded_checkpoint_gives_identical_outputs(converted, name):
    case = converted(name)
    ids, mask, segments = u.random_inputs(3, 11, seed=5)
    fresh = modeling.AlbertForPretraining(case["config"], style=case["style"], seed=99)
    checkpoints.load_checkpoint(fresh, case["ckpt"])
    positions = np.array([[1, 2, 3]] * 3, np.int32)
    before = case["models"][1](ids, mask, segments, positions)
    after = fresh(ids, mask, segments, positions)
    for key in ("sequence_output", "pooled_output", "masked_lm_log_probs"):
        np.testing.assert_array_equal(before[key].numpy(), after[key].numpy())


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoder_matches_hf_albert_model(converted, name):
    case = converted(name)
    hf, info = _load_hf(transformers.AlbertModel, case["hf_dir"])
    # Only the other task's head weights may be left over (HF's usual "UNEXPECTED" report).
    assert all(k.startswith(HEAD_PREFIXES) for k in info["unexpected_keys"]), info
    encoder = case["models"][0]
    for batch, seq in ((2, 7), (4, 16)):
        ids, mask, segments = u.random_inputs(batch, seq, seed=seq)
        ours = encoder(ids, mask, segments)
        with torch.inference_mode():
            theirs = hf(**_torch_inputs(ids, mask, segments))
        np.testing.assert_allclose(
            theirs.last_hidden_state.numpy(),
            ours["sequence_output"].numpy(),
            atol=TOLERANCE,
            rtol=0,
        )
        np.testing.assert_allclose(
            theirs.pooler_output.numpy(), ours["pooled_output"].numpy(), atol=TOLERANCE, rtol=0
        )
        # The random weights give O(1) activations, so agreement is not trivially 0 == 0.
        assert ours["sequence_output"].numpy().std() > 0.3


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if CASES[n][2]])
def test_pretraining_heads_match_hf(converted, name):
    case = converted(name)
    hf, info = _load_hf(transformers.AlbertForPreTraining, case["hf_dir"])
    assert not info["unexpected_keys"], info
    ids, mask, segments = u.random_inputs(3, 12, seed=7)
    positions = np.array([[1, 4, 2, 0], [3, 3, 5, 1], [0, 2, 4, 6]], np.int32)
    ours = case["models"][1](ids, mask, segments, positions)
    with torch.inference_mode():
        theirs = hf(**_torch_inputs(ids, mask, segments))
    log_probs = torch.log_softmax(theirs.prediction_logits, dim=-1).numpy()
    at_positions = np.take_along_axis(log_probs, positions[:, :, None].astype(np.int64), axis=1)
    np.testing.assert_allclose(
        at_positions, ours["masked_lm_log_probs"].numpy(), atol=TOLERANCE, rtol=0
    )
    np.testing.assert_allclose(
        theirs.sop_logits.numpy(), ours["sentence_order_logits"].numpy(), atol=TOLERANCE, rtol=0
    )


def test_pretraining_loss_and_gradients_match_hf(converted):
    """The pretraining loss (training.pretraining_losses: masked LM from logits + sentence
    order) and the gradient of every weight against HF AlbertForPreTraining's loss with labels,
    autograd in PyTorch."""
    import hf_checkpoint
    import training

    case = converted("google_groups2")
    model = case["models"][1]
    hf, _ = _load_hf(transformers.AlbertForPreTraining, case["hf_dir"])
    ids, mask, segments = u.random_inputs(3, 12, seed=11)
    positions = np.array([[1, 4, 2, 0], [3, 7, 5, 1], [0, 2, 4, 6]], np.int32)  # distinct per row
    label_ids = np.random.default_rng(3).integers(1, u.VOCAB_SIZE, positions.shape, np.int32)
    order = np.array([[0], [1], [1]], np.int32)
    features = dict(
        input_ids=ids,
        input_mask=mask,
        segment_ids=segments,
        masked_lm_positions=positions,
        masked_lm_ids=label_ids,
        masked_lm_weights=np.ones(positions.shape, np.float32),
        next_sentence_labels=order,
    )
    loss_fn, weights_fn = training.pretraining_losses(model)
    variables = model.named_variables()
    with tf.GradientTape() as tape:
        sums, _ = loss_fn(features, training=False)  # no dropout; same graph as training
        weights = weights_fn(features)
        loss = sum(sums[key] / weights[key] for key in sums)
    ours = dict(zip(variables, tape.gradient(loss, list(variables.values())), strict=True))

    labels = np.full(ids.shape, -100, np.int64)
    np.put_along_axis(labels, positions, label_ids, axis=1)
    theirs = hf(
        **_torch_inputs(ids, mask, segments),
        labels=torch.tensor(labels),
        sentence_order_label=torch.tensor(order[:, 0], dtype=torch.long),
    )
    theirs.loss.backward()
    hf_parameters = dict(hf.named_parameters())
    assert float(loss) == pytest.approx(theirs.loss.item(), rel=1e-5)
    assert float(loss) > 1.0  # a real loss, not a trivially equal 0

    # Float32 rounding of the sums behind each gradient is relative to the model's gradient
    # scale, not to each tensor's: the key bias's gradient is exactly 0 up to that rounding.
    floor = 1e-6 * max(np.abs(p.grad.numpy()).max() for p in hf_parameters.values())
    for name, gradient in ours.items():
        key, transposed = hf_checkpoint.google_to_hf_name(name)
        expected = hf_parameters[key].grad.numpy()
        expected = expected.T if transposed else expected
        actual = tf.convert_to_tensor(gradient).numpy()
        if name == "bert/embeddings/word_embeddings":
            # HF's nn.Embedding(padding_idx=0) gives [PAD] no gradient; the originals (and we)
            # train it like any row, as the [PAD] inputs at padding positions feed the model.
            actual, expected = actual[1:], expected[1:]
        scale = np.abs(expected).max()
        np.testing.assert_allclose(
            actual, expected, atol=2e-5 * scale + floor, rtol=0, err_msg=name
        )


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if CASES[n][3]])
def test_classifier_matches_hf_sequence_classification(converted, name):
    case = converted(name)
    hf, info = _load_hf(transformers.AlbertForSequenceClassification, case["hf_dir"])
    assert not info["unexpected_keys"], info
    assert hf.config.num_labels == CASES[name][3]
    ids, mask, segments = u.random_inputs(5, 9, seed=3)
    ours = tf.nn.softmax(case["models"][2](ids, mask, segments)).numpy()
    with torch.inference_mode():
        theirs = torch.softmax(hf(**_torch_inputs(ids, mask, segments)).logits, -1).numpy()
    np.testing.assert_allclose(theirs, ours, atol=TOLERANCE, rtol=0)
    assert np.abs(ours - 1.0 / CASES[name][3]).max() > 0.05  # not a uniform, untrained head


def test_savedmodel_matches_hf(converted, tmp_path):
    """The other export path, end to end: SavedModel signatures vs the HF model."""
    case = converted("google_groups2")
    export_savedmodel.export_savedmodel(case["config"], case["ckpt"], str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    hf, _ = _load_hf(transformers.AlbertForPreTraining, case["hf_dir"])
    ids, mask, segments = u.random_inputs(2, 10, seed=11)
    positions = np.array([[0, 3, 5], [2, 1, 4]], np.int32)
    ours = loaded.signatures["serving_default"](
        input_ids=tf.constant(ids), input_mask=tf.constant(mask), segment_ids=tf.constant(segments)
    )
    heads = loaded.signatures["pretraining"](
        input_ids=tf.constant(ids),
        input_mask=tf.constant(mask),
        segment_ids=tf.constant(segments),
        masked_lm_positions=tf.constant(positions),
    )
    with torch.inference_mode():
        theirs = hf(**_torch_inputs(ids, mask, segments), output_hidden_states=True)
    np.testing.assert_allclose(
        theirs.hidden_states[-1].numpy(), ours["sequence_output"].numpy(), atol=TOLERANCE, rtol=0
    )
    log_probs = torch.log_softmax(theirs.prediction_logits, dim=-1).numpy()
    np.testing.assert_allclose(
        np.take_along_axis(log_probs, positions[:, :, None].astype(np.int64), axis=1),
        heads["masked_lm_log_probs"].numpy(),
        atol=TOLERANCE,
        rtol=0,
    )
    np.testing.assert_allclose(
        theirs.sop_logits.numpy(), heads["sentence_order_logits"].numpy(), atol=TOLERANCE, rtol=0
    )


def test_hf_config_and_tokenizer(converted):
    case = converted("brightmart_postln")
    config = transformers.AutoConfig.from_pretrained(case["hf_dir"])
    assert config.hidden_act == "gelu_new"  # tanh GELU, as the TF originals
    assert config.layer_norm_eps == 1e-12
    assert config.tokenizer_class == "BertTokenizer"
    assert config.embedding_size == config.hidden_size == 32  # brightmart folded to E = H
    tokenizer = transformers.AutoTokenizer.from_pretrained(case["hf_dir"])
    assert type(tokenizer).__name__ == "BertTokenizer"
    assert len(tokenizer) == u.VOCAB_SIZE
    import tokenization

    ours = tokenization.FullTokenizer(_vocab(), do_lower_case=True)
    text = "我爱北京天安门，ALBERT模型2019年发布。"
    expected = ours.convert_tokens_to_ids(["[CLS]"] + ours.tokenize(text) + ["[SEP]"])
    assert tokenizer(text)["input_ids"] == expected


def test_brightmart_preln_is_refused_with_a_clear_error(tmp_path):
    config = u.small_config("brightmart", ln_type="preln")
    ckpt, _, _ = u.write_checkpoint(tmp_path, config, "brightmart", True, None)
    with pytest.raises(AlbertError, match="post-LN only"):
        converter.convert(config, ckpt, str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()


def test_unused_groups_are_filled_and_group_layout_checked():
    # Google's code only creates the groups some layer uses (12 groups over 4 layers -> 0,3,6,9).
    used = converter.hf_group_layout(num_layers=4, num_groups=12)
    assert used == [0, 3, 6, 9]
    state = {
        f"albert.encoder.albert_layer_groups.{g}.albert_layers.0.ffn.bias": np.full(2, g)
        for g in used
    }
    filled = converter.fill_unused_groups(state, 12, used)
    assert filled == [1, 2, 4, 5, 7, 8, 10, 11]
    assert state["albert.encoder.albert_layer_groups.5.albert_layers.0.ffn.bias"][0] == 3
    for layers, groups in ((12, 1), (12, 12), (24, 6), (12, 5), (7, 3)):
        converter.hf_group_layout(layers, groups)  # agrees for common layouts


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(AlbertError, match="pip install -r requirements-dev.txt"):
        converter._import_torch_stack()


def test_converter_cli_bad_inputs(converted, tmp_path):
    """Each user mistake ends the CLI with exit 2 and one `error:` line (run concurrently)."""
    case = converted("google_classifier")
    small_vocab = tmp_path / "vocab.txt"
    small_vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    preln_config = u.small_config("brightmart", ln_type="preln")
    preln_ckpt, preln_config_path, _ = u.write_checkpoint(tmp_path, preln_config, "brightmart")

    script = "convert_albert_tf_checkpoint_to_pytorch.py"
    out = ["--output_dir", str(tmp_path / "out")]
    results = u.run_clis(
        [
            [
                script,
                "--tf_checkpoint_path",
                str(tmp_path / "missing.ckpt"),
                "--albert_config_file",
                case["config_path"],
                *out,
            ],
            [
                script,
                "--tf_checkpoint_path",
                case["ckpt"],
                "--bert_config_file",
                case["config_path"],
                "--vocab_file",
                str(small_vocab),
                *out,
            ],
            [
                script,
                "--tf_checkpoint_path",
                preln_ckpt,
                "--albert_config_file",
                preln_config_path,
                *out,
            ],
        ]
    )
    u.assert_one_line_error(results[0], "checkpoint not found", "missing.ckpt.index")
    u.assert_one_line_error(results[1], "has 5 entries", "vocab_size=21128")
    u.assert_one_line_error(results[2], "post-LN only")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_converter_rejects_truncated_checkpoint_and_wrong_config(converted, tmp_path):
    """Same errors through `convert` (in-process, to keep the file fast): one line each."""
    case = converted("google_classifier")
    ckpt, _, _ = u.write_checkpoint(tmp_path, case["config"], "google", True, None)
    data_file = ckpt + ".data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)
    with pytest.raises(AlbertError, match="truncated or corrupt") as truncated:
        converter.convert(case["config"], ckpt, str(tmp_path / "out"))
    base = modeling.AlbertConfig.from_json_file(REPO_ROOT / "configs/google_albert_base_zh.json")
    with pytest.raises(AlbertError, match="hidden_size=768 but the checkpoint 32") as wrong:
        converter.convert(base, case["ckpt"], str(tmp_path / "out"))
    for error in (truncated, wrong):
        assert "\n" not in str(error.value)
    assert not (tmp_path / "out" / "model.safetensors").exists()
