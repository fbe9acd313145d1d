"""Test oracle: whole-word spans of WordPiece tokens, computed independently of
create_pretraining_data.py's masking code (which works on byte flags per token)."""

import tokenization


def is_special_token(token):
    """Special tokens look like "[CLS]", "[MASK]", "[unused1]"; a lone "[" is punctuation."""
    return len(token) > 2 and token.startswith("[") and token.endswith("]")


def is_cjk_token(surface):
    """Whether a token's text (without "##") consists only of CJK ideographs."""
    return bool(surface) and all(tokenization.is_chinese_char(ord(char)) for char in surface)


def jieba_word_spans(tokens, segmenter=tokenization.DEFAULT_WORD_SEGMENTER):
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
        "" if is_special_token(token) else token[2:] if token.startswith("##") else token
        for token in tokens
    ]

    # Build jieba's input and remember where each token's text starts in it.
    pieces = []
    token_starts = []
    offset = 0
    for index, surface in enumerate(surfaces):
        if index > 0 and not (is_cjk_token(surfaces[index - 1]) and is_cjk_token(surface)):
            pieces.append(" ")  # keeps jieba from gluing e.g. two English words together
            offset += 1
        token_starts.append(offset)
        pieces.append(surface)
        offset += len(surface)
    text = "".join(pieces)

    words = tokenization.word_segmenter(segmenter)(text)
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
        if index > 0 and not (is_special_token(token) or is_special_token(tokens[index - 1])):
            if token.startswith("##"):
                joins_previous = True
            elif is_cjk_token(surfaces[index - 1]) and is_cjk_token(surfaces[index]):
                joins_previous = token_starts[index] not in word_starts
        if joins_previous:
            spans[-1] = (spans[-1][0], index + 1)
        else:
            spans.append((index, index + 1))
    return spans
