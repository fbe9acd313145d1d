"""The linear-chain CRF and AlbertForTokenClassification in modeling.py.

Oracles: brute-force enumeration of every tag sequence (exact, small cases) and pytorch-crf's
`torchcrf.CRF` (an independent implementation) on padded batches.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import modeling
import ner_data
from errors import AlbertError
from tests import conftest

torchcrf = pytest.importorskip("torchcrf")
torch = pytest.importorskip("torch")


def random_crf(rng, batch, length, num_tags, scale=1.0):
    """Random emissions [B,T,K], transitions [K,K], start [K], end [K] (float32)."""

    def normal(*shape):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    emissions = normal(batch, length, num_tags)
    return emissions, normal(num_tags, num_tags), normal(num_tags), normal(num_tags)


def path_score(emissions, transitions, start, end, positions, tags):
    """The CRF score of `tags` at `positions` of one sequence, written out term by term."""
    score = start[tags[0]] + end[tags[-1]]
    score += sum(emissions[p, y] for p, y in zip(positions, tags, strict=True))
    score += sum(transitions[a, b] for a, b in zip(tags, tags[1:], strict=False))
    return score


def brute_force(emissions, transitions, start, end, mask):
    """Per row: (log partition, best score, best path at the unmasked positions)."""
    results = []
    for row in range(len(emissions)):
        positions = np.flatnonzero(mask[row])
        if not len(positions):
            results.append((0.0, 0.0, ()))
            continue
        scored = [
            (path_score(emissions[row], transitions, start, end, positions, tags), tags)
            for tags in itertools.product(range(emissions.shape[2]), repeat=len(positions))
        ]
        scores = np.array([s for s, _ in scored], np.float64)
        best = max(scored, key=lambda item: item[0])
        results.append((np.logaddexp.reduce(scores), best[0], best[1]))
    return results


# Masks with padding at the end, holes in the middle (first WordPieces only), and empty rows.
MASKS = [
    [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 1], [1, 1, 0, 1, 0]],
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mask", MASKS)
def test_likelihood_and_viterbi_equal_brute_force(seed, mask):
    rng = np.random.default_rng(seed)
    mask = np.array(mask, np.int32)
    num_tags = 3 + seed % 2
    emissions, transitions, start, end = random_crf(rng, *mask.shape, num_tags)
    tags = rng.integers(0, num_tags, size=mask.shape)
    args = (transitions, start, end)

    log_likelihood = modeling.crf_log_likelihood(emissions, tags, mask, *args).numpy()
    log_partition = modeling.crf_log_partition(emissions, mask, *args).numpy()
    decoded, best_score = (x.numpy() for x in modeling.crf_decode(emissions, mask, *args))
    expected = brute_force(emissions, transitions, start, end, mask)
    for row, (expected_z, expected_best, expected_path) in enumerate(expected):
        positions = np.flatnonzero(mask[row])
        gold = 0.0
        if len(positions):
            gold = path_score(emissions[row], *args, positions, tags[row, positions])
        assert log_partition[row] == pytest.approx(expected_z, abs=1e-5)
        assert log_likelihood[row] == pytest.approx(gold - expected_z, abs=1e-5)
        assert best_score[row] == pytest.approx(expected_best, abs=1e-5)
        assert tuple(decoded[row, positions]) == tuple(expected_path)
        assert not decoded[row, mask[row] == 0].any()  # 0 at masked positions


def test_lengths_and_mask_are_interchangeable_and_start_end_default_to_zero():
    rng = np.random.default_rng(7)
    emissions, transitions, _, _ = random_crf(rng, 3, 6, 4)
    lengths = np.array([6, 2, 4])
    mask = np.arange(6)[None, :] < lengths[:, None]
    tags = rng.integers(0, 4, size=(3, 6))
    zeros = np.zeros(4, np.float32)
    from_lengths = modeling.crf_log_likelihood(emissions, tags, lengths, transitions)
    from_mask = modeling.crf_log_likelihood(emissions, tags, mask, transitions, zeros, zeros)
    np.testing.assert_allclose(from_lengths, from_mask, atol=1e-6)


def torch_crf(transitions, start, end):
    crf = torchcrf.CRF(len(start), batch_first=True)
    with torch.no_grad():
        crf.transitions.copy_(torch.from_numpy(transitions))
        crf.start_transitions.copy_(torch.from_numpy(start))
        crf.end_transitions.copy_(torch.from_numpy(end))
    return crf


@pytest.mark.parametrize("seed", range(3))
def test_equal_to_pytorch_crf_on_padded_batches(seed):
    rng = np.random.default_rng(100 + seed)
    batch, length, num_tags = 16, 20, 9
    emissions, transitions, start, end = random_crf(rng, batch, length, num_tags, scale=2.0)
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    tags = rng.integers(0, num_tags, size=(batch, length))

    crf = torch_crf(transitions, start, end)
    t_emissions, t_mask = torch.from_numpy(emissions), torch.from_numpy(mask).bool()
    expected = crf(t_emissions, torch.from_numpy(tags), t_mask, reduction="none").detach().numpy()
    expected_paths = crf.decode(t_emissions, t_mask)

    args = (transitions, start, end)
    np.testing.assert_allclose(
        modeling.crf_log_likelihood(emissions, tags, mask, *args), expected, atol=1e-4, rtol=1e-6
    )
    decoded = modeling.crf_decode(emissions, lengths, *args)[0].numpy()
    for row, path in enumerate(expected_paths):
        assert decoded[row, : lengths[row]].tolist() == path


def test_bfloat16_emissions_are_scored_in_float32():
    rng = np.random.default_rng(4)
    emissions, transitions, start, end = random_crf(rng, 2, 5, 3)
    tags = rng.integers(0, 3, size=(2, 5))
    bf16 = tf.cast(emissions, tf.bfloat16)
    result = modeling.crf_log_likelihood(bf16, tags, [5, 3], transitions, start, end)
    assert result.dtype == tf.float32
    widened = tf.cast(bf16, tf.float32)
    expected = modeling.crf_log_likelihood(widened, tags, [5, 3], transitions, start, end)
    np.testing.assert_array_equal(result, expected)


# -- constraints ---------------------------------------------------------------------------------

SCHEME_TAGS = {scheme: ner_data.tag_list(["LOC", "PER"], scheme) for scheme in ner_data.SCHEMES}


@pytest.mark.parametrize("scheme", list(ner_data.SCHEMES))
def test_allowed_matrix_agrees_with_the_scheme_rules_of_ner_data(scheme):
    tags = SCHEME_TAGS[scheme]
    allowed, allowed_start, allowed_end = (
        x.numpy() for x in modeling.crf_allowed_transitions(tags, scheme)
    )
    rng = np.random.default_rng(0)
    for _ in range(300):
        sequence = rng.integers(0, len(tags), size=rng.integers(1, 6))
        by_matrix = (
            allowed_start[sequence[0]]
            and allowed_end[sequence[-1]]
            and all(allowed[a, b] for a, b in zip(sequence, sequence[1:], strict=False))
        )
        names = [tags[i] for i in sequence]
        assert by_matrix == (ner_data.first_invalid_tag(names, scheme) is None), names
    if scheme == "BIO":
        o, b_loc, i_loc, i_per = (tags.index(t) for t in ("O", "B-LOC", "I-LOC", "I-PER"))
        assert not allowed[o, i_loc] and not allowed[b_loc, i_per] and allowed[b_loc, i_loc]
        assert not allowed_start[i_loc] and allowed_end[i_loc]


@pytest.mark.parametrize("scheme", list(ner_data.SCHEMES))
def test_constrained_decoding_never_outputs_a_forbidden_transition(scheme):
    tags = SCHEME_TAGS[scheme]
    constraints = modeling.crf_allowed_transitions(tags, scheme)
    rng = np.random.default_rng(5)
    emissions, transitions, start, end = random_crf(rng, 64, 12, len(tags), scale=30.0)
    mask = (rng.random((64, 12)) < 0.7).astype(np.int32)
    parameters = modeling.crf_constrain(transitions, start, end, *constraints)
    decoded = modeling.crf_decode(emissions, mask, *parameters)[0].numpy()
    unconstrained = modeling.crf_decode(emissions, mask, transitions, start, end)[0].numpy()
    invalid_before = 0
    for row in range(64):
        positions = np.flatnonzero(mask[row])
        assert (
            ner_data.first_invalid_tag([tags[i] for i in decoded[row, positions]], scheme) is None
        )
        names = [tags[i] for i in unconstrained[row, positions]]
        invalid_before += ner_data.first_invalid_tag(names, scheme) is not None
    assert invalid_before > 10  # the constraints did have work to do


def test_allowed_transitions_rejects_tags_outside_the_scheme():
    with pytest.raises(AlbertError, match="'E-PER' is not a BIO tag"):
        modeling.crf_allowed_transitions(["O", "B-PER", "E-PER"], "BIO")
    with pytest.raises(AlbertError, match="unknown tag scheme"):
        modeling.crf_allowed_transitions(["O"], "IOB1")


# -- the model -----------------------------------------------------------------------------------


def small_config(style, **overrides):
    return conftest.small_config(style, **{"num_hidden_layers": 1, **overrides})


def token_batch(seed=0, batch=3, length=10, num_labels=5):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 97, size=(batch, length)).astype(np.int32)
    input_mask = np.ones((batch, length), np.int32)
    input_mask[1, 6:] = 0
    label_mask = input_mask.copy()
    label_mask[:, 0] = 0  # [CLS]
    label_mask[0, 3] = 0  # a continuation WordPiece
    labels = rng.integers(0, num_labels, size=(batch, length)).astype(np.int32) * label_mask
    return ids, input_mask, labels, label_mask


@pytest.mark.parametrize("style,ln_type", [("google", "postln"), ("brightmart", "preln")])
def test_token_classifier_variables_and_checkpoint_loading(tmp_path, style, ln_type):
    config = small_config(style, ln_type=ln_type)
    model = modeling.AlbertForTokenClassification(config, num_labels=5, use_crf=True, seed=1)
    heads = {n: v.shape.as_list() for n, v in model.head_weights.items()}
    expected = {
        "output_weights": [5, 32],
        "output_bias": [5],
        "output_transitions": [5, 5],
        "output_start_transitions": [5],
        "output_end_transitions": [5],
    }
    if ln_type == "preln":
        expected.update({"loss/LayerNorm/gamma": [32], "loss/LayerNorm/beta": [32]})
    assert heads == expected
    # A pretrained encoder checkpoint (no heads) loads: the heads are allowed to be missing.
    prefix = checkpoints.save_tensors(model.encoder.named_variables(), tmp_path / "encoder")
    report = checkpoints.load_checkpoint(model, prefix)
    assert sorted(report.missing_allowed) == sorted(expected)


def test_token_classifier_with_crf_trains_and_decodes_under_xla():
    """One XLA compilation covers the head, the CRF likelihood (the loss), its gradient and
    constrained Viterbi decoding, on windows with padding, holes and no label at all."""
    tags = SCHEME_TAGS["BIO"]
    constraints = modeling.crf_allowed_transitions(tags, "BIO")
    model = modeling.AlbertForTokenClassification(
        small_config("google"),
        num_labels=len(tags),
        use_crf=True,
        allowed_transitions=constraints,
        seed=2,
    )
    ids, input_mask, labels, label_mask = token_batch(num_labels=len(tags))
    label_mask[2] = 0  # a window without labels
    logits = model(ids, input_mask)  # the encoder under XLA is tested in test_modeling.py
    sequence = model.encoder(ids, input_mask)["sequence_output"]
    np.testing.assert_allclose(model.logits_from_sequence(sequence), logits, atol=1e-6)
    for variable in model.crf_parameters():  # non-zero transitions: a real test of the CRF
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, 2]))

    def step(sequence, labels, label_mask):
        with tf.GradientTape() as tape:
            head_logits = model.logits_from_sequence(sequence, training=True)
            loss = model.loss(head_logits, labels, label_mask)
        gradients = tape.gradient(loss, list(model.head_weights.values()))
        return loss, gradients, model.decode(head_logits, label_mask)

    model.classifier_dropout = 0.0  # training=True, yet deterministic
    eager = step(sequence, labels, label_mask)
    xla = tf.function(step, jit_compile=True)(sequence, labels, label_mask)
    assert np.isfinite(eager[0].numpy())
    np.testing.assert_allclose(xla[0], eager[0], rtol=1e-5)
    for a, b in zip(xla[1], eager[1], strict=True):
        assert b is not None and np.abs(b.numpy()).sum() > 0  # every head variable learns
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(xla[2], eager[2])
    check_decoded(eager[2].numpy(), label_mask, tags)


def check_decoded(decoded, label_mask, tags):
    """Predictions only at labelled positions, and always a valid BIO sequence there."""
    assert not decoded[label_mask == 0].any()
    for row in range(len(decoded)):
        names = [tags[i] for i in decoded[row][label_mask[row] == 1]]
        assert ner_data.first_invalid_tag(names, "BIO") is None


def test_token_classifier_without_crf():
    tags = SCHEME_TAGS["BIO"]
    config = small_config("brightmart", ln_type="preln")
    model = modeling.AlbertForTokenClassification(config, num_labels=len(tags), seed=3)
    ids, input_mask, labels, label_mask = token_batch(num_labels=len(tags))
    logits = model(ids, input_mask)
    # the loss is the mean token cross-entropy over the labelled positions
    log_probs = tf.nn.log_softmax(logits).numpy()
    picked = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    expected = (picked * label_mask).sum() / label_mask.sum()
    np.testing.assert_allclose(model.loss(logits, labels, label_mask), expected, rtol=1e-5)
    # plain argmax decoding, or a constrained Viterbi over log-probabilities
    np.testing.assert_array_equal(
        model.decode(logits, label_mask), logits.numpy().argmax(-1) * label_mask
    )
    model.allowed_transitions = modeling.crf_allowed_transitions(tags, "BIO")
    check_decoded(model.decode(logits * 50.0, label_mask).numpy(), label_mask, tags)
