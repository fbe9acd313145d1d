"""ner_data.py: readers, character/token alignment, windows, metrics (against seqeval), writers.

The real data is CLUENER2020 in ../shared/data/cluener; counts are checked against an
independent reading of the files with the json module.
"""

import collections
import json
import warnings

import numpy as np
import pytest

import classifier_data
import ner_data
import tokenization
from errors import AlbertError
from ner_data import Entity
from tests import padding_oracle
from tests.conftest import shared_data

seqeval_metrics = pytest.importorskip("seqeval.metrics")
seqeval_scheme = pytest.importorskip("seqeval.scheme")

SEQEVAL_SCHEMES = {"BIO": seqeval_scheme.IOB2, "BIOES": seqeval_scheme.IOBES}


@pytest.fixture(scope="module")
def tokenizer():
    return tokenization.FullTokenizer(str(shared_data("vocab.txt")))


@pytest.fixture(scope="module")
def cluener():
    """split -> (examples, report) of the real CLUENER files."""
    return {
        split: ner_data.read_cluener(str(shared_data(f"cluener/{split}.json")))
        for split in ("train", "dev", "test")
    }


def write(tmp_path, name, text, newline="\n", bom=False):
    path = tmp_path / name
    data = text.replace("\n", newline).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return str(path)


# ----------------------------------------------------------------------------- CLUENER


def test_cluener_files_are_read_completely(cluener):
    for split, sentences, spans in (("train", 10748, 23971), ("dev", 1343, 3072)):
        examples, report = cluener[split]
        with open(report.path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        per_type = collections.Counter(
            t
            for row in rows
            for t, mentions in row["label"].items()
            for o in mentions.values()
            for _ in o
        )
        assert len(rows) == len(examples) == sentences
        assert sum(per_type.values()) == spans
        assert report.num_malformed == 0 and not report.skipped
        kept = collections.Counter(e.type for ex in examples for e in ex.entities)
        dropped = sum(report.corrected.values())
        assert sum(kept.values()) + dropped == spans
        assert [ex.text for ex in examples] == [row["text"] for row in rows]
        if split == "dev":
            assert kept == per_type and dropped == 0
    # the one nested case: the book title is kept, the two company names inside it dropped
    examples, report = cluener["train"]
    assert report.corrected == {"overlapping entities dropped (the longer one kept)": 2}
    assert all(":1507: dropped company" in note for note in report.notes)
    assert examples[1506].entities == [Entity("book", 15, 35)]
    assert "2 overlapping entities dropped" in report.summary()

    test_examples, report = cluener["test"]
    assert len(test_examples) == report.num_unlabelled == 1345
    assert [e.id for e in test_examples] == list(range(1345))


def test_alignment_round_trip_is_exact_on_all_of_cluener(cluener, tokenizer):
    """Every gold entity of train and dev maps onto tokens and back to the identical span."""
    for split in ("train", "dev"):
        for example in cluener[split][0]:
            encoding = ner_data.tokenize_with_offsets(tokenizer, example.text)
            # char units: one token per character, no character of CLUENER without a token
            assert (encoding.ends - encoding.starts == 1).all()
            assert encoding.starts.tolist() == list(range(len(example.text)))
            spans, widened, lost = ner_data.char_spans_to_unit_spans(encoding, example.entities)
            assert not widened and not lost, example.source
            for scheme in ("BIO", "BIOES"):
                tags = ner_data.spans_to_tags(spans, encoding.num_units, scheme)
                units = ner_data.extract_entities(tags, scheme, strict=True)
                back = ner_data.unit_spans_to_char_spans(encoding, units)
                assert back == example.entities, example.source


def test_word_units_are_fulltokenizer_tokens_and_widen_inside_word_entities(cluener, tokenizer):
    examples = cluener["dev"][0]
    widened = []
    for example in examples:
        encoding = ner_data.tokenize_with_offsets(tokenizer, example.text, units="word")
        assert encoding.tokens == tokenizer.tokenize(example.text)
        for token, start, end in zip(encoding.tokens, encoding.starts, encoding.ends, strict=True):
            surface = example.text[start:end].lower()
            assert token in ("[UNK]", surface, "##" + surface)
        spans, wide, lost = ner_data.char_spans_to_unit_spans(encoding, example.entities)
        widened += wide
        assert not lost
        exact = [e for e in example.entities if e not in wide]
        back = ner_data.unit_spans_to_char_spans(encoding, spans)
        assert [b for b, e in zip(back, example.entities, strict=True) if e in exact] == exact
    # e.g. "都灵vsac米兰": the organization "ac米兰" starts inside the word "vsac"
    assert len(widened) == 7


TRICKY = [
    "我爱北京 Café，iPhone13发布😀！",
    "  New\tYork\u3000市\r\n",
    "a\u0000b\ufffdc\u200bd",
    "DOTAIMBA3.76c经过修复",
    "ΟΔΟΣ über ǆ İstanbul",
]


@pytest.mark.parametrize("text", TRICKY)
def test_offsets_of_tricky_text(tokenizer, text):
    words = ner_data.tokenize_with_offsets(tokenizer, text, units="word")
    expected = tokenizer.tokenize(text)
    if "ΟΔΟΣ" in text:  # documented: per-character lower-casing gives σ, not final ς
        expected = [t.replace("ς", "σ") for t in expected]
        words.tokens = [t.replace("ς", "σ") for t in words.tokens]
    assert words.tokens == expected
    chars = ner_data.tokenize_with_offsets(tokenizer, text)
    for encoding in (words, chars):
        covered = {
            i for s, e in zip(encoding.starts, encoding.ends, strict=True) for i in range(s, e)
        }
        assert not covered & {i for i, c in enumerate(text) if c.isspace()}  # no token for spaces
        assert (np.diff(encoding.starts) >= 0).all()
    if "😀" in text:
        emoji = text.index("😀")
        assert chars.tokens[list(chars.starts).index(emoji)] == "[UNK]"
    if text.startswith("DOTA"):
        assert chars.tokens[:4] == ["d", "##o", "##t", "##a"]


# ----------------------------------------------------------------------------- bad input


def test_cluener_bad_rows_are_counted_or_fatal_when_strict(tmp_path):
    rows = [
        '{"text": "浙商银行", "label": {"company": {"浙商银行": [[0, 3]]}}}',
        '{"text": "浙商银行", "label": {"company": {"浙商银行": [[1, 3]]}}}',  # offsets
        '{"text": "浙商银行", "label": {"company": {"浙商银行": [[0, 9]]}}}',  # out of range
        '{"text": "浙商银行", "label": {"bank": {"浙商银行": [[0, 3]]}}}',  # unknown type
        "not json",
        '{"text": "", "label": {}}',  # empty sentence
        '{"text": "叶老桂博士", "label": {"name": {"叶老桂": [[0, 2]], "叶老": [[0, 1]]}}}',
    ]
    path = write(tmp_path, "train.json", "\n".join(rows) + "\n")
    examples, report = ner_data.read_cluener(path, types=["company", "name"])
    assert [e.text for e in examples] == ["浙商银行", "叶老桂博士"]
    assert examples[1].entities == [Entity("name", 0, 3)]  # the nested one dropped
    assert report.num_malformed == 4 and report.skipped == {"empty sentences": 1}
    summary = report.summary()
    for fragment in (":2: offsets [1, 3] hold '商银行', not the entity '浙商银行'", ":3: offsets"):
        assert fragment in summary
    assert "1 unknown entity type 'bank' (no such type in train or --labels)" in summary
    assert "dropped name 0-1 '叶老'" in summary

    with pytest.raises(AlbertError) as error:
        ner_data.read_cluener(path, strict=True)
    message = str(error.value)
    assert "train.json:2:" in message and "\n" not in message and "--strict" in message

    # an unlabelled (test) file keeps its empty sentence, so every id gets a line
    path = write(tmp_path, "test.json", '{"id": 0, "text": "浙商"}\n{"id": 1, "text": " "}\n')
    examples, report = ner_data.read_cluener(path)
    assert [e.id for e in examples] == [0, 1] and report.kept_empty == 1


BIO_FILE = """我 B-PER
爱 O

北 B-LOC
京 I-LOC
市 I-LOC

在 O
上 I-LOC
海 I-LOC

坏 B-XYZ

, O
"""


def test_bio_reading_with_repairs_unknown_tags_and_empty_sentences(tmp_path):
    path = write(tmp_path, "train.txt", BIO_FILE.replace("\n, O", "\n\u3000 O"))
    labels = ner_data.tag_list(["LOC", "PER"], "BIO")
    examples, report = ner_data.read_bio(path, "BIO", labels=labels)
    assert [e.text for e in examples] == ["我爱", "北京市", "在上海"]
    assert [e.entities for e in examples] == [
        [Entity("PER", 0, 1)],
        [Entity("LOC", 0, 3)],
        [Entity("LOC", 1, 3)],  # I- without B-: read as B-, like seqeval
    ]
    assert examples[2].line_numbers == [8, 9, 10] and examples[2].line_spans[1] == (1, 2)
    assert report.corrected == {"I- without B- (read as B-, like seqeval)": 1}
    assert "train.txt:9: I-LOC after O" in report.summary()
    assert report.malformed == {"unknown tag 'B-XYZ' (no such tag in train or --labels)": 1}
    assert report.skipped == {"empty sentences": 1}  # the line holding a full-width space

    with pytest.raises(AlbertError, match=r"train.txt:9: malformed row \(I-LOC after O"):
        ner_data.read_bio(path, "BIO", labels=labels, strict=True)
    # without --labels any well-formed tag is accepted: the label set comes from the file
    examples, _ = ner_data.read_bio(path, "BIO")
    assert ner_data.entity_types(examples) == ["LOC", "PER", "XYZ"]
    assert ner_data.tag_list(ner_data.entity_types(examples), "BIO")[:3] == ["O", "B-LOC", "I-LOC"]


def test_bio_scheme_errors_and_label_lists(tmp_path):
    path = write(tmp_path, "t.txt", "我 S-PER\n")
    _, report = ner_data.read_bio(path, "BIO")
    assert "'S-PER' is not a BIO tag (the file looks BIOES/BMES: pass --tag_scheme)" in (
        report.summary()
    )
    examples, report = ner_data.read_bio(path, "BIOES")
    assert examples[0].entities == [Entity("PER", 0, 1)] and report.num_malformed == 0

    path = write(tmp_path, "t2.txt", "北 B-LOC\n京 M-LOC\n市 E-LOC\n\n我 B-PER\n们 O\n")
    examples, report = ner_data.read_bio(path, "BMES")
    assert [e.entities for e in examples] == [[Entity("LOC", 0, 3)], [Entity("PER", 0, 1)]]
    assert "O after B-PER (B-PER is never closed by E-PER)" in report.summary()

    assert ner_data.tag_list_from_labels(["O", "I-X", "B-X"], "BIO") == ["O", "I-X", "B-X"]
    with pytest.raises(AlbertError, match=r"missing \['I-Y'\]"):
        ner_data.tag_list_from_labels(["O", "B-X", "I-X", "B-Y"], "BIO")
    with pytest.raises(AlbertError, match="not BIO tags"):
        ner_data.tag_list_from_labels(["O", "B-X", "I-X", "E-X"], "BIO")
    with pytest.raises(AlbertError, match="unknown tag scheme 'IOB1'"):
        ner_data.read_bio(path, "IOB1")

    path = write(tmp_path, "t3.txt", "我 B-PER\n们\n")
    _, report = ner_data.read_bio(path, "BIO")
    assert report.malformed == {"missing tag column (other lines have one)": 1}


@pytest.mark.parametrize("newline,bom", [("\r\n", True), ("\r\n", False), ("\n", True)])
def test_crlf_and_bom_are_transparent(tmp_path, newline, bom):
    plain = write(tmp_path, "plain.txt", BIO_FILE)
    other = write(tmp_path, "other.txt", BIO_FILE, newline=newline, bom=bom)
    for a, b in zip(ner_data.read_bio(plain)[0], ner_data.read_bio(other)[0], strict=True):
        assert (a.text, a.entities, a.line_numbers) == (b.text, b.entities, b.line_numbers)
    row = '{"text": "浙商银行", "label": {"company": {"浙商银行": [[0, 3]]}}}\n'
    crlf = write(tmp_path, "c.json", row * 2, newline=newline, bom=bom)
    examples, report = ner_data.read_cluener(crlf)
    assert [e.text for e in examples] == ["浙商银行"] * 2 and report.num_malformed == 0


def test_word_per_line_files_keep_word_boundaries(tmp_path):
    path = write(tmp_path, "en.txt", "-DOCSTART- -X- O O\n\nNew NNP B-LOC\nYork NNP I-LOC\n! . O\n")
    examples, report = ner_data.read_bio(path, "BIO")
    assert examples[0].text == "New York !"
    assert examples[0].entities == [Entity("LOC", 0, 8)]
    assert report.skipped == {"-DOCSTART- lines": 1}


# ----------------------------------------------------------------------------- windows


def test_window_ranges_cover_everything_and_start_on_units():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, size = int(rng.integers(1, 300)), int(rng.integers(2, 40))
        stride = int(rng.integers(1, size + 1))
        unit_start = rng.random(n) < 0.7
        unit_start[0] = True
        ranges = ner_data.window_ranges(unit_start, size, stride)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        for (s, e), (next_s, _) in zip(ranges, ranges[1:], strict=False):
            assert e - s == size and s < next_s <= e  # full windows, no gap, progress
        for (previous, _), (s, _) in zip(ranges, ranges[1:], strict=False):
            if not unit_start[s]:  # only when no unit starts within the stride
                assert s == previous + stride
                assert not unit_start[previous + 1 : previous + stride + 1].any()
    with pytest.raises(AlbertError, match="stride"):
        ner_data.window_ranges([True] * 5, 4, 5)


def gold_window_predictions(features):
    """What a perfect tagger predicts for every window: its gold label ids."""
    return [row.copy() for row in features.label_ids]


@pytest.mark.parametrize("units", ["char", "word"])
def test_a_2000_character_sentence_goes_through_windows(tmp_path, tokenizer, units):
    rng = np.random.default_rng(1)
    names = [("北京", "LOC"), ("上海市", "LOC"), ("Apple", "ORG"), ("叶老桂", "PER")]
    fillers = ["的", "在", "了", " ", "2020年", "，"]
    pieces, entities, position = [], [], 0
    while position < 2000:
        if rng.random() < 0.15:
            name, entity_type = names[rng.integers(0, len(names))]
            entities.append(Entity(entity_type, position, position + len(name)))
            name += " " if name == "Apple" else ""  # keeps "Apple" a word of its own
        else:
            name = fillers[rng.integers(0, len(fillers))]
        pieces.append(name)
        position += len(name)
    text = "".join(pieces)
    example = ner_data.NerExample("long-1", text, entities, source="long:1")
    other = ner_data.NerExample("short-2", "我在北京", [Entity("LOC", 2, 4)], source="short:2")
    tags = ner_data.tag_list(["LOC", "ORG", "PER"], "BIOES")
    features = ner_data.convert_examples_to_features(
        [example, other], tokenizer, tags, "BIOES", max_seq_length=64, units=units
    )
    assert features.report.split_sentences == 1
    assert "1 sentences longer than one window were split" in features.report.summary()
    assert (features.lengths <= 64).all() and features.example_index.tolist()[-1] == 1
    # a perfect tagger's window predictions merge back into exactly the gold entities
    predicted = ner_data.predict_entities(features, gold_window_predictions(features))
    assert predicted == [example.entities, other.entities]
    scores = ner_data.entity_scores([example.entities, other.entities], predicted)
    assert scores["micro avg"]["f1-score"] == 1.0


def test_merge_takes_each_unit_from_the_window_where_it_is_most_central(tokenizer):
    example = ner_data.NerExample("x", "甲" * 20, [])
    features = ner_data.convert_examples_to_features(
        [example], tokenizer, ["O", "B-X", "I-X"], max_seq_length=10, window_stride=4
    )
    assert [
        (s, s + n - 2) for s, n in zip(features.window_start, features.lengths, strict=True)
    ] == [
        (0, 8),
        (4, 12),
        (8, 16),
        (12, 20),
    ]
    # window w predicts tag id w % 3 everywhere: the merge shows which window each unit used
    predictions = [np.full(n, w % 3, np.int32) for w, n in enumerate(features.lengths)]
    merged = ner_data.merge_windows(features, predictions)[0]
    # units 0-5 from window 0 (sentence start), 6-9 from 1, 10-13 from 2, 14-19 from 3
    assert merged.tolist() == [0] * 6 + [1] * 4 + [2] * 4 + [0] * 6


def test_features_batches_and_dataset(cluener, tokenizer):
    examples = cluener["dev"][0][:40] + [ner_data.NerExample("e", "   ", None)]
    tags = ner_data.tag_list(ner_data.entity_types(cluener["train"][0]), "BIO")
    features = ner_data.convert_examples_to_features(examples, tokenizer, tags, max_seq_length=24)
    assert features.report.no_tokens == 1 and features.report.split_sentences > 0
    for row in range(len(features)):
        mask = features.label_mask[row]
        assert mask[0] == 0 and mask[-1] == 0 and mask[1] == 1
        assert not features.label_ids[row][mask == 0].any()
    batches = classifier_data.make_batches(features.lengths, 8, shuffle=True, seed=3)
    batch = padding_oracle.pad_batch(features, batches[0], 24)
    assert set(batch) == {"input_ids", "input_mask", "segment_ids", "label_ids", "label_mask"}
    assert batch["input_ids"].shape[1] in (16, 24)
    assert (batch["input_mask"].sum(1) == features.lengths[batches[0]]).all()

    # the one padding pipeline (classifier_data.make_dataset) pads every per-token column
    dataset = classifier_data.make_dataset(features, batches, 24)
    for indices, element in zip(batches, dataset, strict=True):
        expected = padding_oracle.pad_batch(features, indices, 24)
        assert set(element) == set(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(element[name].numpy(), value)
    full = [b for b in batches if len(b) == 8]
    fixed = classifier_data.make_dataset(features, full, 24, fixed_length=True, batch_size=8)
    assert fixed.element_spec["label_mask"].shape.as_list() == [8, 24]
    for indices, element in zip(full, fixed, strict=True):
        expected = padding_oracle.pad_batch(features, indices, 24, fixed_length=True)
        for name, value in expected.items():
            np.testing.assert_array_equal(element[name].numpy(), value)


# ----------------------------------------------------------------------------- metrics


def seqeval_report(y_true, y_pred, scheme, strict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if strict:
            return seqeval_metrics.classification_report(
                y_true, y_pred, output_dict=True, mode="strict", scheme=SEQEVAL_SCHEMES[scheme]
            )
        return seqeval_metrics.classification_report(y_true, y_pred, output_dict=True)


def assert_same_scores(y_true, y_pred, scheme, strict, scalar_scores=True):
    ours = ner_data.tag_scores(y_true, y_pred, scheme, strict=strict)
    theirs = seqeval_report(y_true, y_pred, scheme, strict)
    assert list(ours) == list(theirs)
    for name, row in theirs.items():
        for metric, value in row.items():
            # seqeval's macro average over no types at all is nan (numpy warns); ours is 0
            expected = 0.0 if np.isnan(value) else float(value)
            assert ours[name][metric] == pytest.approx(expected, abs=1e-12), (name, metric)
    if scalar_scores and not strict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f1 = seqeval_metrics.f1_score(y_true, y_pred)
            precision = seqeval_metrics.precision_score(y_true, y_pred)
            recall = seqeval_metrics.recall_score(y_true, y_pred)
        micro = ours["micro avg"]
        assert (micro["f1-score"], micro["precision"], micro["recall"]) == pytest.approx(
            (f1, precision, recall), abs=1e-12
        )
    return ours


def random_tags(rng, scheme, types, length):
    prefixes = ner_data.SCHEMES[scheme]
    tags = [f"{p}-{t}" for p in prefixes for t in types] + ["O"] * 3
    return [str(tags[i]) for i in rng.integers(0, len(tags), size=length)]


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
@pytest.mark.parametrize("strict", [False, True])
def test_metrics_equal_seqeval_on_random_tags(scheme, strict):
    rng = np.random.default_rng(11)
    for trial in range(30):
        types = ["PER", "LOC", "ORG-X"][: 1 + trial % 3]
        lengths = rng.integers(1, 12, size=rng.integers(1, 8))
        y_true = [random_tags(rng, scheme, types, n) for n in lengths]
        y_pred = [random_tags(rng, scheme, types, n) for n in lengths]
        if trial % 5 == 0:
            y_pred = y_true  # perfect
        if trial % 7 == 0:
            y_pred = [["O"] * n for n in lengths]  # nothing predicted
        assert_same_scores(y_true, y_pred, scheme, strict)


def perturb(rng, tags, tag_names, entities):
    """Realistic errors: wrong type, missed entity, shifted boundary, random tag noise."""
    tags = list(tags)
    for entity in entities:
        roll = rng.random()
        if roll < 0.1:
            tags[entity.start : entity.end] = ["O"] * (entity.end - entity.start)
        elif roll < 0.2:
            new_type = rng.choice(["name", "address", "game"])
            tags[entity.start : entity.end] = [
                t[:2] + new_type for t in tags[entity.start : entity.end]
            ]
        elif roll < 0.3 and entity.end < len(tags):
            tags[entity.end] = tags[entity.end - 1]
    for i in np.flatnonzero(rng.random(len(tags)) < 0.03):
        tags[i] = tag_names[rng.integers(0, len(tag_names))]
    return tags


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_metrics_equal_seqeval_on_cluener_dev_with_perturbed_predictions(cluener, scheme):
    examples = cluener["dev"][0]
    tag_names = ner_data.tag_list(ner_data.entity_types(examples), scheme)
    rng = np.random.default_rng(5)
    y_true = [ner_data.spans_to_tags(e.entities, len(e.text), scheme) for e in examples]
    y_pred = [perturb(rng, t, tag_names, e.entities) for t, e in zip(y_true, examples, strict=True)]
    for strict in (False, True):
        ours = assert_same_scores(y_true, y_pred, scheme, strict, scalar_scores=False)
        assert 0.3 < ours["micro avg"]["f1-score"] < 0.9  # the perturbation did something
    perfect = ner_data.tag_scores(y_true, y_true, scheme)
    assert perfect["micro avg"]["f1-score"] == 1.0 and perfect["micro avg"]["support"] == 3072
    # character entities scored directly give the same numbers as the tags
    predicted = [ner_data.extract_entities(p, scheme) for p in y_pred]
    direct = ner_data.entity_scores([e.entities for e in examples], predicted)
    assert direct == ner_data.tag_scores(y_true, y_pred, scheme)
    assert "micro avg" in ner_data.format_scores(direct)


def test_bmes_reads_like_bioes_and_round_trips():
    rng = np.random.default_rng(2)
    for _ in range(100):
        bioes = random_tags(rng, "BIOES", ["A", "B"], int(rng.integers(0, 10)))
        bmes = [t.replace("I-", "M-") for t in bioes]
        for strict in (False, True):
            assert ner_data.extract_entities(bmes, "BMES", strict) == ner_data.extract_entities(
                bioes, "BIOES", strict
            )
        assert (ner_data.first_invalid_tag(bmes, "BMES") is None) == (
            ner_data.first_invalid_tag(bioes, "BIOES") is None
        )
    spans = [Entity("A", 0, 1), Entity("B", 2, 5)]
    for scheme in ner_data.SCHEMES:
        tags = ner_data.spans_to_tags(spans, 6, scheme)
        assert ner_data.first_invalid_tag(tags, scheme) is None
        assert ner_data.extract_entities(tags, scheme, strict=True) == spans
    assert ner_data.spans_to_tags(spans, 6, "BMES") == ["S-A", "O", "B-B", "M-B", "E-B", "O"]


# ----------------------------------------------------------------------------- writers


def test_cluener_submission_and_readable_output(tmp_path, cluener):
    examples = cluener["dev"][0][:50]
    path = tmp_path / "dev_predict.json"
    ner_data.write_cluener(str(path), examples, [e.entities for e in examples])
    with open(cluener["dev"][1].path, encoding="utf-8") as f:
        originals = [json.loads(line) for line in f][:50]
    written = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in written] == list(range(50))

    def normalized(label):
        return {t: {m: sorted(o) for m, o in mentions.items()} for t, mentions in label.items()}

    assert [normalized(r["label"]) for r in written] == [normalized(r["label"]) for r in originals]

    test = cluener["test"][0][:3]
    ner_data.write_cluener(str(path), test, [[Entity("address", 11, 14)], [], []])
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"id": 0, "label": {"address": {"丹棱县": [[11, 13]]}}}

    readable = tmp_path / "dev.txt"
    ner_data.write_readable(str(readable), examples[:1], [examples[0].entities])
    text, shown = readable.read_text(encoding="utf-8").rstrip("\n").split("\t")
    assert text == examples[0].text
    assert "彭小军/name[0,2]" in shown


def test_conll_output_keeps_every_line(tmp_path):
    source = write(
        tmp_path, "test.txt", "\n我\n爱\n北\n京\n\n\n坏 B-XYZ\n\n上\n海\n", newline="\r\n"
    )
    examples, report = ner_data.read_bio(source, "BIO", labels=["O", "B-LOC", "I-LOC"])
    assert report.num_malformed == 1 and report.num_unlabelled == 2
    predictions = [[Entity("LOC", 2, 4)], [Entity("LOC", 0, 2)]]
    out = tmp_path / "out.txt"
    unpredicted = ner_data.write_conll(str(out), source, examples, predictions, "BIO")
    assert unpredicted == 1  # the skipped sentence's line, written with O
    assert out.read_bytes().decode("utf-8").split("\n") == [
        "",
        "我 O",
        "爱 O",
        "北 B-LOC",
        "京 I-LOC",
        "",
        "",
        "坏 B-XYZ O",
        "",
        "上 B-LOC",
        "海 I-LOC",
        "",
    ]


@pytest.mark.parametrize(
    "tags, scheme",
    [
        (["O", "B-PER", "I-PER"], "BIO"),
        (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "BIOES"),
        (["O", "S-LOC", "B-LOC", "E-LOC"], "BIOES"),
        (["O", "B-LOC", "M-LOC", "E-LOC", "S-LOC"], "BMES"),
        (["LABEL_0", "LABEL_1"], None),  # HF's placeholder names
        (["O"], None),  # no entity tag
        (["O", "B-PER", "X-PER"], None),
        (["O", "PER"], None),
    ],
)
def test_scheme_of_names_the_smallest_scheme_every_tag_fits(tags, scheme):
    assert ner_data.scheme_of(tags) == scheme
