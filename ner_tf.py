"""Raw text -> entities as TensorFlow ops: ner_data's windows, merge and entity reading in a graph.

    tagger = TextTagger(tokenizer, token_classifier, tags, scheme="BIOES", max_seq_length=128)
    tagger(tf.constant(["我在北京大学读书"]))
    # {"num_entities": [1], "types": [["organization"]], "starts": [[2]], "ends": [[6]],
    #  "texts": [["北京大学"]]}

This is the `ner_text` signature of export_savedmodel.py. It gives the entities that run_ner.py's
--do_predict gives for the same model and text (tested equal on CLUENER), step by step:
  1. tokenization_tf.InGraphTokenizer.tokenize_chars: ner_data.tokenize_with_offsets with
     character units;
  2. ner_data.window_ranges: a text longer than max_seq_length - 2 tokens is cut into windows
     that start every `stride` tokens (moved back to a unit's first token), never truncated;
  3. the token classifier tags every window (`[CLS] tokens [SEP]`, one batch for all windows);
  4. ner_data.merge_windows: each unit takes the tag of the window in which it is most central;
  5. ner_data.extract_entities (lenient: conlleval's chunk rules), and character offsets.
"""

import tensorflow as tf

import errors
import ner_data

# Tag prefix codes of the graph (BMES's M is read as I, as extract_entities does).
_PREFIX_CODES = {ner_data.OUTSIDE: 0, "B": 1, "I": 2, "M": 2, "E": 3, "S": 4}
_O, _B, _I, _E, _S = 0, 1, 2, 3, 4


class TextTagger(tf.Module):
    """Entities of raw texts from a token classifier and an InGraphTokenizer (see the module)."""

    def __init__(
        self, tokenizer, model, tags, scheme="BIO", max_seq_length=128, window_stride=None
    ):
        super().__init__(name="text_tagger")
        scheme = ner_data.check_scheme(scheme)
        self.tokenizer = tokenizer
        self.model = model
        self.window_size = max_seq_length - 2
        self.window_stride = window_stride or max(self.window_size // 2, 1)
        if not 1 <= self.window_stride <= self.window_size:
            raise errors.AlbertError(
                f"window stride {self.window_stride} must be in 1..{self.window_size} "
                "(max_seq_length - 2): export with the --max_seq_length the model was trained with"
            )
        parsed = [ner_data.split_tag(tag) for tag in tags]
        types = sorted({t for p, t in parsed if p != ner_data.OUTSIDE})
        self._prefix = tf.constant([_PREFIX_CODES[p] for p, _ in parsed], tf.int32)
        self._type = tf.constant([types.index(t) + 1 if t in types else 0 for _, t in parsed])
        self._type_names = tf.constant([""] + types)

    def __call__(self, texts):
        """texts: [batch] UTF-8 strings -> dict of the entities of each text, in text order.

        `num_entities` [batch] int32; `types`, `texts` [batch, E] string and `starts`, `ends`
        [batch, E] int32 (character offsets, end exclusive: texts == text[start:end]), padded
        with "" and -1 to the batch's largest E.
        """
        tokens = self.tokenizer.tokenize_chars(texts)
        windows = self._windows(tokens["unit_start"])
        tag_ids = self._tag_windows(tokens, windows)
        unit_tags = self._merge(tokens["unit_start"], windows, tag_ids)
        return self._entities(texts, tokens, unit_tags)

    # -------------------------------------------------------------------------------- windows

    def _windows(self, unit_start):
        """The windows of every text, as ner_data.window_ranges cuts them.

        Returns int32 vectors `example` (the text of each window), `start` and `end` (token
        offsets in that text), windows of one text consecutive and in order.
        """
        lengths = tf.cast(unit_start.row_lengths(), tf.int32)
        row_starts = tf.cast(unit_start.row_starts(), tf.int32)
        # Flat positions of all units' first tokens, to find the last one at or before p.
        first_tokens = tf.cast(tf.where(unit_start.flat_values)[:, 0], tf.int32)
        size, stride = self.window_size, self.window_stride

        def step(start, active, examples, starts):
            examples = examples.write(
                examples.size(), tf.boolean_mask(tf.range(tf.size(start)), active)
            )
            starts = starts.write(starts.size(), tf.boolean_mask(start, active))
            end = tf.minimum(start + size, lengths)
            active &= end < lengths
            # The next window starts `stride` later, moved back to a unit's first token if
            # one lies after `start`; never past the text (active texts have start + stride < n).
            wanted = tf.minimum(start + stride, tf.maximum(lengths - 1, 0))
            flat = tf.searchsorted(first_tokens, row_starts + wanted, side="right") - 1
            unit = tf.gather(first_tokens, tf.maximum(flat, 0)) - row_starts
            moved = tf.where((flat >= 0) & (unit > start), unit, start + stride)
            return tf.where(active, moved, start), active, examples, starts

        def array():
            return tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False)

        _, _, examples, starts = tf.while_loop(
            lambda start, active, *_: tf.reduce_any(active),
            step,
            (tf.zeros_like(lengths), lengths > 0, array(), array()),
        )
        example = _concat(examples)
        start = _concat(starts)
        end = tf.minimum(start + size, tf.gather(lengths, example))
        longest = tf.cast(tf.reduce_max(tf.concat([lengths, [0]], 0)), tf.int64)
        order = tf.argsort(tf.cast(example, tf.int64) * (longest + 1) + tf.cast(start, tf.int64))
        example, start, end = (tf.gather(x, order) for x in (example, start, end))
        return {"example": example, "start": start, "end": end}

    def _window_tokens(self, values, windows, row_starts):
        """values (flat, one per token) of each window -> RaggedTensor [windows, (tokens)]."""
        first = tf.gather(row_starts, windows["example"]) + windows["start"]
        index = tf.ragged.range(first, first + windows["end"] - windows["start"])
        return tf.gather(values, index)

    def _tag_windows(self, tokens, windows):
        """The classifier's tag ids of every window: int32 [windows, window length + 2]."""
        row_starts = tf.cast(tokens["token_ids"].row_starts(), tf.int32)
        ids = self._window_tokens(tokens["token_ids"].flat_values, windows, row_starts)
        units = self._window_tokens(tokens["unit_start"].flat_values, windows, row_starts)
        count = tf.shape(windows["start"])[0]

        def column(value, dtype):
            return tf.RaggedTensor.from_tensor(tf.fill([count, 1], tf.constant(value, dtype)))

        input_ids = tf.concat(
            [column(self.tokenizer.cls_id, tf.int32), ids, column(self.tokenizer.sep_id, tf.int32)],
            axis=1,
        )
        label_mask = tf.concat(
            [column(0, tf.int32), tf.cast(units, tf.int32), column(0, tf.int32)], axis=1
        )
        input_mask = _at_least_two_columns(tf.ones_like(input_ids).to_tensor(0))
        input_ids = _at_least_two_columns(input_ids.to_tensor(0))
        label_mask = _at_least_two_columns(label_mask.to_tensor(0))
        logits = self.model(input_ids, input_mask, tf.zeros_like(input_ids), training=False)
        return self.model.decode(logits, label_mask)

    def _merge(self, unit_start, windows, tag_ids):
        """ner_data.merge_windows: the tag of each unit (flat over all texts' units) from the
        window in which its first token is most central (ties: the earlier window)."""
        lengths = tf.cast(unit_start.row_lengths(), tf.int32)
        row_starts = tf.cast(unit_start.row_starts(), tf.int32)
        unit_of_token = tf.cumsum(tf.cast(unit_start.flat_values, tf.int32)) - 1
        num_units = tf.reduce_sum(tf.cast(unit_start.flat_values, tf.int32))
        count = tf.shape(windows["start"])[0]

        first = self._window_tokens(
            tf.cast(unit_start.flat_values, tf.int32), windows, row_starts
        )  # 1 on the first token of a unit
        window = tf.cast(first.value_rowids(), tf.int32)
        token = tf.cast(tf.ragged.range(first.row_lengths()).flat_values, tf.int32)
        keep = first.flat_values > 0
        window, token = tf.boolean_mask(window, keep), tf.boolean_mask(token, keep)
        start, end = tf.gather(windows["start"], window), tf.gather(windows["end"], window)
        example = tf.gather(windows["example"], window)
        n = tf.gather(lengths, example)
        local = start + token  # the token's offset in its text
        left = tf.where(start > 0, local - start, n)  # a text's own edge needs no context
        right = tf.where(end < n, end - 1 - local, n)
        key = tf.minimum(left, right) * (count + 1) + (count - window)
        unit = tf.gather(unit_of_token, tf.gather(row_starts, example) + local)
        best = tf.math.unsorted_segment_max(key, unit, num_units)
        tags = tf.gather_nd(tag_ids, tf.stack([window, token + 1], axis=1))  # +1: [CLS]
        chosen = key == tf.gather(best, unit)
        merged = tf.math.unsorted_segment_max(tf.where(chosen, tags, -1), unit, num_units)
        return tf.reshape(merged, [-1])

    # -------------------------------------------------------------------------------- entities

    def _entities(self, texts, tokens, unit_tags):
        """ner_data.extract_entities (lenient) on each text's unit tags, as padded tensors."""
        unit_start = tokens["unit_start"]
        unit_row = tf.boolean_mask(
            tf.cast(unit_start.value_rowids(), tf.int32), unit_start.flat_values
        )
        unit_char = tf.boolean_mask(tokens["starts"].flat_values, unit_start.flat_values)
        prefix, kind = tf.gather(self._prefix, unit_tags), tf.gather(self._type, unit_tags)

        def shifted(x, by, fill):  # x[i - by] (by=1: previous, by=-1: next), `fill` outside
            pad = tf.fill([1], tf.constant(fill, x.dtype))
            return tf.concat([pad, x], 0)[:-1] if by == 1 else tf.concat([x, pad], 0)[1:]

        same_row_before = shifted(unit_row, 1, -1) == unit_row
        same_row_after = shifted(unit_row, -1, -1) == unit_row
        previous_prefix = tf.where(same_row_before, shifted(prefix, 1, _O), _O)
        next_prefix = tf.where(same_row_after, shifted(prefix, -1, _O), _O)
        previous_kind = tf.where(same_row_before, shifted(kind, 1, 0), 0)
        next_kind = tf.where(same_row_after, shifted(kind, -1, 0), 0)
        tagged = prefix != _O
        opens = tagged & (
            (prefix == _B)
            | (prefix == _S)
            | (previous_prefix == _O)
            | (previous_prefix == _E)
            | (previous_prefix == _S)
            | (kind != previous_kind)
        )
        closes = tagged & (
            (prefix == _E)
            | (prefix == _S)
            | (next_prefix == _O)
            | (next_prefix == _B)
            | (next_prefix == _S)
            | (kind != next_kind)
        )
        # Every tagged unit lies in exactly one entity: opening and closing units pair up.
        entity_row = tf.boolean_mask(unit_row, opens)
        starts = tf.boolean_mask(unit_char, opens)
        ends = tf.boolean_mask(unit_char, closes) + 1  # a character unit covers one character
        types = tf.gather(self._type_names, tf.boolean_mask(kind, opens))

        chars = tf.strings.unicode_decode(texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
        char_index = tf.cast(chars.row_starts(), tf.int32)
        first = tf.gather(char_index, entity_row) + starts
        entity_texts = tf.strings.unicode_encode(
            tf.gather(chars.flat_values, tf.ragged.range(first, first + ends - starts)), "UTF-8"
        )
        nrows = tf.shape(texts, tf.int64)[0]
        entity_row = tf.cast(entity_row, tf.int64)

        def padded(values, fill):
            ragged = tf.RaggedTensor.from_value_rowids(values, entity_row, nrows, validate=False)
            return ragged.to_tensor(fill)

        return {
            "num_entities": tf.math.bincount(
                tf.cast(entity_row, tf.int32), minlength=tf.cast(nrows, tf.int32), dtype=tf.int32
            ),
            "types": padded(types, ""),
            "starts": padded(starts, -1),
            "ends": padded(ends, -1),
            "texts": padded(entity_texts, ""),
        }


def _concat(array):
    """A TensorArray of int32 vectors -> one vector (empty when nothing was written)."""
    return tf.cond(array.size() > 0, array.concat, lambda: tf.zeros([0], tf.int32))


def _at_least_two_columns(x):
    """[CLS] [SEP] of an empty batch: to_tensor gives [0, 0]; the encoder needs a position."""
    return tf.pad(x, [[0, 0], [0, tf.maximum(2 - tf.shape(x)[1], 0)]])
