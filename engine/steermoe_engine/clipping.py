"""Generations clipped as HarmBench clips them before its classifier judges them
(evaluate_completions.py): encoded by the classifier's tokenizer with its special tokens, cut on the
right to --num_tokens tokens (512), decoded without the special tokens. Every generation is
replaced by that decoding, clipped or not, as there."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from transformers import AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import EngineError, first_line


@cache
def _tokenizer(source: str) -> PreTrainedTokenizerBase:
    # A path that is not there would otherwise be read as a malformed hub id.
    if source.startswith(("/", ".", "~")) and not Path(source).expanduser().exists():
        raise EngineError(f"cannot load the judge's tokenizer {source}: no such folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as err:  # a missing folder, no hub access, broken files: each its own type
        raise EngineError(f"cannot load the judge's tokenizer {source}: {first_line(err)}") from err
    tokenizer.truncation_side = "right"
    return tokenizer


def clip(source: str, max_tokens: int, texts: list[str]) -> tuple[list[str], list[bool]]:
    """Each text as the judge sees it, and whether it was cut."""
    tokenizer = _tokenizer(source)
    out, cut = [], []
    for text in texts:
        kept = tokenizer.encode(text, max_length=max_tokens, truncation=True)
        out.append(tokenizer.decode(kept, skip_special_tokens=True))
        cut.append(len(tokenizer.encode(text)) > len(kept))
    return out, cut
