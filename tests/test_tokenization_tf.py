"""Tests for tokenization_tf.py: the in-graph tokenizer gives exactly FullTokenizer's ids.

Compared with tokenization.FullTokenizer (the reference) on every text of the shared data
sets, on hand-picked hard strings, on every assigned code point, on random strings of tricky
characters and on invalid UTF-8; `pack` against FullTokenizer.encode_pair on brute-forced
lengths. Also: use inside tf.function / tf.data, and a SavedModel round trip (export_savedmodel's
text signatures: tests/test_export_text_signatures.py, with saved_model_cli in a subprocess).
"""

import json
import random
import shutil
import subprocess
import sys
import time
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

import errors
import ner_data
import tokenization
import tokenization_tf
from tests.conftest import REPO_ROOT, shared_data

BATCH_SIZE = 512


def _tsv(columns, header=False):
    """Reader of the text columns of a tab-separated file: path -> list of (line, texts)."""

    def read(path):
        lines = []
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if header and line_number == 1:
                    continue
                fields = line.rstrip("\n").split("\t")
                assert len(fields) > max(columns), f"{path}:{line_number}: too few columns"
                lines.append([fields[column] for column in columns])
        return lines

    return read


def _json_lines(fields):
    """Reader of the text fields of a JSON-lines file: path -> list of (line, texts)."""

    def read(path):
        with open(path, encoding="utf-8") as f:
            return [[json.loads(line)[field] for field in fields] for line in f]

    return read


# (directory, file pattern, reader) for every shared file with text.
SHARED_TEXT_FILES = [
    ("lcqmc_small", "*.txt", _tsv((0, 1))),
    ("chnsenticorp", "*.tsv", _tsv((1,), header=True)),
    ("thucnews_titles", "*.txt", _tsv((0,))),
    ("bq_corpus", "*.tsv", _tsv((0, 1))),
    ("oppo", "dev.tsv", _tsv((0, 1))),
    ("paws_x_zh", "dev.tsv", _tsv((0, 1))),
    ("ocnli", "*.json", _json_lines(("sentence1", "sentence2"))),
    ("cluener", "*.json", _json_lines(("text",))),
]

# Hand-picked strings where a tokenizer can go wrong.
HARD_TEXTS = [
    "我爱北京天安门 Café",
    "ＡＢＣ１２３，ａｂｃ！？（全角）",  # full-width forms
    "😀 👍🏽 👨‍👩‍👧 🇨🇳 ❤️ 好😂的",  # emoji, skin tone, ZWJ sequence, flag, VS16
    "a\x00b\x01c\x7fd\x85e\x9ff\u200eg\u202eh\U000e0001i",  # control and format characters
    "zero\u200bwidth\u200djoiner\ufeffbom \u200b \ufeff\u2060",  # zero-width characters
    "Café Cafe\u0301 naïve nai\u0308ve ÀÉÎÕÜ ǅ ﬁ",  # precomposed and combining accents
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "w" * 200 + " " + "v" * 201,
    "é" * 150 + " " + "é" * 201 + " " + "ab" + "\u0301" * 300,  # chars vs bytes vs marks
    "",
    "   ",
    "\t\n\r \u3000\u00a0\u2028\u2029\u202f\u1680\x0b\x0c\x1c",  # whitespace of all kinds
    "a\tb\nc\rd\u3000e\u00a0f\u2028g\u2029h\x0bi\x1cj",
    "iPhone13降价了500元，GPT-4o和ALBERT哪个好？3.14159%",
    "ひらがな カタカナ ｶﾀｶﾅ 日本語のテキストです。",  # Japanese kana (not CJK ranges)
    "안녕하세요 한국어 ᄀᄁ ㄱㄲ",  # Hangul syllables, jamo
    "𠀀𠀁𪚥𫝀 中𠀋文",  # CJK extension B and later
    "a\ufffdb \ufffd \ufffd中",  # replacement character
    "ΑΣ ΑΣ. ΑΣΑ Σ ΣΑ ΑΣ'Σ Α\u0301Σ\u0301 ὈΔΥΣΣΕΎΣ ς σ",  # final sigma
    "İstanbul ıI ẞtraße ǰ ΐ ﬀ ŉ Ꭰꭰ",  # special lower-casing
    "a≠b c≮d e≯f `x` ῾",  # NFD creates punctuation
    "豈更車 \U0002f800 ⼀⺁",  # CJK compatibility ideographs, radicals
    "\u302e\u302f a\U0001d16d\U0001d165b c\u034f\u0301d \u0f71\u0f72",  # non-Mn marks
    "[CLS] [SEP] [UNK] [MASK] ##abc ## #",
    "$+<=>^`|~ ¥€£ ©®™ ‰′″ ・·•",  # ASCII symbols are punctuation, Unicode S* are not
]


def _python_ids(tokenizer, text):
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))


def _graph_ids(tokenizer, texts):
    """tokenizer.tokenize on `texts` (str or bytes) in batches: list of id lists."""
    ids = []
    for start in range(0, len(texts), BATCH_SIZE):
        batch = tf.constant(texts[start : start + BATCH_SIZE], tf.string)
        ids.extend(tokenizer.tokenize(batch).to_list())
    return ids


def _assert_same_ids(graph_tokenizer, full_tokenizer, texts):
    """Assert equal ids on every text; the message shows the first differing texts."""
    graph_ids = _graph_ids(graph_tokenizer, texts)
    mismatches = []
    for text, graph in zip(texts, graph_ids, strict=True):
        python = _python_ids(full_tokenizer, text)
        if graph != python:
            mismatches.append(f"{text[:300]!r}\n  graph:  {graph[:60]}\n  python: {python[:60]}")
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ:\n" + "\n".join(
        mismatches[:5]
    )
    return len(texts)


@pytest.fixture(scope="module")
def vocab_path():
    return str(shared_data("vocab.txt"))


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def tokenizers(request, vocab_path):
    """(InGraphTokenizer, FullTokenizer) with do_lower_case True and False."""
    return (
        tokenization_tf.InGraphTokenizer(vocab_path, do_lower_case=request.param),
        tokenization.FullTokenizer(vocab_path, do_lower_case=request.param),
    )


@pytest.fixture(scope="module")
def uncased(vocab_path):
    """The default (do_lower_case=True, max_seq_length=128) pair of tokenizers."""
    return (
        tokenization_tf.InGraphTokenizer(vocab_path),
        tokenization.FullTokenizer(vocab_path),
    )


_packers = {}


def _packer(vocab_path, max_seq_length):
    """An InGraphTokenizer with this max_seq_length (cached: creating one traces ~2 s)."""
    if max_seq_length not in _packers:
        _packers[max_seq_length] = tokenization_tf.InGraphTokenizer(
            vocab_path, max_seq_length=max_seq_length
        )
    return _packers[max_seq_length]


# --------------------------------------------------------------------------------- ids


def test_ids_equal_on_every_shared_text(uncased, capsys):
    graph_tokenizer, full_tokenizer = uncased
    num_files = num_lines = 0
    texts = []
    for directory, pattern, read in SHARED_TEXT_FILES:
        paths = sorted(shared_data(directory).glob(pattern))
        assert paths, f"no {pattern} in {directory}"
        for path in paths:
            lines = read(path)
            num_files += 1
            num_lines += len(lines)
            texts.extend(text for line in lines for text in line)
    unique_texts = sorted(set(texts))  # the same text gives the same ids

    start = time.perf_counter()
    graph_ids = _graph_ids(graph_tokenizer, unique_texts)
    graph_seconds = time.perf_counter() - start
    start = time.perf_counter()
    python_ids = [_python_ids(full_tokenizer, text) for text in unique_texts]
    python_seconds = time.perf_counter() - start
    mismatches = [
        (text, graph, python)
        for text, graph, python in zip(unique_texts, graph_ids, python_ids, strict=True)
        if graph != python
    ]
    with capsys.disabled():
        print(
            f"\n[tokenization_tf] {num_lines} lines of {num_files} files, {len(texts)} texts"
            f" ({len(unique_texts)} distinct, {sum(map(len, python_ids))} ids):"
            f" {len(mismatches)} mismatches; in-graph {graph_seconds:.1f} s,"
            f" FullTokenizer {python_seconds:.1f} s"
        )
    assert not mismatches, f"{len(mismatches)} texts differ:\n" + "\n".join(
        f"{text!r}\n  graph:  {graph}\n  python: {python}" for text, graph, python in mismatches[:5]
    )


def test_ids_equal_on_hard_texts(tokenizers):
    long_text = "".join(random.Random(7).choices("中文abcÉé,.！ 123\u0301\u200b😀Σ", k=10_000))
    _assert_same_ids(*tokenizers, [*HARD_TEXTS, long_text])


def test_hard_texts_give_the_expected_tokens(uncased):
    """A few spot checks in readable tokens, independent of the comparison."""
    graph_tokenizer, full_tokenizer = uncased
    texts = ["Café naïve", "a\u200bb\u200dc", "ΑΣ.", "x" * 201, "a≠b", "\ufffd\x00"]
    tokens = [
        full_tokenizer.convert_ids_to_tokens(ids) for ids in _graph_ids(graph_tokenizer, texts)
    ]
    assert tokens[0] == ["cafe", "na", "##ive"]
    assert tokens[1] == ["abc"]  # zero-width characters vanish without splitting the word
    assert tokens[2] == ["α", "##ς", "."]
    assert tokens[3] == ["[UNK]"]  # more than 200 characters
    assert tokens[4] == ["a", "=", "b"]  # NFD("≠") = "=" + U+0338, a punctuation character
    assert tokens[5] == []


def test_wordpiece_longest_match_and_a_rest_without_pieces(uncased):
    """The WordPiece step (core TF ops): longest match first, a longest vocab entry whole,
    and a word whose rest no vocab entry starts is one [UNK] (after pieces were found)."""
    graph_tokenizer, full_tokenizer = uncased
    texts = ["facebooktwitterpinterestgoogle", "xfacebooktwitterpinterestgoogle", "ab😀", "😀b"]
    tokens = [
        full_tokenizer.convert_ids_to_tokens(ids) for ids in _graph_ids(graph_tokenizer, texts)
    ]
    assert tokens[0] == ["facebooktwitterpinterestgoogle"]  # 30 characters, the longest entry
    assert tokens[1] == ["x", "##facebook", "##twitter", "##pin", "##ter", "##est", "##google"]
    assert tokens[2:] == [["[UNK]"], ["[UNK]"]]
    _assert_same_ids(graph_tokenizer, full_tokenizer, texts)


def test_ids_equal_for_every_code_point(uncased):
    """Every assigned code point (1% of the CJK ideographs) in word, sigma and CJK contexts."""
    code_points = [
        cp
        for cp in range(0x110000)
        if unicodedata.category(chr(cp)) not in ("Cn", "Co", "Cs")
        and (not tokenization.is_chinese_char(cp) or cp % 101 == 0)
    ]
    code_points += list(range(0, 0x110000, 4099)) + [0xFFFE, 0xFFFF, 0xE000, 0x10FFFF]
    code_points = [cp for cp in code_points if not 0xD800 <= cp <= 0xDFFF]
    texts = [f"a{chr(cp)}b AΣ{chr(cp)}Σ 中{chr(cp)}\u0301" for cp in code_points]
    _assert_same_ids(*uncased, texts)


def test_ids_equal_on_random_tricky_strings(tokenizers):
    pool = (
        [chr(cp) for cp in range(0x20, 0x7F)]
        + list("\t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2002\u200a\u2028\u2029\u202f\u3000")
        + list("\x00\x01\x7f\x9f\u00ad\u200b\u200c\u200d\u200e\u2060\ufeff\ufffd\ufffe\ue000")
        + list("\u0300\u0301\u0308\u0316\u0345\u034f\u0f71\u302e\u302f\ufe0f\u0378")
        + list("ΣσςΑΒΆΐİıIiẞßǅǰŉﬁﬀᎠꭰÅÉéñ≠≮≯῾`")
        + list("中文豈\U0002f800\U00020000あアｱ가각ᄀㄱ１Ａ，。！、《》😀👍🏽🇨🇳")
        + ["\U0001d165", "\U0001d16d", "\U000e0001", "\U000e0100", "\U0010ffff"]
    )
    rng = random.Random(12345)
    texts = ["".join(rng.choices(pool, k=rng.randint(0, 40))) for _ in range(3000)]
    _assert_same_ids(*tokenizers, texts)


def test_ids_equal_cased_on_a_shared_file(tokenizers):
    texts = [text for line in _tsv((0, 1))(shared_data("paws_x_zh/dev.tsv")) for text in line]
    _assert_same_ids(*tokenizers, texts)


def test_invalid_utf8_bytes_vanish_like_in_convert_to_unicode(uncased):
    """Invalid UTF-8 sequences become U+FFFD, which is dropped: as if the bytes were absent."""
    graph_tokenizer, full_tokenizer = uncased
    texts = [
        b"ab\xffcd",
        b"\xe4\xb8",  # truncated "中"
        b"\xe4\xb8ab",
        b"x\xe4\xb8\xe6\x96\x87y",  # truncated "中" then "文"
        b"\xed\xa0\x80z",  # a UTF-8-encoded surrogate
        b"\xf4\x90\x80\x80q",  # above U+10FFFF
        b"\xc0\xaf\xe0\x80\xaf",  # overlong encodings
        b"\x80\xbf\x80\xe4\xb8\xad",  # stray continuation bytes, then "中"
        b"\xf0\x9f\x98Hello",  # truncated emoji
        b"caf\xc3",  # truncated "é" at the end
        b"\xfe\xff \xff",
    ]
    graph_ids = _graph_ids(graph_tokenizer, texts)
    for text, ids in zip(texts, graph_ids, strict=True):
        assert ids == _python_ids(full_tokenizer, text), text
        assert ids == _python_ids(full_tokenizer, text.decode("utf-8", "ignore")), text
    assert graph_ids[0] == _python_ids(full_tokenizer, "abcd")


# ------------------------------------------------------------------------------- packing


def _unpadded(features):
    """The packed examples of `pack`'s output as encode_pair-style dicts of lists."""
    features = {key: value.numpy() for key, value in features.items()}
    lengths = features["input_mask"].sum(axis=1)
    examples = []
    for row, length in enumerate(lengths):
        examples.append({key: value[row, :length].tolist() for key, value in features.items()})
        for value in features.values():
            assert not value[row, length:].any()  # padding is 0
    if len(lengths):
        assert features["input_ids"].shape[1] == lengths.max()  # padded to the longest
    return examples


def _assert_packs_like_encode_pair(graph_tokenizer, full_tokenizer, texts_a, texts_b=None):
    text_a = tf.constant(texts_a, tf.string)
    if texts_b is None:
        features = graph_tokenizer.pack(text_a)
        texts_b = [None] * len(texts_a)
    else:
        features = graph_tokenizer.pack(text_a, tf.constant(texts_b, tf.string))
    for key in ("input_ids", "input_mask", "segment_ids"):
        assert features[key].dtype == tf.int32
    max_seq_length = graph_tokenizer.max_seq_length
    for a, b, example in zip(texts_a, texts_b, _unpadded(features), strict=True):
        expected = full_tokenizer.encode_pair(a, b, max_seq_length=max_seq_length)
        assert example == expected, (a, b, max_seq_length)


@pytest.mark.parametrize("max_seq_length", [8, 9, 16])
def test_pack_truncates_like_encode_pair(vocab_path, uncased, max_seq_length):
    """Every pair of lengths 0..14 (ties included) and random real pairs, one batch each."""
    graph_tokenizer = _packer(vocab_path, max_seq_length)
    full_tokenizer = uncased[1]
    # One token per character, different characters: truncation errors show in the ids.
    letters_a, letters_b = "一二三四五六七八九十百千万亿兆", "甲乙丙丁戊己庚辛壬癸子丑寅卯辰"
    texts_a, texts_b = [], []
    for length_a in range(15):
        for length_b in [-1, *range(15)]:  # -1: " ", a text b without tokens
            texts_a.append(letters_a[:length_a])
            texts_b.append(" " if length_b < 0 else letters_b[:length_b])
    _assert_packs_like_encode_pair(graph_tokenizer, full_tokenizer, texts_a, texts_b)

    lines = _tsv((0, 1))(shared_data("lcqmc_small/dev.txt"))
    rng = random.Random(max_seq_length)
    pairs = rng.sample(lines, 300)
    texts_a = [a[: rng.randint(0, 30)] for a, _ in pairs]
    texts_b = [b[: rng.randint(0, 30)] for _, b in pairs]
    _assert_packs_like_encode_pair(graph_tokenizer, full_tokenizer, texts_a, texts_b)
    _assert_packs_like_encode_pair(graph_tokenizer, full_tokenizer, texts_a)


def test_pack_single_and_pair_real_texts(uncased):
    lines = _tsv((0, 1))(shared_data("lcqmc_small/test.txt"))[:1000]
    lines += [[text, ""] for text in HARD_TEXTS]
    texts_a, texts_b = [a for a, _ in lines], [b for _, b in lines]
    _assert_packs_like_encode_pair(*uncased, texts_a, texts_b)
    _assert_packs_like_encode_pair(*uncased, texts_a)


def test_pack_empty_strings(uncased):
    graph_tokenizer, full_tokenizer = uncased
    cls, sep = full_tokenizer.vocab["[CLS]"], full_tokenizer.vocab["[SEP]"]
    features = graph_tokenizer.pack(
        tf.constant(["", "", "", "中"]), tf.constant(["", " ", "中", ""])
    )
    assert features["input_ids"].numpy().tolist() == [
        [cls, sep, 0, 0],  # empty text b: a single text
        [cls, sep, sep, 0],  # " " is a text b, without tokens
        [cls, sep, 704, sep],
        [cls, 704, sep, 0],
    ]
    assert features["segment_ids"].numpy().tolist() == [
        [0] * 4,
        [0, 0, 1, 0],
        [0, 0, 1, 1],
        [0] * 4,
    ]
    _assert_packs_like_encode_pair(graph_tokenizer, full_tokenizer, ["", " ", "中"])


def test_pack_and_tokenize_empty_batch(uncased):
    graph_tokenizer = uncased[0]
    empty = tf.constant([], tf.string)
    for features in (graph_tokenizer.pack(empty), graph_tokenizer.pack(empty, empty)):
        for key in ("input_ids", "input_mask", "segment_ids"):
            assert features[key].shape == (0, 0)
            assert features[key].dtype == tf.int32
    assert graph_tokenizer.tokenize(empty).shape.as_list() == [0, None]


# ------------------------------------------------------------------- graphs and SavedModel


def test_inside_tf_function_and_tf_data(uncased):
    graph_tokenizer, full_tokenizer = uncased
    texts = ["我爱北京", "Café 123", "", "ΑΣ 😀"]

    @tf.function(input_signature=[tokenization_tf.TEXTS_SPEC])
    def ids_and_features(texts):
        return graph_tokenizer.tokenize(texts), graph_tokenizer.pack(texts, texts)

    ids, features = ids_and_features(tf.constant(texts))
    assert ids.to_list() == [_python_ids(full_tokenizer, text) for text in texts]
    expected = graph_tokenizer.pack(tf.constant(texts), tf.constant(texts))
    for key in features:
        np.testing.assert_array_equal(features[key], expected[key])

    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(graph_tokenizer.pack)
    batches = list(dataset)
    assert [batch["input_ids"].shape[0] for batch in batches] == [3, 1]
    np.testing.assert_array_equal(
        batches[1]["input_ids"], graph_tokenizer.pack(tf.constant(texts[3:]))["input_ids"]
    )


class _Serving(tf.Module):
    """A module holding the tokenizer, as an exported model would."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tokenization_tf.TEXTS_SPEC, tokenization_tf.TEXTS_SPEC])
    def serve(self, text_a, text_b):
        return self.tokenizer.pack(text_a, text_b)


def test_savedmodel_round_trip_needs_only_its_directory(tmp_path, vocab_path, uncased):
    full_tokenizer = uncased[1]
    vocab_copy = tmp_path / "vocab" / "vocab.txt"
    vocab_copy.parent.mkdir()
    shutil.copy(vocab_path, vocab_copy)
    module = _Serving(tokenization_tf.InGraphTokenizer(vocab_copy, max_seq_length=16))
    export_dir = tmp_path / "saved"
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    assert (export_dir / "assets" / "vocab.txt").read_bytes() == vocab_copy.read_bytes()
    shutil.rmtree(vocab_copy.parent)  # the SavedModel must use its own copy

    loaded = tf.saved_model.load(str(export_dir))
    texts_a = ["我爱北京天安门，天安门上太阳升", "Café", "", "ΑΣ"]
    texts_b = ["今天天气不错", "", "x", "naïve résumé"]
    text_a, text_b = tf.constant(texts_a), tf.constant(texts_b)
    expected = [full_tokenizer.encode_pair(a, b, 16) for a, b in zip(texts_a, texts_b, strict=True)]
    assert _unpadded(loaded.serve(text_a, text_b)) == expected
    assert _unpadded(loaded.signatures["serving_default"](text_a=text_a, text_b=text_b)) == (
        expected
    )
    assert _unpadded(loaded.tokenizer.pack(text_a, text_b)) == expected
    assert _unpadded(loaded.tokenizer.pack(text_a)) == [
        full_tokenizer.encode_pair(a, None, 16) for a in texts_a
    ]
    assert loaded.tokenizer.tokenize(text_a).to_list() == [
        _python_ids(full_tokenizer, a) for a in texts_a
    ]


# --------------------------------------------------------------------------------- errors


def test_vocab_whose_lines_the_graph_would_read_differently_is_rejected(tmp_path, vocab_path):
    lines = open(vocab_path, encoding="utf-8").read().split("\n")
    for name, bad_lines in [
        ("duplicate", lines[:200] + [lines[150]] + lines[200:]),
        # load_vocab strips " albert_zh " to "albert_zh" (id 200); the graph would not know it
        ("space", lines[:200] + [" albert_zh "] + lines[200:]),
    ]:
        bad_vocab = tmp_path / f"{name}.txt"
        bad_vocab.write_text("\n".join(bad_lines), encoding="utf-8")
        with pytest.raises(errors.AlbertError, match="vocab"):
            tokenization_tf.InGraphTokenizer(bad_vocab)


def test_too_small_max_seq_length_is_rejected(vocab_path):
    with pytest.raises(errors.AlbertError, match="max_seq_length=2"):
        tokenization_tf.InGraphTokenizer(vocab_path, max_seq_length=2)


def test_tokenization_py_does_not_import_tensorflow():
    code = "import sys, tokenization; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_pack_rejects_batches_of_different_sizes(uncased):
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        uncased[0].pack(tf.constant(["a", "b"]), tf.constant(["c"]))


# ------------------------------------------------------------------------ character tokens


def _char_tokens_oracle(full_tokenizer, texts):
    """ner_data.tokenize_with_offsets(units="char"): (ids, starts, unit_start) per text."""
    rows = []
    for text in texts:
        encoding = ner_data.tokenize_with_offsets(full_tokenizer, text, "char")
        unit_start = np.zeros(len(encoding.tokens), bool)
        unit_start[encoding.unit_first_token] = True
        rows.append((encoding.token_ids.tolist(), encoding.starts.tolist(), unit_start.tolist()))
    return rows


@pytest.mark.parametrize("source", ["cluener", "random"])
def test_tokenize_chars_equals_ner_datas_character_tokens(tokenizers, source):
    """export_savedmodel's ner_text reads characters as run_ner.py does: every CLUENER dev and
    test text, and random strings of the tricky characters above (accents, combining marks,
    one character becoming several pieces, dropped characters, whitespace of every kind)."""
    if source == "cluener":
        texts = [
            json.loads(line)["text"]
            for split in ("dev", "test")
            for line in open(shared_data(f"cluener/{split}.json"), encoding="utf-8")
        ]
    else:
        rng = random.Random(7)
        pool = list("abcXYZ019 \t\u3000\u2028\x00\x85\u200b\ufffdΣǆǅİßﬁÉé\u0301\u0345\u302e")
        pool += list("中文豈，。！《》１Ａ😀👍🏽가각ᄀ-_'.")
        texts = ["".join(rng.choices(pool, k=rng.randint(0, 30))) for _ in range(2000)]
    in_graph, full = tokenizers
    tokens = in_graph.tokenize_chars(tf.constant(texts))
    actual = zip(
        tokens["token_ids"].to_list(),
        tokens["starts"].to_list(),
        tokens["unit_start"].to_list(),
        strict=True,
    )
    expected = _char_tokens_oracle(full, texts)
    mismatches = [
        (text, got, want)
        for text, got, want in zip(texts, actual, expected, strict=True)
        if tuple(got) != want
    ]
    assert not mismatches, mismatches[:3]
