"""BERT-style tokenization for Chinese ALBERT (albert_zh), plus a jieba word-span helper.

The public API matches the original google-research/bert and brightmart/albert_zh
`tokenization.py`, so the ids are the ones the released checkpoints were trained with:

    tokenizer = tokenization.FullTokenizer("vocab.txt", do_lower_case=True)
    tokens = tokenizer.tokenize("我爱北京 Café")   # ['我', '爱', '北', '京', 'cafe']
    ids = tokenizer.convert_tokens_to_ids(tokens)

`FullTokenizer` runs `BasicTokenizer` (clean text, split around CJK characters, whitespace
and punctuation, optional lower-case + accent strip) and then `WordpieceTokenizer` (greedy
longest-match-first sub-words with a "##" prefix for non-initial pieces).

Two deliberate, documented differences from the original code:
  * `convert_to_unicode` decodes invalid UTF-8 bytes to U+FFFD instead of silently dropping
    them; `_clean_text` then drops U+FFFD, so the tokens are the same as the original's.
  * `convert_tokens_to_ids` maps a token missing from the vocab to the id of "[UNK]" instead
    of raising KeyError (tokens produced by `tokenize` are always in the vocab anyway).

Extras used by the other scripts: `FullTokenizer.encode_pair` (the [CLS] a [SEP] b [SEP]
layout of run_classifier) and `jieba_word_spans` (word boundaries for whole-word masking in
create_pretraining_data).
"""

import collections
import logging
import os
import unicodedata

import errors

UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"

# CJK Unified Ideographs blocks (and compatibility ideographs) that BERT pads with spaces so
# that every Chinese character becomes its own token. Hiragana, Katakana, Hangul are not here.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


# ----------------------------------------------------------------------------- text helpers


def convert_to_unicode(text):
    """Return `text` as str; bytes are decoded as UTF-8.

    Invalid byte sequences become U+FFFD (the original ignored them silently); the basic
    tokenizer drops U+FFFD again, so tokenization is unchanged while `printable_text` and
    error messages still show where the bad bytes were.
    """
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    raise ValueError(f"Unsupported string type: {type(text).__name__}")


def printable_text(text):
    """Return `text` as str, suitable for print() and logging (same as convert_to_unicode)."""
    return convert_to_unicode(text)


def whitespace_tokenize(text):
    """Strip `text` and split it on runs of whitespace."""
    text = text.strip()
    return text.split() if text else []


def _is_whitespace(char):
    """Space, tab, newline, carriage return and Unicode space separators (Zs)."""
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    """Control and format characters (Cc, Cf); tab/newline/CR count as whitespace instead."""
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    """All non-alphanumeric ASCII (e.g. "$", "^", "`") plus every Unicode P* character."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    """Whether code point `cp` is in one of BERT's CJK ideograph ranges."""
    return any(low <= cp <= high for low, high in CJK_RANGES)


# ----------------------------------------------------------------------------- vocabulary


def load_vocab(vocab_file):
    """Load a vocab file into an ordered dict token -> id (the id is the line index).

    Each line is stripped of surrounding whitespace; as in the original, a later duplicate
    overwrites the id of an earlier one. Raises AlbertError if the file is missing or empty.
    """
    if not os.path.isfile(vocab_file):
        raise errors.AlbertError(
            f"vocab file not found: {vocab_file} (pass the vocab.txt shipped with the model)"
        )
    vocab = collections.OrderedDict()
    with open(vocab_file, "rb") as reader:
        for index, raw_line in enumerate(reader):
            vocab[convert_to_unicode(raw_line).strip()] = index
    if not vocab:
        raise errors.AlbertError(
            f"vocab file is empty: {vocab_file} (expected one token per line, e.g. vocab.txt)"
        )
    return vocab


def convert_by_vocab(vocab, items):
    """Look every item up in `vocab` (a dict); a missing item raises KeyError."""
    return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab, tokens):
    """Map tokens to ids; tokens not in `vocab` map to the id of "[UNK]".

    Raises AlbertError if a token is unknown and the vocab has no "[UNK]" entry.
    """
    unk_id = vocab.get(UNK_TOKEN)
    ids = []
    for token in tokens:
        token_id = vocab.get(token, unk_id)
        if token_id is None:
            raise errors.AlbertError(
                f"token {token!r} is not in the vocab and the vocab has no {UNK_TOKEN} entry"
            )
        ids.append(token_id)
    return ids


def convert_ids_to_tokens(inv_vocab, ids):
    """Map ids back to tokens with an id -> token dict; an unknown id raises KeyError."""
    return convert_by_vocab(inv_vocab, ids)


# ----------------------------------------------------------------------------- tokenizers


class FullTokenizer:
    """End-to-end tokenization: BasicTokenizer, then WordpieceTokenizer on each word."""

    def __init__(self, vocab_file, do_lower_case=True):
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {token_id: token for token, token_id in self.vocab.items()}
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text):
        """Return the WordPiece tokens of `text` (str or UTF-8 bytes)."""
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            split_tokens.extend(self.wordpiece_tokenizer.tokenize(token))
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        return convert_tokens_to_ids(self.vocab, tokens)

    def convert_ids_to_tokens(self, ids):
        return convert_ids_to_tokens(self.inv_vocab, ids)

    def encode_pair(self, text_a, text_b=None, max_seq_length=128):
        """Encode one example as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` (unpadded).

        Returns a dict of equal-length lists `input_ids`, `input_mask` (all 1) and
        `segment_ids` (0 for [CLS] a [SEP], 1 for b [SEP]), at most `max_seq_length` long.
        As in the original run_classifier, a too-long pair is truncated one token at a time
        from the end of the currently longer text, and a single text is cut at the end.
        An empty `text_b` counts as no second text.
        """
        num_special = 3 if text_b else 2
        if max_seq_length < num_special:
            raise errors.AlbertError(
                f"max_seq_length={max_seq_length} is too small: need at least {num_special}"
                " positions for [CLS]/[SEP]"
            )
        tokens_a = self.tokenize(text_a)
        tokens_b = self.tokenize(text_b) if text_b else []
        budget = max_seq_length - num_special
        # Popping from the longer side keeps as much of the shorter text as possible.
        while len(tokens_a) + len(tokens_b) > budget:
            if len(tokens_a) > len(tokens_b):
                tokens_a.pop()
            else:
                tokens_b.pop()

        tokens = [CLS_TOKEN] + tokens_a + [SEP_TOKEN]
        segment_ids = [0] * len(tokens)
        if text_b:
            tokens += tokens_b + [SEP_TOKEN]
            segment_ids += [1] * (len(tokens_b) + 1)
        return {
            "input_ids": self.convert_tokens_to_ids(tokens),
            "input_mask": [1] * len(tokens),
            "segment_ids": segment_ids,
        }


class BasicTokenizer:
    """Cleans text and splits it into words: CJK characters, punctuation and whitespace."""

    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        """Return the basic tokens of `text` (str or UTF-8 bytes)."""
        text = self._clean_text(convert_to_unicode(text))
        # Spaces around each CJK character make every Chinese character its own word.
        text = self._tokenize_chinese_chars(text)
        split_tokens = []
        for token in whitespace_tokenize(text):
            if self.do_lower_case:
                token = self._run_strip_accents(token.lower())
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text):
        """Decompose (NFD) and drop combining marks (Mn): "Café" -> "Cafe"."""
        text = unicodedata.normalize("NFD", text)
        return "".join(char for char in text if unicodedata.category(char) != "Mn")

    def _run_split_on_punc(self, text):
        """Split `text` so that every punctuation character is a token of its own."""
        pieces = []
        start_new_piece = True
        for char in text:
            if _is_punctuation(char):
                pieces.append(char)
                start_new_piece = True
            else:
                if start_new_piece:
                    pieces.append("")
                    start_new_piece = False
                pieces[-1] += char
        return pieces

    def _tokenize_chinese_chars(self, text):
        """Put a space before and after every CJK ideograph."""
        output = []
        for char in text:
            if _is_chinese_char(ord(char)):
                output.extend((" ", char, " "))
            else:
                output.append(char)
        return "".join(output)

    def _clean_text(self, text):
        """Drop NUL, U+FFFD and control/format characters; map all whitespace to " "."""
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece tokenization of already-split words."""

    def __init__(self, vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=200):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        """Split each whitespace-separated word of `text` into vocab pieces.

        "unaffable" -> ["un", "##aff", "##able"]. A word longer than
        `max_input_chars_per_word` characters, or one that cannot be fully covered by vocab
        pieces, becomes a single `unk_token`.
        """
        output_tokens = []
        for word in whitespace_tokenize(convert_to_unicode(text)):
            if len(word) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            pieces = self._split_word(word)
            output_tokens.extend(pieces if pieces is not None else [self.unk_token])
        return output_tokens

    def _split_word(self, word):
        """Return the longest-match pieces of `word`, or None if some part has no match."""
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                candidate = word[start:end]
                if start > 0:
                    candidate = "##" + candidate
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return None
            pieces.append(piece)
            start = end
        return pieces


# ----------------------------------------------------------------------------- jieba words

# Word segmenters for whole-word masking: both are jieba's algorithm (prefix dictionary,
# most probable route, HMM for unknown words) with jieba's dictionary.
#   "rjieba": jieba-rs, jieba ported to Rust. About 12x faster than the Python package; it gives
#             the same words on 821,773 of the 821,823 lines of ../shared/data/corpus (measured).
#   "jieba":  the Python package itself.
WORD_SEGMENTERS = ("rjieba", "jieba")
DEFAULT_WORD_SEGMENTER = "rjieba"
_segmenters = {}


def word_segmenter(name=DEFAULT_WORD_SEGMENTER):
    """A function text -> list of words (jieba's default mode, HMM on), loaded on first use."""
    if name not in WORD_SEGMENTERS:
        raise errors.AlbertError(
            f"unknown word segmenter {name!r}: use one of {', '.join(WORD_SEGMENTERS)}")
    if name not in _segmenters:
        if name == "rjieba":
            import rjieba

            _segmenters[name] = rjieba.Jieba().cut
        else:
            import jieba

            jieba.setLogLevel(logging.WARNING)  # no start-up chatter
            jieba.initialize()
            _segmenters[name] = jieba.lcut
    return _segmenters[name]


def _is_special_token(token):
    """Special tokens look like "[CLS]", "[MASK]", "[unused1]"; a lone "[" is punctuation."""
    return len(token) > 2 and token.startswith("[") and token.endswith("]")


def _is_cjk_token(surface):
    """Whether a token's text (without "##") consists only of CJK ideographs."""
    return bool(surface) and all(_is_chinese_char(ord(char)) for char in surface)


def jieba_word_spans(tokens, segmenter=DEFAULT_WORD_SEGMENTER):
    """Group the WordPiece tokens of one segment into words, for whole-word masking.

    Returns a list of (start, end) token index spans (end exclusive), in order, covering
    every index exactly once. A new word starts at a token unless:
      * it is a "##" continuation piece (joins the previous token's word, e.g. English
        "hel", "##lo"), or
      * it and the previous token are both Chinese characters and jieba puts them in the
        same word ("中", "华", "人", "民", "共", "和", "国" -> one span of 7).
    Special tokens ("[CLS]", "[SEP]", "[UNK]", "[MASK]", ...) are always spans of their own.

    `segmenter` names one of WORD_SEGMENTERS (both give jieba's words).
    jieba runs once on the joined text of the tokens themselves ("##" removed; a space where
    a word boundary is already certain), so its word boundaries align exactly with token
    character offsets even for lower-cased or accent-stripped tokens. If jieba's words do
    not concatenate back to that text, every Chinese character becomes its own word.
    """
    if not tokens:
        return []
    surfaces = [
        "" if _is_special_token(token) else token[2:] if token.startswith("##") else token
        for token in tokens
    ]

    # Build jieba's input and remember where each token's text starts in it.
    pieces = []
    token_starts = []
    offset = 0
    for index, surface in enumerate(surfaces):
        if index > 0 and not (_is_cjk_token(surfaces[index - 1]) and _is_cjk_token(surface)):
            pieces.append(" ")  # keeps jieba from gluing e.g. two English words together
            offset += 1
        token_starts.append(offset)
        pieces.append(surface)
        offset += len(surface)
    text = "".join(pieces)

    words = word_segmenter(segmenter)(text)
    word_starts = set()
    if "".join(words) == text:
        position = 0
        for word in words:
            word_starts.add(position)
            position += len(word)
    else:  # Defensive: never seen, but misalignment must not merge unrelated tokens.
        word_starts = set(token_starts)

    spans = []
    for index, token in enumerate(tokens):
        joins_previous = False
        if index > 0 and not (_is_special_token(token) or _is_special_token(tokens[index - 1])):
            if token.startswith("##"):
                joins_previous = True
            elif _is_cjk_token(surfaces[index - 1]) and _is_cjk_token(surfaces[index]):
                joins_previous = token_starts[index] not in word_starts
        if joins_previous:
            spans[-1] = (spans[-1][0], index + 1)
        else:
            spans.append((index, index + 1))
    return spans
