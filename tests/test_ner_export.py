"""run_ner.py models outside run_ner.py: heads, SavedModel, TFLite and Hugging Face.

Random token classifiers (a softmax head, brightmart post-LN; a CRF, google style, BIOES) are
saved as run_ner.py saves them: the checkpoint under the original names plus model_info.json.
Every export must agree with the in-memory TF model it came from: probabilities within 1e-4,
tag ids exactly (a CRF decoded by Viterbi under the scheme's constraints inside the graph).
"""

import json

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import export_savedmodel
import export_tflite
import inference
import modeling
import ner_data
import tokenization
from errors import AlbertError
from tests import export_test_utils as u
from tests.conftest import shared_data

TOLERANCE = 1e-4


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


SCHEME = "BIOES"
TAGS = ner_data.tag_list(["LOC", "PER"], SCHEME)
CASES = {"softmax": ("brightmart", False), "crf": ("google", True)}


def save_token_classifier(directory, style, use_crf, seed):
    """A random token classifier saved as run_ner.py does -> (prefix, config, model)."""
    config = u.small_config(style)
    allowed = modeling.crf_allowed_transitions(TAGS, SCHEME) if use_crf else None
    model = modeling.AlbertForTokenClassification(
        config,
        len(TAGS),
        style=style,
        classifier_dropout=0.0,
        use_crf=use_crf,
        allowed_transitions=allowed,
    )
    u.randomize(model.named_variables(), seed)
    prefix = checkpoints.save_model(model, str(directory / checkpoints.BEST_CHECKPOINT), 7)
    info = {"task": checkpoints.TOKEN_CLASSIFICATION, "labels": TAGS, "tag_scheme": SCHEME}
    checkpoints.write_model_info(str(directory), config, None, info)
    return prefix, config, model


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    style, use_crf = CASES[request.param]
    directory = tmp_path_factory.mktemp(request.param)
    prefix, config, model = save_token_classifier(directory, style, use_crf, seed=5)
    return dict(name=request.param, directory=directory, prefix=prefix, config=config, model=model)


def reference(model, ids, mask, segments):
    """What the in-memory model computes: softmax of its logits and model.decode's tags."""
    logits = model(ids, mask, segments)
    tags = model.decode(logits, inference.serving_label_mask(mask))
    return {"probabilities": tf.nn.softmax(logits).numpy(), "tag_ids": tags.numpy()}


def assert_same_outputs(actual, expected):
    np.testing.assert_allclose(
        actual["probabilities"], expected["probabilities"], atol=TOLERANCE, rtol=0
    )
    np.testing.assert_array_equal(actual["tag_ids"], expected["tag_ids"])
    assert actual["tag_ids"].dtype == np.int32


def test_heads_tell_a_token_classifier_by_its_model_info(case, tmp_path):
    heads = checkpoints.checkpoint_heads(case["directory"])
    assert heads.num_labels == len(TAGS) and heads.token_level
    assert heads.crf == (case["name"] == "crf")
    assert heads.tags == tuple(TAGS) and heads.tag_scheme == SCHEME
    models = checkpoints.build_models(case["config"], case["directory"])
    assert models.classifier is None and models.token_classifier.encoder is models.encoder
    assert models.token_classifier.use_crf == heads.crf
    # The same weights without model_info.json: a sentence classifier, unless a CRF says so.
    copy = checkpoints.save_model(case["model"], str(tmp_path / "plain.ckpt"), 7)
    assert checkpoints.checkpoint_heads(copy).token_level == heads.crf
    (tmp_path / checkpoints.MODEL_INFO_FILE).write_text(
        json.dumps({"task": checkpoints.TOKEN_CLASSIFICATION, "labels": TAGS[:3]})
    )
    with pytest.raises(AlbertError, match="lists 3 tags but .* has 9"):
        checkpoints.checkpoint_heads(copy)


def test_decoded_tags_follow_the_scheme(case):
    ids, mask, segments = u.random_inputs(4, 23, seed=2)
    expected = reference(case["model"], ids, mask, segments)
    label_mask = inference.serving_label_mask(mask).numpy()
    assert not expected["tag_ids"][label_mask == 0].any()
    if case["name"] == "crf":  # the constraints hold (random softmax tags need not)
        for row, tags in enumerate(expected["tag_ids"]):
            names = [TAGS[t] for t in tags[label_mask[row] == 1]]
            assert ner_data.first_invalid_tag(names, SCHEME) is None
    assert len(np.unique(expected["tag_ids"])) >= 3  # random weights, varied tags


def test_savedmodel_token_classifier_signature(case, tmp_path):
    names = export_savedmodel.export_savedmodel(case["config"], case["prefix"], str(tmp_path))
    assert names == ["serving_default", "token_classifier"]
    signature = tf.saved_model.load(str(tmp_path)).signatures["token_classifier"]
    outputs = signature.structured_outputs
    assert outputs["tag_ids"].dtype == tf.int32 and outputs["tag_ids"].shape.as_list() == [
        None,
        None,
    ]
    assert outputs["probabilities"].shape.as_list() == [None, None, len(TAGS)]
    for batch, seq in ((1, 6), (3, 19)):
        ids, mask, segments = u.random_inputs(batch, seq, seed=seq)
        served = signature(
            input_ids=tf.constant(ids),
            input_mask=tf.constant(mask),
            segment_ids=tf.constant(segments),
        )
        served = {name: value.numpy() for name, value in served.items()}
        assert_same_outputs(served, reference(case["model"], ids, mask, segments))


def test_tflite_fp32_fixed_and_dynamic(case, tmp_path):
    config, model = case["config"], case["model"]
    fixed = tmp_path / "fixed.tflite"
    export_tflite.export_tflite(
        config, case["prefix"], str(fixed), head="token_classifier", max_seq_length=24
    )
    description = export_tflite.describe(fixed)
    assert description["outputs"] == {
        "tag_ids": [[1, 24], "int32"],
        "probabilities": [[1, 24, len(TAGS)], "float32"],
    }
    ids, mask, segments = u.random_inputs(1, 24, seed=3)
    mask[0, 17:] = 0
    ids *= mask
    runner = export_tflite.load_runner(fixed)
    actual = runner(input_ids=ids, input_mask=mask, segment_ids=segments)
    assert_same_outputs(actual, reference(model, ids, mask, segments))

    dynamic = tmp_path / "dynamic.tflite"
    export_tflite.export_tflite(
        config, case["prefix"], str(dynamic), head="token_classifier", dynamic=True
    )
    runner = export_tflite.load_runner(dynamic)
    for batch, seq in ((1, 5), (3, 31), (2, 40)):  # 40 = max_position_embeddings
        ids, mask, segments = u.random_inputs(batch, seq, seed=batch + seq)
        actual = runner(input_ids=ids, input_mask=mask, segment_ids=segments)
        assert_same_outputs(actual, reference(model, ids, mask, segments))


def test_tflite_heads_must_match_the_checkpoint(case, tmp_path):
    with pytest.raises(AlbertError, match="is a token classifier .*--head=token_classifier"):
        export_tflite.export_tflite(
            case["config"], case["prefix"], str(tmp_path / "x.tflite"), "classifier", "none", 24
        )
    encoder_only = checkpoints.save_tensors(
        case["model"].encoder.named_variables(), str(tmp_path / "encoder.ckpt")
    )
    with pytest.raises(AlbertError, match="has no token classifier"):
        export_tflite.export_tflite(
            case["config"], encoder_only, str(tmp_path / "x.tflite"), "token_classifier", "none", 24
        )


def test_hugging_face_token_classification(case, tmp_path):
    """Softmax: HF AlbertForTokenClassification's probabilities equal ours. CRF: the encoder
    and emissions convert, and HF's logits decoded with crf_transitions.json by pytorch-crf
    give our tags."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import convert_albert_tf_checkpoint_to_pytorch as converter

    hf_dir = tmp_path / "hf"
    summary = converter.convert(
        case["config"], case["prefix"], str(hf_dir), vocab_file=str(shared_data("vocab.txt"))
    )
    assert summary["architectures"] == ["AlbertForTokenClassification"]
    assert summary["tags"] == TAGS
    hf = transformers.AlbertForTokenClassification.from_pretrained(str(hf_dir)).eval()
    assert hf.config.id2label == dict(enumerate(TAGS))
    ids, mask, segments = u.random_inputs(3, 17, seed=9)
    expected = reference(case["model"], ids, mask, segments)
    with torch.inference_mode():
        logits = hf(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            token_type_ids=torch.tensor(segments, dtype=torch.long),
        ).logits
    np.testing.assert_allclose(
        torch.softmax(logits, -1).numpy(), expected["probabilities"], atol=TOLERANCE, rtol=0
    )
    if case["name"] == "softmax":
        assert summary["crf_transitions_file"] is None
        return
    torchcrf = pytest.importorskip("torchcrf")
    with open(summary["crf_transitions_file"], encoding="utf-8") as f:
        stored = json.load(f)
    assert stored["tags"] == TAGS and "does not use" in stored["note"]
    crf = torchcrf.CRF(len(TAGS), batch_first=True)
    rules = {"transitions": "transitions", "start_transitions": "start", "end_transitions": "end"}
    for name, rule in rules.items():
        allowed = np.asarray(stored[f"allowed_{rule}"])
        values = np.where(allowed, np.asarray(stored[name]), modeling.CRF_FORBIDDEN_SCORE)
        getattr(crf, name).data = torch.tensor(values, dtype=torch.float32)
    lengths = mask.sum(1)
    for row in range(len(ids)):  # the tagged positions: between [CLS] and [SEP]
        emissions = logits[row : row + 1, 1 : lengths[row] - 1]
        decoded = crf.decode(emissions, mask=torch.ones(emissions.shape[:2], dtype=torch.bool))[0]
        assert decoded == expected["tag_ids"][row, 1 : lengths[row] - 1].tolist()


# ----------------------------------------------------------------------------- ner_text


def python_entities(model, texts, max_seq_length, window_stride):
    """run_ner.py --do_predict's path: ner_data windows, the model's tags, merged entities."""
    tokenizer = tokenization.FullTokenizer(shared_data("vocab.txt"), do_lower_case=True)
    examples = [
        ner_data.NerExample(guid=str(i), text=t, entities=None) for i, t in enumerate(texts)
    ]
    features = ner_data.convert_examples_to_features(
        examples, tokenizer, TAGS, SCHEME, max_seq_length, window_stride
    )

    def tag_ids(model, input_ids, input_mask, segment_ids, label_mask):
        outputs = inference.token_classifier_outputs(
            model, input_ids, input_mask, segment_ids, label_mask
        )
        return {"tag_ids": outputs["tag_ids"]}

    predictor = inference.Predictor(
        model, outputs=tag_ids, input_names=inference.INPUT_NAMES + ("label_mask",)
    )
    windows = inference.predict(predictor, features, 32, max_seq_length, token_outputs=("tag_ids",))
    return ner_data.predict_entities(features, windows["tag_ids"]), features.report


NER_TEXTS = [
    "",
    "   ",
    "😀😀",
    "ǆemal Café 在 İstanbul",  # one character, several pieces; accents; no vocab piece
    "vsac米兰 2010年，AC米兰在圣西罗",  # Latin words tagged per character
    "a\u200bb\x00c\u2028d",  # dropped characters and a line separator
]


def test_ner_text_finds_the_entities_run_ner_finds(case, tmp_path):
    """On 150 CLUENER sentences, odd texts and a 1,000-character text (cut into windows of
    22 tokens, by the default stride and by 5): the same entities and offsets as run_ner.py's
    Python path, tag for tag. The softmax model through a saved and loaded SavedModel, the CRF
    one in memory (the same module, not saved)."""
    max_seq_length = 24
    window_stride = 5 if case["name"] == "crf" else None
    texts = [json.loads(line)["text"] for line in read_lines(shared_data("cluener/dev.json"))]
    long_text = "".join(texts[200:300])[:1000]
    texts = texts[:150] + NER_TEXTS + [long_text]
    text = export_savedmodel.TextSettings(
        vocab_file=shared_data("vocab.txt"),
        max_seq_length=max_seq_length,
        window_stride=window_stride,
    )
    if case["name"] == "softmax":
        names = export_savedmodel.export_savedmodel(
            case["config"], case["prefix"], str(tmp_path), text=text
        )
        assert names == ["encode_text", "ner_text", "serving_default", "token_classifier"]
        ner_text = tf.saved_model.load(str(tmp_path)).signatures["ner_text"]
    else:
        module = export_savedmodel.build_export_module(case["config"], case["prefix"], text=text)
        ner_text = module.ner_text
    served = {k: v.numpy() for k, v in ner_text(text=tf.constant(texts)).items()}
    expected, report = python_entities(case["model"], texts, max_seq_length, window_stride)
    assert report.split_sentences >= 30  # windows are exercised (1 for the long text alone)

    counts = served["num_entities"]
    assert counts.tolist() == [len(e) for e in expected]
    assert counts.sum() > 100  # random weights: many entities of both types
    assert set(served["types"].ravel()) == {b"", b"LOC", b"PER"}
    for row, (source, entities) in enumerate(zip(texts, expected, strict=True)):
        found = slice(0, counts[row])
        got = zip(
            served["types"][row, found],
            served["starts"][row, found],
            served["ends"][row, found],
            served["texts"][row, found],
            strict=True,
        )
        got = [(kind.decode(), int(start), int(end), t.decode()) for kind, start, end, t in got]
        assert got == [(e.type, e.start, e.end, source[e.start : e.end]) for e in entities], row
        padding = slice(counts[row], None)
        assert (served["starts"][row, padding] == -1).all()
        assert (served["types"][row, padding] == b"").all()

    empty = ner_text(text=tf.constant([], tf.string))
    assert empty["num_entities"].shape == [0] and empty["types"].shape == [0, 0]


def test_ner_text_needs_character_units(tmp_path, caplog):
    prefix, config, _ = save_token_classifier(tmp_path, "google", False, seed=1)
    text = export_savedmodel.TextSettings(vocab_file=shared_data("vocab.txt"), units="word")
    with caplog.at_level("WARNING", logger="absl"):
        module = export_savedmodel.build_export_module(config, prefix, text=text)
    assert set(module.text_signature_functions()) == {"encode_text"}
    assert "trained with --units=word" in caplog.text
