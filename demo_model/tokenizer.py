"""The trained demo's tokenizer: a CLIP BPE tokenizer whose merges make each vocabulary word one
token, over the byte alphabet, so that any other text still tokenizes (into characters)."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from demo_model.vocabulary import words

# The longest caption is 22 tokens; SD's 77 would make every step attend to 55 pads (a fifth of
# the training time). Longer prompts are truncated, as every CLIP pipeline truncates.
MAX_LENGTH = 32
END = "</w>"


def learn_merges(vocabulary: list[str]) -> list[tuple[str, str]]:
    """BPE merges, learned on `vocabulary` until every word is one symbol (ties by name)."""
    pieces = {word: [*word[:-1], word[-1] + END] for word in vocabulary}
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for symbols in pieces.values() for pair in pairwise(symbols))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, symbols in pieces.items():
            merged, i = [], 0
            while i < len(symbols):
                if tuple(symbols[i : i + 2]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            pieces[word] = merged


def build_tokenizer():  # noqa: ANN201 (transformers is imported lazily)
    """The tokenizer: bytes, then every merge's result, then the vocabulary words are one token."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocabulary = words()
    merges = learn_merges(vocabulary)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", END):
        for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[char + suffix] = len(vocab)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)
    for word in vocabulary:  # the point of the merges: a word is one token
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"the demo tokenizer splits {word!r} into {ids}")
    return tokenizer
