"""Tokenization as TensorFlow ops, with exactly the ids of `tokenization.FullTokenizer`.

    tokenizer = InGraphTokenizer("vocab.txt", do_lower_case=True, max_seq_length=128)
    tokenizer.tokenize(tf.constant(["我爱北京 Café"]))  # RaggedTensor [[2769, 4263, ...]]
    features = tokenizer.pack(tf.constant(["我爱北京"]), tf.constant(["天安门"]))
    # {"input_ids", "input_mask", "segment_ids"}: int32 [batch, longest packed length]

Why: a SavedModel or tf.data pipeline that takes raw text needs the tokenizer as graph ops,
and the ids must be exactly those of the Python tokenizer, which the checkpoints were trained
and evaluated with. The vocab is a `tf.saved_model.Asset`: a SavedModel holding an
InGraphTokenizer copies vocab.txt into its own `assets/` directory and needs nothing else.

Why not simply `tensorflow_text.BertTokenizer`: its ICU-based basic tokenizer gives other
words than BERT's BasicTokenizer. Measured with tensorflow-text 2.21.1 on this vocab:
  * lower_case=True case-folds with NFKC, so full-width forms become ASCII ("，" -> ",",
    "１" -> "1"), and ligatures, superscripts, "℃" etc. are decomposed: 40,791 of the
    125,584 distinct texts of ../shared/data get other ids, mostly for "，？：！（）";
    also "ß"/"ẞ" -> "ss" and a final "ς" -> "σ";
  * it keeps U+FFFD and U+2028 inside words (BERT drops / splits there), and splits words
    at control characters (and, with lower_case=False, at format characters such as
    U+200B, U+FEFF) that BERT deletes without a split; with lower_case=False, U+00A0 and
    the other Zs spaces do not separate words;
  * its word limit is 100 bytes (max_bytes_per_word); BERT's is 200 characters.
So this module runs BasicTokenizer's steps itself on Unicode code points, and WordPiece too,
with core TensorFlow ops only (no tensorflow_text op in the graph): a SavedModel holding an
InGraphTokenizer loads wherever TensorFlow does, without `import tensorflow_text` first (e.g.
`saved_model_cli run`, or a TensorFlow Serving binary without custom ops). The steps:
  1. decode UTF-8 into code points;
  2. drop NUL, U+FFFD and control/format characters; whitespace separates words, and every
     CJK ideograph is a word of its own (BasicTokenizer._clean_text, _tokenize_chinese_chars);
  3. with do_lower_case: str.lower(), NFD and drop the nonspacing marks (_run_strip_accents);
  4. every punctuation character becomes a word of its own (_run_split_on_punc);
  5. WordPiece, greedy longest-match-first ("##" before every piece but the first); a word
     with a rest that no vocab entry starts, or of more than 200 characters
     (WordpieceTokenizer.max_input_chars_per_word), is one [UNK].
The character properties used in steps 2-4 come from tables built when the tokenizer is
created, with tokenization.py's own functions on this Python's `unicodedata`; so the two
tokenizers agree on every code point even where ICU has another Unicode version. A SavedModel
keeps the tables of the Python that saved it.

Invalid UTF-8 is treated as tokenization.convert_to_unicode treats it: an invalid byte
sequence becomes U+FFFD, which step 2 drops; the bytes vanish without splitting the word
(b"ab\\xffcd" gives the ids of "abcd"). UTF-8-encoded surrogates (U+D800..U+DFFF) count as
invalid too.
"""

import functools
import os
import unicodedata

import numpy as np
import tensorflow as tf

import errors
import tokenization

# The input of every method: a batch of UTF-8 strings.
TEXTS_SPEC = tf.TensorSpec([None], tf.string)
# Longer words become [UNK]; the same limit as tokenization.WordpieceTokenizer's default.
MAX_CHARS_PER_WORD = tokenization.WordpieceTokenizer(vocab={}).max_input_chars_per_word

# Bits of a code point's entry in the property table (see _property_table).
_DROP = 1 << 0  # removed by _clean_text: NUL, U+FFFD, control/format (and surrogates)
_SPACE = 1 << 1  # separates words: is_whitespace, and U+2028/U+2029 where str.split() splits
_CJK = 1 << 2  # in tokenization.CJK_RANGES: a word of its own
_PUNCT = 1 << 3  # tokenization.is_punctuation: a word of its own
_CASED = 1 << 4  # Unicode "Cased" and "Case_Ignorable": for the final sigma of str.lower()
_CASE_IGNORABLE = 1 << 5
_NONSPACING_MARK = 1 << 6  # category Mn, dropped by _run_strip_accents
_CCC_SHIFT = 8  # bits 8-15: canonical combining class, for the reordering step of NFD

_CAPITAL_SIGMA, _FINAL_SIGMA = 0x3A3, 0x3C2


class InGraphTokenizer(tf.Module):
    """FullTokenizer's tokenize + encode_pair as TensorFlow ops (tf.function, SavedModel).

    `tokenize(texts)` and `pack(text_a, text_b=None)` take a [batch] tf.string tensor; both
    work eagerly, inside other tf.functions and after tf.saved_model.save/load.
    """

    def __init__(self, vocab_file, do_lower_case=True, max_seq_length=128, name=None):
        super().__init__(name=name)
        if max_seq_length < 3:
            raise errors.AlbertError(
                f"max_seq_length={max_seq_length} is too small: need at least 3 positions for"
                " [CLS] a [SEP] b [SEP]"
            )
        vocab_file = os.fspath(vocab_file)
        vocab = _load_checked_vocab(vocab_file)
        self.do_lower_case = do_lower_case
        self.max_seq_length = max_seq_length
        self.cls_id = vocab[tokenization.CLS_TOKEN]
        self.sep_id = vocab[tokenization.SEP_TOKEN]

        # The table reads the asset's file when the graph (or a loaded SavedModel) starts.
        self._vocab_asset = tf.saved_model.Asset(vocab_file)
        self._vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self._vocab_asset,
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        self._unk_id = vocab[tokenization.UNK_TOKEN]
        # No vocab entry is longer, so no longer piece needs to be looked up.
        self._max_piece_chars = max(len(token) for token in vocab if _can_be_looked_up(token))

        starts, values = _property_table()
        self._property_starts = tf.constant(starts, tf.int32)
        self._property_values = tf.constant(values, tf.int32)
        if do_lower_case:
            keys, expansions = _lower_nfd_table()
            self._lower_keys = tf.constant(keys, tf.int32)
            # One more row, [-1], for "maps to itself" (see _lower_strip_accents).
            self._lower_expansions = tf.ragged.constant(expansions + [[-1]], tf.int32)

        # Trace both forms of pack now: later calls with any batch size reuse these graphs,
        # and a SavedModel of this module contains both.
        self.pack.get_concrete_function(TEXTS_SPEC)
        self.pack.get_concrete_function(TEXTS_SPEC, TEXTS_SPEC)

    @tf.function(input_signature=[TEXTS_SPEC], autograph=False)
    def tokenize(self, texts):
        """WordPiece ids of every text: int32 RaggedTensor [batch, (ids)].

        Equal to FullTokenizer.convert_tokens_to_ids(FullTokenizer.tokenize(text)).
        """
        words = self._basic_tokenize(texts)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        # BasicTokenizer never outputs "[UNK]" as a word ("[" is punctuation), so this string
        # can only come from here; WordPiece finds it whole, as it is in the vocab.
        words = words.with_flat_values(
            tf.where(too_long, tokenization.UNK_TOKEN, words.flat_values)
        )
        return words.with_flat_values(self._wordpiece(words.flat_values)).merge_dims(1, 2)

    @tf.function(autograph=False)
    def pack(self, text_a, text_b=None):
        """Model inputs `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, as FullTokenizer.encode_pair.

        Returns a dict of int32 [batch, length] tensors `input_ids`, `input_mask` (1 = token,
        0 = padding) and `segment_ids` (0 for [CLS] a [SEP], 1 for b [SEP]), padded with 0 to
        the longest packed example of the batch (not to max_seq_length; an empty batch gives
        shape [0, 0]). A too long example is truncated like encode_pair: one token at a time
        from the end of the currently longer text (text b on a tie) until it fits into
        max_seq_length. Per example, an empty text_b counts as no second text.
        """
        if text_b is None:
            text_b = tf.fill(tf.shape(text_a), "")  # "no text b", by the rule above
        tf.debugging.assert_equal(
            tf.shape(text_b), tf.shape(text_a), "text_a and text_b need the same batch size"
        )
        batch = tf.shape(text_a)[0]
        ids = self.tokenize(tf.concat([text_a, text_b], axis=0))  # one graph copy, one pass
        ids_a, ids_b = ids[:batch], ids[batch:]
        has_b = tf.strings.length(text_b) > 0

        # encode_pair pops the last token of the longer text (of text b on a tie) while the
        # pair is too long. In closed form: a text shorter than half the budget keeps all its
        # tokens and the other text gets the rest; otherwise each gets half, text a the odd
        # token. (tf_text.RoundRobinTrimmer does the same, but with one budget per batch.)
        budget = self.max_seq_length - tf.where(has_b, 3, 2)
        length_a = tf.cast(ids_a.row_lengths(), tf.int32)
        length_b = tf.cast(ids_b.row_lengths(), tf.int32)
        keep_a = tf.minimum(length_a, tf.maximum(budget - length_b, (budget + 1) // 2))
        keep_b = tf.minimum(length_b, budget - keep_a)
        ids_a = _truncate_rows(ids_a, keep_a)
        ids_b = _truncate_rows(ids_b, keep_b)

        cls = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.cls_id))
        sep = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.sep_id))
        sep_b = tf.RaggedTensor.from_row_lengths(  # only when there is a text b
            tf.fill([tf.reduce_sum(tf.cast(has_b, tf.int32))], self.sep_id),
            tf.cast(has_b, tf.int64),
            validate=False,
        )
        input_ids = tf.concat([cls, ids_a, sep, ids_b, sep_b], axis=1)
        segment_ids = tf.concat(
            [tf.zeros_like(cls), tf.zeros_like(ids_a), tf.zeros_like(sep)]
            + [tf.ones_like(ids_b), tf.ones_like(sep_b)],
            axis=1,
        )
        return {
            "input_ids": input_ids.to_tensor(0),
            "input_mask": tf.ones_like(input_ids).to_tensor(0),
            "segment_ids": segment_ids.to_tensor(0),
        }

    @tf.function(input_signature=[TEXTS_SPEC], autograph=False)
    def tokenize_chars(self, texts):
        """ner_data.tokenize_with_offsets(tokenizer, text, units="char") as ops.

        Every character is its own label unit: a CJK character or punctuation mark is one
        token, a character inside a Latin word the piece "##c" if the vocab has it (else "c",
        else [UNK]); whitespace and dropped characters have no token, and a character that
        lower-cases/decomposes into several gives several tokens of one unit. Lower-casing is
        per character (no word-final sigma), as in ner_data.
        Returns RaggedTensors [batch, (tokens)]: `token_ids` int32, `starts` int32 (the
        offset of the token's character in its text, counted in code points) and
        `unit_start` bool (True on the first token of each unit).
        """
        chars = tf.strings.unicode_decode(texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
        code_points, rows = chars.flat_values, chars.value_rowids()
        offsets = tf.cast(tf.ragged.range(chars.row_lengths()).flat_values, tf.int32)
        properties = self._properties(code_points)
        dropped = properties & _DROP != 0
        is_space = (properties & _SPACE != 0) & ~dropped
        is_cjk = properties & _CJK != 0
        spaces_upto = tf.cumsum(tf.cast(is_space, tf.int64))  # per source character

        # `source`: the flat index of the character each normalized character comes from.
        source = tf.range(tf.size(code_points, tf.int64))
        code_points, rows, source = _mask((code_points, rows, source), ~dropped & ~is_space)
        if self.do_lower_case:  # per character: `source` keeps NFD's reordering inside one
            code_points, rows, source = self._lower_strip_accents(code_points, rows, source)
        is_punct = self._properties(code_points) & _PUNCT != 0

        # A word starts at a text's start, after whitespace, at and after a CJK character and
        # at and after punctuation; a piece inside a word continues it ("##c").
        previous_source = tf.concat([[-1], source], axis=0)[:-1]
        new_source = source != previous_source
        source_cjk = tf.gather(is_cjk, source)
        previous_cjk = tf.gather(is_cjk, tf.maximum(previous_source, 0)) & (previous_source >= 0)
        space_between = tf.gather(spaces_upto, source) > tf.gather(
            spaces_upto, tf.maximum(previous_source, 0)
        )
        word_start = (
            _differs_from_previous(rows)
            | space_between
            | (new_source & (source_cjk | previous_cjk))
            | is_punct
            | _previous(is_punct)
        )

        chars_utf8 = tf.strings.unicode_encode(code_points[:, tf.newaxis], "UTF-8")
        plain = self._vocab_table.lookup(chars_utf8)
        suffix = self._vocab_table.lookup(tf.strings.join(["##", chars_utf8]))
        token_ids = tf.where(
            ~word_start & (suffix >= 0),
            suffix,
            tf.where(plain >= 0, plain, tf.cast(self._unk_id, tf.int64)),
        )
        nrows = tf.shape(texts, tf.int64)[0]

        def ragged(values):
            return tf.RaggedTensor.from_value_rowids(values, rows, nrows=nrows, validate=False)

        return {
            "token_ids": ragged(tf.cast(token_ids, tf.int32)),
            "starts": ragged(tf.gather(offsets, source)),
            "unit_start": ragged(word_start | new_source),
        }

    def _wordpiece(self, words):
        """WordPiece ids of each word: int32 RaggedTensor [words, (ids)].

        tokenization.WordpieceTokenizer's rule: from the start of the word, the next piece is
        the longest prefix of the rest that is in the vocab, as "##" + prefix after the first
        piece; if no vocab entry starts the rest, the whole word is one [UNK].
        In two vectorised steps: every substring that could be a piece (any start, up to the
        longest vocab entry) is looked up at once, giving the longest piece at each position;
        then a loop with one step per piece walks all words together from piece to piece.
        """
        # Flat arrays over all characters of all words (their index: `char`).
        _, offsets = tf.strings.unicode_decode_with_offsets(words, "UTF-8")
        char_byte, char_word = offsets.flat_values, offsets.value_rowids()
        word_start, word_end = offsets.row_starts(), offsets.row_limits()  # in characters
        total_chars = tf.size(char_byte, tf.int64)
        char = tf.range(total_chars)
        char_position = char - tf.gather(word_start, char_word)  # within its word

        # Candidates: each character starts one of each length 1..max_piece_chars that fits.
        fits = tf.minimum(tf.gather(word_end, char_word) - char, self._max_piece_chars)
        first = tf.cumsum(fits, exclusive=True)  # each character's first candidate
        candidate_char = tf.repeat(char, fits)
        length = tf.range(tf.reduce_sum(fits)) - tf.gather(first, candidate_char) + 1
        word = tf.gather(char_word, candidate_char)
        after = candidate_char + length  # the character after the candidate
        byte_start = tf.gather(char_byte, candidate_char)
        byte_end = tf.where(
            after < tf.gather(word_end, word),
            tf.gather(char_byte, tf.minimum(after, total_chars - 1)),
            tf.gather(tf.cast(tf.strings.length(words), tf.int64), word),
        )
        piece = tf.strings.substr(tf.gather(words, word), byte_start, byte_end - byte_start)
        suffix = tf.gather(char_position, candidate_char) > 0
        ids = self._vocab_table.lookup(tf.where(suffix, tf.strings.join(["##", piece]), piece))

        # The longest piece found at each character (0: none) and its id.
        longest = tf.maximum(
            tf.math.unsorted_segment_max(
                tf.where(ids >= 0, length, 0), candidate_char, total_chars
            ),
            0,
        )
        longest_id = tf.gather(ids, first + tf.maximum(longest - 1, 0))

        # Walk: from each word's first character, jump by the longest piece found there.
        def step(current, walking, on_path, failed):
            index = tf.minimum(current, total_chars - 1)  # only walking words use theirs
            on_path = tf.tensor_scatter_nd_update(
                on_path,
                tf.boolean_mask(index, walking)[:, None],
                tf.ones_like(tf.boolean_mask(index, walking), tf.bool),
            )
            jump = tf.where(walking, tf.gather(longest, index), 0)
            failed |= walking & (jump == 0)
            current += jump
            return current, walking & (jump > 0) & (current < word_end), on_path, failed

        _, _, on_path, failed = tf.while_loop(
            lambda current, walking, on_path, failed: tf.reduce_any(walking),
            step,
            (word_start, word_end > word_start, tf.zeros_like(char, tf.bool), word_end < 0),
        )
        failed_char = tf.gather(failed, char_word)
        emit = on_path & (~failed_char | (char_position == 0))  # a failed word: one [UNK]
        piece_ids = tf.cast(
            tf.where(failed_char, tf.cast(self._unk_id, tf.int64), longest_id), tf.int32
        )
        return tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(piece_ids, emit),
            tf.boolean_mask(char_word, emit),
            nrows=tf.size(words, tf.int64),
            validate=False,
        )

    # ------------------------------------------------------------------------- basic tokenizer
    # The steps work on the flat code points of the whole batch: `rows` says which text a code
    # point belongs to, and each step keeps such per-code-point arrays aligned.

    def _basic_tokenize(self, texts):
        """The words of BasicTokenizer.tokenize: string RaggedTensor [batch, (words)]."""
        chars = tf.strings.unicode_decode(texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
        code_points, rows = chars.flat_values, chars.value_rowids()
        properties = self._properties(code_points)

        # _clean_text: drop NUL, U+FFFD, control and format characters.
        keep = properties & _DROP == 0
        code_points, rows, properties = _mask((code_points, rows, properties), keep)
        if self.do_lower_case:
            code_points = self._final_sigma(code_points, rows, properties)

        # whitespace_tokenize(_tokenize_chinese_chars(text)): a word starts at the start of
        # a text, after whitespace, and at and after a CJK ideograph.
        is_space = properties & _SPACE != 0
        is_cjk = properties & _CJK != 0
        starts = _differs_from_previous(rows) | _previous(is_space) | is_cjk | _previous(is_cjk)
        code_points, rows, properties, starts = _mask(
            (code_points, rows, properties, starts), ~is_space
        )
        words = tf.cumsum(tf.cast(starts, tf.int64))

        if self.do_lower_case:
            code_points, rows, words = self._lower_strip_accents(code_points, rows, words)
            properties = self._properties(code_points)  # punctuation after lower-casing

        # _run_split_on_punc: each punctuation character is a word of its own.
        is_punct = properties & _PUNCT != 0
        starts = _differs_from_previous(words) | is_punct | _previous(is_punct)
        words = tf.cumsum(tf.cast(starts, tf.int64)) - 1
        num_words = tf.reduce_sum(tf.cast(starts, tf.int64))
        # (validate=False everywhere: these row ids are sorted by construction.)
        word_chars = tf.RaggedTensor.from_value_rowids(
            code_points, words, nrows=num_words, validate=False
        )
        word_strings = tf.strings.unicode_encode(word_chars, "UTF-8")
        return tf.RaggedTensor.from_value_rowids(
            word_strings,
            tf.boolean_mask(rows, starts),
            nrows=tf.shape(texts, tf.int64)[0],
            validate=False,
        )

    def _properties(self, code_points):
        """The property-table entry of every code point (the table is stored as runs)."""
        run = tf.searchsorted(self._property_starts, code_points, side="right") - 1
        return tf.gather(self._property_values, run)

    def _final_sigma(self, code_points, rows, properties):
        """Replace each capital sigma that str.lower() would make a final sigma "ς" by "ς".

        Python lower-cases "Σ" to "ς" if, skipping case-ignorable characters, a cased letter
        comes before it and no cased letter after it (within the word; the property table
        makes whitespace and CJK ideographs neither cased nor ignorable, so they stop the
        search as a word boundary would). Every other code point lower-cases on its own.
        """

        def replace_final_sigmas():
            considered = properties & _CASE_IGNORABLE == 0
            positions = tf.where(considered)[:, 0]  # not empty: sigma itself is considered
            last = tf.size(positions, tf.int64) - 1
            upto = tf.cumsum(tf.cast(considered, tf.int64))  # considered chars at or before
            before = upto - tf.cast(considered, tf.int64)
            previous = tf.gather(positions, tf.maximum(before - 1, 0))
            following = tf.gather(positions, tf.minimum(upto, last))
            cased = properties & _CASED != 0

            def cased_in_same_text(exists, index):
                return exists & (tf.gather(rows, index) == rows) & tf.gather(cased, index)

            final = (
                (code_points == _CAPITAL_SIGMA)
                & cased_in_same_text(before > 0, previous)
                & ~cased_in_same_text(upto <= last, following)
            )
            return tf.where(final, _FINAL_SIGMA, code_points)

        has_sigma = tf.reduce_any(code_points == _CAPITAL_SIGMA)
        return tf.cond(has_sigma, replace_final_sigmas, lambda: code_points)

    def _lower_strip_accents(self, code_points, rows, words):
        """str.lower(), then NFD, then drop the Mn marks, of every word (_run_strip_accents).

        Both mappings are applied per code point from a table (so a code point may become
        several, e.g. a Hangul syllable its jamo). NFD then sorts each run of combining
        marks by combining class; after that the Mn marks are dropped.
        Returns the new code points with their `rows` and `words`.
        """
        index = tf.minimum(
            tf.searchsorted(self._lower_keys, code_points), tf.size(self._lower_keys) - 1
        )
        in_table = tf.gather(self._lower_keys, index) == code_points
        index = tf.where(in_table, index, tf.size(self._lower_keys))  # the [-1] row
        expansions = tf.gather(self._lower_expansions, index)
        source = expansions.value_rowids()
        code_points = tf.where(
            expansions.values < 0, tf.gather(code_points, source), expansions.values
        )
        rows, words = tf.gather(rows, source), tf.gather(words, source)

        # Canonical ordering: a stable sort of each run of non-starters (combining class > 0)
        # by combining class. It only matters for the few non-Mn marks, e.g. U+302E.
        properties = self._properties(code_points)
        combining_class = tf.cast(tf.bitwise.right_shift(properties, _CCC_SHIFT) & 0xFF, tf.int64)
        runs = tf.cumsum(tf.cast((combining_class == 0) | _differs_from_previous(words), tf.int64))
        order = tf.argsort(runs * 256 + combining_class, stable=True)
        code_points, rows, words, properties = (
            tf.gather(x, order) for x in (code_points, rows, words, properties)
        )
        return _mask((code_points, rows, words), properties & _NONSPACING_MARK == 0)


# --------------------------------------------------------------------------------- helpers


def _mask(arrays, keep):
    """Apply the boolean mask `keep` to each array of the tuple `arrays`."""
    return tuple(tf.boolean_mask(array, keep) for array in arrays)


def _previous(flags):
    """flags shifted by one position: the previous element's flag (False for the first)."""
    return tf.concat([[False], flags], axis=0)[:-1]  # (flags[:-1] would give [False] for [])


def _differs_from_previous(values):
    """Whether each element differs from the one before it (True for the first)."""
    return tf.concat([[True], values[1:] != values[:-1]], axis=0)[: tf.size(values)]


def _truncate_rows(ragged, lengths):
    """Keep the first lengths[i] elements of row i of a 2-D RaggedTensor."""
    lengths = tf.cast(lengths, tf.int64)
    positions = tf.ragged.range(ragged.row_lengths()).flat_values
    keep = positions < tf.gather(lengths, ragged.value_rowids())
    values = tf.boolean_mask(ragged.flat_values, keep)
    return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)


def _can_be_looked_up(token):
    """Whether WordPiece could ever look `token` up: words never contain whitespace."""
    return token not in ("", "##") and not any(char.isspace() for char in token)


def _load_checked_vocab(vocab_file):
    """tokenization.load_vocab(vocab_file), after checking that the graph's table agrees.

    The graph's table (tf.lookup.TextFileInitializer) has one key per raw line (without "\\n"
    and a trailing "\\r"); load_vocab strips every line of whitespace. The albert_zh vocab has
    two such lines, "\\u2028" and "##\\u2028", harmless because no word contains whitespace;
    any difference that could change an id raises AlbertError.
    """
    vocab = tokenization.load_vocab(vocab_file)
    with open(vocab_file, "rb") as f:
        lines = f.read().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the file ends with a newline
    graph_vocab = {}
    for index, line in enumerate(lines):
        line = line.removesuffix(b"\r")
        if line in graph_vocab:
            raise errors.AlbertError(
                f"{vocab_file}: line {index + 1} repeats line {graph_vocab[line] + 1}"
                f" ({line!r}); the in-graph vocab table needs unique lines"
            )
        graph_vocab[line] = index
    problems = [
        token
        for token, index in vocab.items()
        if _can_be_looked_up(token) and graph_vocab.get(token.encode("utf-8")) != index
    ]
    problems += [
        token
        for token, index in graph_vocab.items()
        if _can_be_looked_up(tokenization.convert_to_unicode(token))
        and vocab.get(tokenization.convert_to_unicode(token)) != index
    ]
    if problems:
        raise errors.AlbertError(
            f"{vocab_file}: tokens {problems[:5]!r} would get other ids in the graph than in"
            " tokenization.load_vocab (surrounding whitespace on a line?)"
        )
    return vocab


# ------------------------------------------------------------------------- Unicode tables


@functools.cache
def _property_table():
    """Properties of all code points, run-length encoded: (run starts, run values)."""
    values = _property_values()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
    return starts, values[starts]


@functools.cache
def _property_values():
    """The property bits (_DROP etc.) of every code point: int32 array [0x110000].

    Computed with tokenization.py's own character classes. Unassigned (Cn), private-use (Co)
    and surrogate (Cs) code points have none of the properties they test, so only the
    ~150k other code points are examined (about 1 s, once per process).
    """
    values = np.zeros(0x110000, np.int32)
    for low, high in tokenization.CJK_RANGES:
        values[low : high + 1] |= _CJK
    values[0xD800:0xE000] |= _DROP  # surrogates are invalid in UTF-8

    examined = np.array(
        [cp for cp in range(0x110000) if unicodedata.category(chr(cp)) not in ("Cn", "Co", "Cs")]
    )
    chars = [chr(code_point) for code_point in examined]

    def where(predicate):
        return np.fromiter(map(predicate, chars), bool, len(chars))

    drop = where(tokenization.is_control) | (examined == 0) | (examined == 0xFFFD)
    space = ~drop & (where(tokenization.is_whitespace) | where(str.isspace))
    # Spaces and CJK ideographs end a word: _final_sigma must see them as neither cased nor
    # ignorable, so only word characters get the case bits.
    cased, ignorable = _case_properties(chars, ~(drop | space | (values[examined] & _CJK != 0)))
    for flags, bit in (
        (drop, _DROP),
        (space, _SPACE),
        (where(tokenization.is_punctuation), _PUNCT),
        (cased, _CASED),
        (ignorable, _CASE_IGNORABLE),
        (where(lambda char: unicodedata.category(char) == "Mn"), _NONSPACING_MARK),
    ):
        values[examined[flags]] |= bit
    combining = np.fromiter(map(unicodedata.combining, chars), np.int32, len(chars))
    values[examined] |= combining << _CCC_SHIFT
    return values


def _case_properties(chars, letters):
    """Boolean arrays (cased, case_ignorable) as CPython's str.lower() sees the characters.

    Python does not expose these two properties, so they are read off its final-sigma rule:
    "Σ" after a character is final iff the character is cased or ignorable, and "Σ" before
    it is final iff it is ignorable or not cased. All probes go through one str.lower()
    call, separated by spaces (which stop the rule). Only where `letters` is True.
    """
    probes = [char if letter else "x" for char, letter in zip(chars, letters, strict=True)]
    after = " ".join("A" + char + "Σ" for char in probes).lower().split(" ")
    before = " ".join("AΣ" + char for char in probes).lower().split(" ")
    final_after = np.array([probe[-1] == "ς" for probe in after])
    final_before = np.array([probe[1] == "ς" for probe in before])
    ignorable = final_after & final_before & letters
    cased = final_after & ~final_before & letters
    return cased, ignorable


@functools.cache
def _lower_nfd_table():
    """Code points c with NFD(c.lower()) != c, sorted, and their NFD(c.lower()) code points.

    Spaces and dropped characters are left out (they never get lower-cased). "Σ" maps to "σ"
    here; _final_sigma has already replaced the final ones by "ς".
    """
    skip = _property_values() & (_DROP | _SPACE) != 0
    keys, expansions = [], []
    for code_point in np.flatnonzero(~skip):
        char = chr(code_point)
        mapped = unicodedata.normalize("NFD", char.lower())
        if mapped != char:
            if any(c.isspace() for c in mapped):  # never so in Unicode 14/15
                raise RuntimeError(f"lower/NFD of U+{code_point:04X} contains whitespace")
            keys.append(int(code_point))
            expansions.append([ord(c) for c in mapped])
    return keys, expansions
