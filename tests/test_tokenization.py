"""Tests for tokenization.py on the real albert_zh vocab and the real shared data sets.

Reference implementations (both from HF transformers 5.x, independent of our code):
  * `BertTokenizer` — in transformers 5 this is backed by the Rust `tokenizers` library
    (BertNormalizer + BertPreTokenizer + WordPiece). Used for the bulk comparison on every
    line of the shared files because it tokenizes in batches quickly.
  * `BertTokenizerLegacy` — HF's pure-Python port of the original BERT tokenizer. Used for
    the hand-picked hard strings and for the pair truncation rule.
Both default to `max_input_chars_per_word=100`; the original BERT (and ours) uses 200, so the
references are set to 200. Known, deliberate differences from both references, which follow
the original BERT code instead (docs/formats.md#tokenization): HF drops every Unicode "C*" character (private use,
unassigned, surrogates) where BERT drops only Cc/Cf, and HF keeps "[CLS]"-like text as one
special token where BERT splits it as punctuation + word.
"""

import jieba
import pytest
from transformers import BertTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
from transformers.models.bert.tokenization_bert_legacy import load_vocab as hf_load_vocab
from transformers.utils import logging as hf_logging

import errors
import tokenization
from tests import word_spans_oracle
from tests.conftest import shared_data

hf_logging.set_verbosity_error()

# (file, has a header line, text column indexes)
SHARED_TEXT_FILES = [
    ("lcqmc_small/train.txt", False, (0, 1)),
    ("lcqmc_small/dev.txt", False, (0, 1)),
    ("lcqmc_small/test.txt", False, (0, 1)),
    ("chnsenticorp/train.tsv", True, (1,)),
    ("chnsenticorp/dev.tsv", True, (1,)),
    ("chnsenticorp/test.tsv", True, (1,)),
    ("thucnews_titles/dev.txt", False, (0,)),
    ("thucnews_titles/test.txt", False, (0,)),
]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenization.FullTokenizer(str(shared_data("vocab.txt")), do_lower_case=True)


def _hf_fast(vocab_path, do_lower_case=True):
    hf = BertTokenizer(vocab=hf_load_vocab(str(vocab_path)), do_lower_case=do_lower_case)
    hf.backend_tokenizer.model.max_input_chars_per_word = 200
    return hf


def _hf_legacy(vocab_path, do_lower_case=True):
    hf = BertTokenizerLegacy(str(vocab_path), do_lower_case=do_lower_case)
    hf.wordpiece_tokenizer.max_input_chars_per_word = 200
    return hf


@pytest.fixture(scope="module")
def hf_fast():
    return _hf_fast(shared_data("vocab.txt"))


@pytest.fixture(scope="module")
def hf_legacy():
    return _hf_legacy(shared_data("vocab.txt"))


def _read_texts(relative_path, has_header, columns):
    """Return (line_number, text) for every text cell of a tab-separated data file."""
    texts = []
    with open(shared_data(relative_path), encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if has_header and line_number == 1:
                continue
            fields = line.rstrip("\n").split("\t")
            assert len(fields) > max(columns), f"{relative_path}:{line_number}: too few columns"
            texts.extend((line_number, fields[column]) for column in columns)
    return texts


def test_hf_reference_is_bert_basic_plus_wordpiece(hf_fast):
    """The fast HF tokenizer really is BERT's normalizer + pre-tokenizer + WordPiece."""
    backend = hf_fast.backend_tokenizer
    assert type(backend.normalizer).__name__ == "BertNormalizer"
    assert type(backend.pre_tokenizer).__name__ == "BertPreTokenizer"
    assert type(backend.model).__name__ == "WordPiece"
    assert backend.model.continuing_subword_prefix == "##"
    assert backend.model.unk_token == "[UNK]"


@pytest.mark.parametrize("relative_path,has_header,columns", SHARED_TEXT_FILES)
def test_ids_match_hf_on_every_line(tokenizer, hf_fast, relative_path, has_header, columns):
    texts = _read_texts(relative_path, has_header, columns)
    assert texts
    hf_encodings = hf_fast.backend_tokenizer.encode_batch(
        [text for _, text in texts], add_special_tokens=False
    )
    mismatches = []
    for (line_number, text), encoding in zip(texts, hf_encodings, strict=True):
        ours = tokenizer.tokenize(text)
        if tokenizer.convert_tokens_to_ids(ours) != encoding.ids:
            mismatches.append(
                f"{relative_path}:{line_number}: {text!r}\n  ours: {ours}\n  hf:   {encoding.tokens}"
            )
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ:\n" + "\n".join(
        mismatches[:5]
    )


# text, expected tokens (lower-cased), whether HF agrees with the original BERT here
HARD_STRINGS = [
    ("我爱北京天安门，I love NLP 2024年!", None, True),
    ("ＡＢＣ１２３，全角", ["ａ", "##ｂ", "##ｃ", "##１", "##２", "##３", "，", "全", "角"], True),
    ("😀👍🏻 哈哈", ["[UNK]", "哈", "哈"], True),
    ("a\x00b\u200bc\ufeffd\x07e", ["abc", "##de"], True),  # NUL, ZWSP, BOM, BEL dropped
    ("Café CAFÉ naïve", ["cafe", "cafe", "na", "##ive"], True),
    ("\t第一行\n第二行\r\n", ["第", "一", "行", "第", "二", "行"], True),
    ("Hello\u3000世界\u00a0ok", None, True),  # ideographic space and NBSP are whitespace (Zs)
    ("İstanbul ﬁ", None, True),
    ("x" * 201, ["[UNK]"], True),  # longer than max_input_chars_per_word
    ("a" * 150, None, True),  # long but allowed: split into pieces
    ("\u0301", [], True),  # a lone combining accent vanishes after accent stripping
    ("", [], True),
    (" \t\n ", [], True),
    ("unaffable 3.14% e-mail", None, True),
    ("𠀀𪚥 中文", None, True),  # CJK extension B characters
    ("\ue000私用", ["[UNK]", "私", "用"], False),  # private use: BERT keeps it, HF drops it
    ("[CLS] 文本", ["[", "cl", "##s", "]", "文", "本"], False),  # HF keeps [CLS] as special
]


@pytest.mark.parametrize("text,expected,hf_agrees", HARD_STRINGS)
def test_hard_strings(tokenizer, hf_fast, hf_legacy, text, expected, hf_agrees):
    ours = tokenizer.tokenize(text)
    if expected is not None:
        assert ours == expected
    if hf_agrees:
        assert ours == hf_legacy.tokenize(text)
        ids = tokenizer.convert_tokens_to_ids(ours)
        assert ids == hf_fast.backend_tokenizer.encode(text, add_special_tokens=False).ids


def test_do_lower_case_false_keeps_case_and_accents():
    vocab_path = shared_data("vocab.txt")
    cased = tokenization.FullTokenizer(str(vocab_path), do_lower_case=False)
    text = "Café NLP 中文 hello"
    assert cased.basic_tokenizer.tokenize(text) == ["Café", "NLP", "中", "文", "hello"]
    assert cased.tokenize(text) == _hf_legacy(vocab_path, do_lower_case=False).tokenize(text)
    fast = _hf_fast(vocab_path, do_lower_case=False)
    assert cased.convert_tokens_to_ids(cased.tokenize(text)) == fast.encode(
        text, add_special_tokens=False
    )


def test_bytes_input_and_invalid_utf8(tokenizer):
    assert tokenization.convert_to_unicode("你好".encode()) == "你好"
    # Invalid bytes become U+FFFD (visible in printable_text), then the tokenizer drops them.
    assert tokenization.printable_text(b"ok\xff") == "ok\ufffd"
    assert tokenizer.tokenize(b"\xe4\xbd\xa0\xe5\xa5\xbd\xff") == ["你", "好"]
    with pytest.raises(ValueError):
        tokenization.convert_to_unicode(3)


def test_vocab_ids_and_unknown_tokens(tokenizer):
    assert len(tokenizer.vocab) == 21128
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [
        0,
        100,
        101,
        102,
        103,
    ]
    assert tokenizer.convert_tokens_to_ids(["not-a-token", "我"]) == [100, 2769]
    assert tokenizer.convert_ids_to_tokens([101, 2769, 102]) == ["[CLS]", "我", "[SEP]"]
    assert all(tokenizer.inv_vocab[i] == t for t, i in tokenizer.vocab.items())


def test_load_vocab_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(errors.AlbertError, match="nope.txt"):
        tokenization.load_vocab(str(missing))
    with pytest.raises(errors.AlbertError, match="nope.txt"):
        tokenization.FullTokenizer(str(missing))
    empty = tmp_path / "empty_vocab.txt"
    empty.write_text("")
    with pytest.raises(errors.AlbertError, match="empty_vocab.txt"):
        tokenization.load_vocab(str(empty))


def test_load_vocab_line_index_is_id_and_later_duplicate_wins(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nab\n##c\nab\n", encoding="utf-8")
    vocab = tokenization.load_vocab(str(path))
    assert vocab == {"[PAD]": 0, "[UNK]": 1, "ab": 4, "##c": 3}
    wordpiece = tokenization.WordpieceTokenizer(vocab)
    assert wordpiece.tokenize("abc ab zz") == ["ab", "##c", "ab", "[UNK]"]


def test_encode_pair_matches_original_truncation(tokenizer, hf_legacy):
    """[CLS] a [SEP] b [SEP] with longest-first truncation, vs HF's Python implementation."""
    rows = [line.split("\t") for line in _lines("lcqmc_small/dev.txt")[:300]]
    for text_a, text_b, _ in rows:
        for max_seq_length in (8, 13, 32, 128):
            ours = tokenizer.encode_pair(text_a, text_b, max_seq_length)
            ref = hf_legacy(
                text_a,
                text_b,
                truncation="longest_first",
                max_length=max_seq_length,
                return_token_type_ids=True,
            )
            assert ours["input_ids"] == ref["input_ids"], (text_a, text_b, max_seq_length)
            assert ours["segment_ids"] == ref["token_type_ids"]
            assert ours["input_mask"] == [1] * len(ours["input_ids"])
            assert len(ours["input_ids"]) <= max_seq_length


def test_encode_pair_tie_pops_second_text_and_single_text(tokenizer):
    # Equal lengths pop from text_b first (original `if len(a) > len(b)` rule): 5+5 -> 4+3.
    encoded = tokenizer.encode_pair("一二三四五", "六七八九十", max_seq_length=10)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["[CLS]", "一", "二", "三", "四", "[SEP]", "六", "七", "八", "[SEP]"]
    assert encoded["segment_ids"] == [0] * 6 + [1] * 4
    single = tokenizer.encode_pair("一二三四五", max_seq_length=5)
    assert tokenizer.convert_ids_to_tokens(single["input_ids"]) == [
        "[CLS]",
        "一",
        "二",
        "三",
        "[SEP]",
    ]
    assert single["segment_ids"] == [0] * 5
    with pytest.raises(errors.AlbertError, match="max_seq_length"):
        tokenizer.encode_pair("一", "二", max_seq_length=2)


def _lines(relative_path):
    with open(shared_data(relative_path), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _span_texts(tokens, spans):
    return ["".join(t[2:] if t.startswith("##") else t for t in tokens[s:e]) for s, e in spans]


def _assert_exact_cover(tokens, spans):
    assert spans[0][0] == 0 and spans[-1][1] == len(tokens)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert end == next_start
    assert all(start < end for start, end in spans)


def test_jieba_spans_follow_jieba_words_of_any_length(tokenizer):
    text = "中华人民共和国成立了自然语言处理研究所"
    words = jieba.lcut(text)
    assert "中华人民共和国" in words  # jieba 0.42.1 keeps it as one 7-character word
    tokens = tokenizer.tokenize(text)
    spans = word_spans_oracle.jieba_word_spans(tokens)
    _assert_exact_cover(tokens, spans)
    assert _span_texts(tokens, spans) == words
    assert (0, 7) in spans


def test_jieba_spans_english_pieces_and_specials(tokenizer):
    tokens = ["[CLS]"] + tokenizer.tokenize("我爱unaffable北京") + ["[SEP]", "[MASK]", "##s"]
    assert tokens[3:7] == ["u", "##na", "##ff", "##able"]
    spans = word_spans_oracle.jieba_word_spans(tokens)
    _assert_exact_cover(tokens, spans)
    assert (3, 7) in spans  # the English word pieces form one word
    for special_index in (0, 9, 10):  # [CLS], [SEP], [MASK] stand alone ...
        assert (special_index, special_index + 1) in spans
    assert (11, 12) in spans  # ... and a "##" piece never joins a special token
    assert _span_texts(tokens, spans)[-4:-2] == ["北京", "[SEP]"]


def test_jieba_spans_unknown_tokens_and_lowercased_text(tokenizer):
    tokens = tokenizer.tokenize("我😀爱北京 CAFÉ Ünïcode 自然语言处理")
    assert "[UNK]" in tokens
    spans = word_spans_oracle.jieba_word_spans(tokens)
    _assert_exact_cover(tokens, spans)
    assert (1, 2) in spans  # [UNK] alone
    assert _span_texts(tokens, spans)[-2:] == ["自然语言", "处理"]
    assert word_spans_oracle.jieba_word_spans([]) == []


def test_jieba_spans_cover_real_pairs(tokenizer):
    """On real LCQMC pairs: exact cover, and every span is one jieba word, one word-piece
    word, or a single token."""
    for line in _lines("lcqmc_small/dev.txt")[:200]:
        text_a, text_b, _ = line.split("\t")
        tokens = ["[CLS]"] + tokenizer.tokenize(text_a) + ["[SEP]"]
        tokens += tokenizer.tokenize(text_b) + ["[SEP]"]
        spans = word_spans_oracle.jieba_word_spans(tokens)
        _assert_exact_cover(tokens, spans)
        jieba_words = set(jieba.lcut(text_a.lower())) | set(jieba.lcut(text_b.lower()))
        for (start, end), span_text in zip(spans, _span_texts(tokens, spans), strict=True):
            pieces = tokens[start:end]
            is_wordpiece_word = all(p.startswith("##") for p in pieces[1:])
            assert end - start == 1 or is_wordpiece_word or span_text in jieba_words, (
                line,
                pieces,
            )


def test_jieba_spans_fall_back_to_single_characters_if_jieba_misaligns(monkeypatch):
    monkeypatch.setitem(tokenization._segmenters, "jieba", lambda text: ["完全不同的文本"])
    tokens = ["[CLS]", "中", "国", "hel", "##lo", "[SEP]"]
    spans = word_spans_oracle.jieba_word_spans(tokens, segmenter="jieba")
    assert spans == [(0, 1), (1, 2), (2, 3), (3, 5), (5, 6)]
