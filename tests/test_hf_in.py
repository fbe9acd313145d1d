"""Hugging Face ALBERT directories -> our TF checkpoints (hf_checkpoint.py and
convert_pytorch_checkpoint_to_tf.py).

Random HF models are written by transformers itself (save_pretrained: safetensors, sharded
by max_shard_size) or as PyTorch pickles (`.bin`, as transformers 4 wrote them), converted,
and loaded into our models; outputs must equal HF PyTorch's within 1e-4 on padded
two-segment inputs. Our checkpoints must survive ours -> HF -> ours bit for bit, mistakes
must end in one clear AlbertError, and the safetensors path must not need torch.
"""

import json
import os
import pathlib
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import convert_albert_tf_checkpoint_to_pytorch as to_hf
import convert_pytorch_checkpoint_to_tf as to_tf
import hf_checkpoint
import modeling
from errors import AlbertError
from tests import export_test_utils as u
from tests import hf_test_utils as hf_utils

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOLERANCE = 1e-4

# Google-style HF configs: tiny, and base-shaped like voidful/albert_chinese_base (vocab 21128,
# E 128, H 768, 12 heads) with 2 layers instead of 12 to stay fast.
SIZES = {
    "tiny": dict(
        embedding_size=16,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=48,
        num_hidden_layers=4,
        max_position_embeddings=40,
    ),
    "base": dict(
        embedding_size=128,
        hidden_size=768,
        num_attention_heads=12,
        intermediate_size=3072,
        num_hidden_layers=2,
        max_position_embeddings=512,
    ),
}
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
NER_TAGS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}

# name -> (size, HF class, config overrides, how it is saved)
CASES = {
    "pretraining_tiny": ("tiny", "AlbertForPreTraining", {}, "safetensors"),
    "masked_lm_base_bin": ("base", "AlbertForMaskedLM", {}, "bin"),
    "classifier_tiny_shards": (
        "tiny",
        "AlbertForSequenceClassification",
        {"id2label": LABELS},
        "safetensors_shards",
    ),
    "token_classifier_tiny_bin_shards": (
        "tiny",
        "AlbertForTokenClassification",
        {"num_labels": 5},
        "bin_shards",
    ),
    "ner_tiny_named_tags": (
        "tiny",
        "AlbertForTokenClassification",
        {"id2label": NER_TAGS},
        "safetensors",
    ),
    # A bare AlbertModel (keys without `albert.`), groups 1 and 3 used by no layer, E == H.
    "model_tiny_unused_groups": (
        "tiny",
        "AlbertModel",
        {
            "num_hidden_layers": 2,
            "num_hidden_groups": 4,
            "inner_group_num": 2,
            "embedding_size": 32,
        },
        "safetensors",
    ),
}


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    hf_utils.write_fake_vocab(path)
    return str(path)


@pytest.fixture(scope="module")
def hf_case(tmp_path_factory, vocab):
    """case name -> dict(hf_dir, hf (torch model), out, summary, ours); built lazily, once."""
    cache = {}

    def get(name):
        if name not in cache:
            size, class_name, overrides, how = CASES[name]
            values = dict(SIZES[size], vocab_size=u.VOCAB_SIZE, num_hidden_groups=2)
            values.update(overrides)
            directory = tmp_path_factory.mktemp(name)
            hf_dir = directory / "hf"
            hf = hf_utils.make_hf_directory(hf_dir, class_name, values, vocab, len(cache), how)
            out = str(directory / "tf")
            summary = to_tf.convert(str(hf_dir), out)
            cache[name] = dict(
                hf_dir=hf_dir, hf=hf, out=out, summary=summary, ours=_load_ours(out, summary)
            )
        return cache[name]

    return get


def _load_ours(out, summary):
    """Our model with the heads the converted checkpoint has, loaded from it."""
    config = modeling.AlbertConfig.from_json_file(os.path.join(out, "albert_config.json"))
    if "masked_lm" in summary["heads"]:
        model = modeling.AlbertForPretraining(config)
    elif summary["num_labels"]:
        model = modeling.AlbertForClassification(
            config, summary["num_labels"], classifier_dropout=0.0
        )
    else:
        model = modeling.AlbertModel(config)
    checkpoints.load_checkpoint(model, out)  # the directory: its `checkpoint` file names the ckpt
    return model


def _close(theirs, ours):
    np.testing.assert_allclose(theirs, np.asarray(ours), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_hf_pytorch(hf_case, name):
    case = hf_case(name)
    hf, ours, summary = case["hf"], case["ours"], case["summary"]
    encoder = getattr(ours, "encoder", ours)
    ids, mask, segments = u.random_inputs(3, 10, seed=4)
    positions = np.array([[1, 4, 2], [3, 3, 5], [0, 2, 4]], np.int32)
    hf_encoder = getattr(hf, "albert", hf)
    with torch.inference_mode():
        hf_out = hf(**hf_utils.torch_inputs(ids, mask, segments))
        hf_encoded = hf_encoder(**hf_utils.torch_inputs(ids, mask, segments))
    our_encoded = encoder(ids, mask, segments)
    _close(hf_encoded.last_hidden_state.numpy(), our_encoded["sequence_output"])
    assert our_encoded["sequence_output"].numpy().std() > 0.3  # not trivially 0 == 0
    if hf_encoded.pooler_output is not None:
        _close(hf_encoded.pooler_output.numpy(), our_encoded["pooled_output"])

    if "masked_lm" in summary["heads"]:
        pretraining = "sentence_order" in summary["heads"]
        logits = hf_out.prediction_logits if pretraining else hf_out.logits
        log_probs = torch.log_softmax(logits, -1).numpy()
        at = np.take_along_axis(log_probs, positions[:, :, None].astype(np.int64), axis=1)
        _close(at, ours(ids, mask, segments, positions)["masked_lm_log_probs"])
    if "sentence_order" in summary["heads"]:
        _close(hf_out.sop_logits.numpy(), ours(ids, mask, segments)["sentence_order_logits"])
    if "sequence_classification" in summary["heads"]:
        probs = tf.nn.softmax(ours(ids, mask, segments)).numpy()
        _close(torch.softmax(hf_out.logits, -1).numpy(), probs)
        assert np.abs(probs - 1 / 3).max() > 0.05  # not a uniform, untrained head
    if "token_classification" in summary["heads"]:
        # Our token classifier (modeling.AlbertForTokenClassification, added separately) uses
        # the same output_weights [C,H] / output_bias [C] on every position.
        head = checkpoints.read_tensors(case["out"], names=["output_weights", "output_bias"])
        sequence = our_encoded["sequence_output"].numpy()
        logits = sequence @ head["output_weights"].T + head["output_bias"]
        _close(hf_out.logits.numpy(), logits)


def test_classifier_task_and_labels_travel_with_the_model(hf_case):
    # Read straight from the HF directory or from the converted TF directory (its
    # model_info.json), a token classifier is a token classifier and keeps its tag names.
    named = hf_case("ner_tiny_named_tags")
    for path in (str(named["hf_dir"]), named["out"]):
        heads = checkpoints.checkpoint_heads(path)
        assert (heads.token_level, heads.num_labels, heads.crf) == (True, 5, False), path
        assert heads.tags == tuple(NER_TAGS.values()) and heads.tag_scheme == "BIO", path
    with open(os.path.join(named["out"], checkpoints.MODEL_INFO_FILE), encoding="utf-8") as f:
        info = json.load(f)
    assert (info["task"], info["labels"], info["tag_scheme"]) == (
        checkpoints.TOKEN_CLASSIFICATION,
        list(NER_TAGS.values()),
        "BIO",
    )
    # HF's placeholder names (LABEL_0, ...) fit no tag scheme: token level, tags unknown.
    unnamed = hf_case("token_classifier_tiny_bin_shards")
    for path in (str(unnamed["hf_dir"]), unnamed["out"]):
        heads = checkpoints.checkpoint_heads(path)
        assert (heads.token_level, heads.tags, heads.tag_scheme) == (True, None, None), path
    classifier = hf_case("classifier_tiny_shards")
    for path in (str(classifier["hf_dir"]), classifier["out"]):
        assert not checkpoints.checkpoint_heads(path).token_level, path
        assert checkpoints.label_names(path) == list(LABELS.values()), path
    assert not os.path.exists(
        os.path.join(hf_case("pretraining_tiny")["out"], checkpoints.MODEL_INFO_FILE)
    )


def test_summaries_name_the_heads_and_labels(hf_case):
    expected = {
        "pretraining_tiny": ("AlbertForPreTraining", ["masked_lm", "sentence_order"], None),
        "masked_lm_base_bin": ("AlbertForMaskedLM", ["masked_lm"], None),
        "classifier_tiny_shards": (
            "AlbertForSequenceClassification",
            ["sequence_classification"],
            LABELS,
        ),
        "token_classifier_tiny_bin_shards": (
            "AlbertForTokenClassification",
            ["token_classification"],
            {i: f"LABEL_{i}" for i in range(5)},
        ),
        "model_tiny_unused_groups": ("AlbertModel", [], None),
    }
    for name, (architecture, heads, id2label) in expected.items():
        summary = hf_case(name)["summary"]
        assert (summary["architecture"], summary["heads"], summary["id2label"]) == (
            architecture,
            heads,
            id2label,
        ), name
        assert summary["num_labels"] == (len(id2label) if id2label else None)
    # What our models have but these HF classes lack, and the reverse, is reported.
    assert any("no pooler" in n for n in hf_case("masked_lm_base_bin")["summary"]["notes"])
    notes = hf_case("model_tiny_unused_groups")["summary"]["notes"]
    assert any("groups [1, 3]" in n for n in notes), notes


def test_written_directory_is_the_original_format(hf_case):
    case = hf_case("model_tiny_unused_groups")
    out = case["out"]
    assert sorted(os.listdir(out)) == [
        "albert_config.json",
        "checkpoint",
        "model.ckpt-0.data-00000-of-00001",
        "model.ckpt-0.index",
        "vocab.txt",
    ]
    config = modeling.AlbertConfig.from_json_file(os.path.join(out, "albert_config.json"))
    expected = u.expected_variable_shapes(config, "google", pretraining=False)
    # Groups no layer uses are not created by the original code either (nor E->H when E == H).
    expected = {n: s for n, s in expected.items() if "/group_1/" not in n and "/group_3/" not in n}
    assert dict(tf.train.list_variables(os.path.join(out, "model.ckpt-0"))) == expected
    values = json.loads(pathlib.Path(out, "albert_config.json").read_text())
    assert values["hidden_act"] == "gelu"  # the TF originals' name of the tanh GELU
    assert (values["num_hidden_groups"], values["inner_group_num"]) == (4, 2)


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory, vocab):
    """Our random checkpoints -> HF (the other converter) -> ours again."""
    cases = {
        # unused groups, inner groups and E == H: everything HF stores differently
        "google_pretraining": (
            "google",
            {"num_hidden_groups": 4, "inner_group_num": 2, "embedding_size": 32},
            True,
            None,
        ),
        "google_classifier": ("google", {}, False, 3),
        "brightmart_pretraining": ("brightmart", {}, True, None),
    }
    result = {}
    for seed, (name, case) in enumerate(cases.items()):
        checkpoint = u.checkpoint_case(tmp_path_factory, name, case, seed=seed + 20)
        hf_dir = str(checkpoint["directory"] / "hf")
        to_hf.convert(checkpoint["config"], checkpoint["ckpt"], hf_dir, vocab_file=vocab)
        checkpoint["back"] = str(checkpoint["directory"] / "back")
        checkpoint["summary"] = to_tf.convert(hf_dir, checkpoint["back"])
        result[name] = checkpoint
    return result


@pytest.mark.parametrize("name", ["google_pretraining", "google_classifier"])
def test_ours_to_hf_to_ours_is_bit_identical(round_trips, name):
    case = round_trips[name]
    before = checkpoints.read_tensors(case["ckpt"])
    after = checkpoints.read_tensors(case["back"])
    assert sorted(after) == sorted(before)
    for variable, value in before.items():
        np.testing.assert_array_equal(after[variable], value, err_msg=variable)
    back_config = modeling.AlbertConfig.from_json_file(f"{case['back']}/albert_config.json")
    assert back_config.to_dict() == case["config"].to_dict()


def test_folded_brightmart_directory_reads_back_as_google(round_trips):
    case = round_trips["brightmart_pretraining"]
    config = modeling.AlbertConfig.from_json_file(f"{case['back']}/albert_config.json")
    assert config.embedding_size == config.hidden_size == 32  # folded: E = H
    ours = modeling.AlbertForPretraining(config, style="google")
    checkpoints.load_checkpoint(ours, case["back"])
    ids, mask, segments = u.random_inputs(2, 9, seed=8)
    positions = np.array([[1, 2, 5], [0, 3, 4]], np.int32)
    before = case["models"][1](ids, mask, segments, positions)
    after = ours(ids, mask, segments, positions)
    for key in ("sequence_output", "pooled_output", "masked_lm_log_probs", "sentence_order_logits"):
        _close(before[key].numpy(), after[key])


# ----------------------------------------------------------------------------- errors


def _copy_case(hf_case, name, tmp_path):
    target = tmp_path / name
    shutil.copytree(hf_case(name)["hf_dir"], target)
    return target


def _edit_config(directory, **changes):
    path = directory / "config.json"
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def test_a_non_albert_directory_is_refused(tmp_path):
    transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4
    ).save_pretrained(tmp_path)
    with pytest.raises(AlbertError, match=r"holds a bert model .*not ALBERT.*ALBERT models only"):
        hf_checkpoint.read_hf_checkpoint(tmp_path)


def test_a_sentencepiece_only_directory_is_refused(hf_case, tmp_path):
    directory = _copy_case(hf_case, "pretraining_tiny", tmp_path)
    os.remove(directory / "vocab.txt")
    (directory / "spiece.model").write_bytes(b"\x0a\x00")
    with pytest.raises(AlbertError, match="SentencePiece.*English ALBERT.*WordPiece"):
        hf_checkpoint.read_hf_config(directory)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_act": "gelu"}, r"exact \(erf\) GELU.*gelu_new"),
        ({"layer_norm_eps": 1e-5}, "layer_norm_eps 1e-05 differs"),
        ({"architectures": ["AlbertForQuestionAnswering"]}, "AlbertForQuestionAnswering: its head"),
        (
            {"hidden_size": 64},
            r"model.safetensors: albert.encoder.embedding_hidden_mapping_in.weight "
            r"has shape \[32, 16\] but config.json implies \[64, 16\]",
        ),
    ],
)
def test_what_our_model_cannot_compute_is_refused(hf_case, tmp_path, changes, message):
    directory = _copy_case(hf_case, "pretraining_tiny", tmp_path)
    _edit_config(directory, **changes)
    with pytest.raises(AlbertError, match=message) as error:
        hf_checkpoint.read_hf_checkpoint(directory)
    assert "\n" not in str(error.value)


def test_shape_mismatch_names_tensor_file_expected_and_found(hf_case, tmp_path):
    directory = _copy_case(hf_case, "pretraining_tiny", tmp_path)
    state = safetensors_numpy.load_file(directory / "model.safetensors")
    state["albert.pooler.weight"] = state["albert.pooler.weight"][:, :31].copy()
    safetensors_numpy.save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(AlbertError) as error:
        hf_checkpoint.read_hf_checkpoint(directory)
    message = str(error.value)
    for fragment in (
        "model.safetensors",
        "albert.pooler.weight",
        "shape [32, 31]",
        "implies [32, 32]",
    ):
        assert fragment in message, message


def test_non_identity_projection_with_e_equal_h_is_refused(hf_case, tmp_path):
    directory = _copy_case(hf_case, "model_tiny_unused_groups", tmp_path)
    state = safetensors_numpy.load_file(directory / "model.safetensors")
    state["encoder.embedding_hidden_mapping_in.weight"] *= 2
    safetensors_numpy.save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(AlbertError, match="mapping_in.weight is not the identity"):
        hf_checkpoint.read_hf_checkpoint(directory)


def test_missing_weights_are_clear_errors(hf_case, tmp_path):
    directory = _copy_case(hf_case, "pretraining_tiny", tmp_path)
    state = safetensors_numpy.load_file(directory / "model.safetensors")
    del state["albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.bias"]
    safetensors_numpy.save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(AlbertError, match="lacks 1 weight.*albert_layer_groups.1.*ffn.bias"):
        hf_checkpoint.read_hf_checkpoint(directory)

    os.remove(directory / "model.safetensors")
    with pytest.raises(AlbertError, match="has no model weights: expected model.safetensors"):
        hf_checkpoint.read_hf_weights(directory)

    shards = _copy_case(hf_case, "classifier_tiny_shards", tmp_path)
    index = json.loads((shards / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    os.remove(shards / shard)
    with pytest.raises(AlbertError, match=f"lists shard {shard}, which is missing"):
        hf_checkpoint.read_hf_weights(shards)


def test_bin_without_torch_names_pip_install_torch(hf_case, monkeypatch):
    hf_dir = hf_case("token_classifier_tiny_bin_shards")["hf_dir"]
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    with pytest.raises(AlbertError, match="needs torch: pip install torch"):
        hf_checkpoint.read_hf_weights(hf_dir)


def test_brightmart_output_and_a_missing_vocab_are_refused(hf_case, tmp_path):
    with pytest.raises(AlbertError, match="--style must be google"):
        to_tf.convert(str(hf_case("pretraining_tiny")["hf_dir"]), str(tmp_path), "brightmart")
    directory = _copy_case(hf_case, "pretraining_tiny", tmp_path)
    os.remove(directory / "vocab.txt")  # as our converter writes without --vocab_file
    with pytest.raises(AlbertError, match="has no vocab.txt: pass --vocab_file"):
        to_tf.convert(str(directory), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_hf_defaults_are_transformers_defaults():
    """Older configs list only non-default values; ours must be transformers' defaults."""
    defaults = transformers.AlbertConfig()
    for key, value in hf_checkpoint.HF_CONFIG_DEFAULTS.items():
        assert getattr(defaults, key) == value, key


# A child interpreter in which `import torch` / `import transformers` fail. It converts a
# safetensors directory (what the CLI calls), then runs the CLI on a `.bin` directory.
_NO_TORCH = """
import json, runpy, sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, BlockTorch())
safetensors_dir, out, bin_dir = sys.argv[1:]
import convert_pytorch_checkpoint_to_tf as to_tf

print(json.dumps(to_tf.convert(safetensors_dir, out)), flush=True)
sys.argv = ["convert_pytorch_checkpoint_to_tf.py", "--hf_dir", bin_dir, "--output_dir", out + "_bin"]
runpy.run_path("convert_pytorch_checkpoint_to_tf.py", run_name="__main__")
"""


def test_safetensors_need_no_torch_and_cli_errors_are_one_line(hf_case, tmp_path):
    """In an interpreter where torch cannot be imported (one child: each pays the TF import):
    a safetensors directory converts, the CLI on a `.bin` ends in one `error:` line."""
    safetensors_dir = hf_case("classifier_tiny_shards")["hf_dir"]
    bin_dir = hf_case("masked_lm_base_bin")["hf_dir"]
    out = tmp_path / "out"
    [result] = u.run_clis([["-c", _NO_TORCH, str(safetensors_dir), str(out), str(bin_dir)]])
    summary = json.loads(result[1].strip().splitlines()[0])
    assert summary["heads"] == ["sequence_classification"]
    assert summary["id2label"] == {str(i): label for i, label in LABELS.items()}
    expected = checkpoints.read_tensors(hf_case("classifier_tiny_shards")["out"])
    written = checkpoints.read_tensors(str(out))
    assert sorted(written) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)
    u.assert_one_line_error(result, "pytorch_model.bin is a PyTorch pickle", "pip install torch")
    assert not (tmp_path / "out_bin").exists()
