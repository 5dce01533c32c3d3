"""Raw text -> sentences -> tokens, the way CoNLL-2003 is tokenised.

CoNLL conventions kept: punctuation, brackets, quotes, ``$``/``£``/``%`` and the clitics
``'s n't 're 'm 've 'll 'd`` are split off; hyphenated words (``Urdu-speaking``), numbers
(``1,000``, ``3.5``), dotted abbreviations (``U.S.``, ``Mr.``, ``a.m.``) stay whole.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof st jr sr rev gen col lt sgt capt cmdr gov sen rep pres supt insp
    inc ltd co corp plc bros dept est vs etc al approx fig no nos vol ed eds
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    ala ariz calif colo conn fla ga ill ind kan mass md mich minn miss mo nev okla ore pa
    tenn tex va wash wis
    """.split()
)
CLITICS = ("n't", "'s", "'re", "'m", "'ve", "'ll", "'d")
LEADING = "\"'`([{“‘«$£€¥"
TRAILING = "\"'`)]}”’»,;:!?%"
_DOTTED = re.compile(r"^(?:[A-Za-z]\.){2,}$|^[A-Z]\.$")
_BOUNDARY = re.compile(r"([.!?]+[\"'”’)\]]*)\s+(?=[\"'“‘(\[]?[A-Z0-9£$€])")


def is_abbreviation(word: str) -> bool:
    """``Mr.``, ``U.S.``, ``J.``, ``Calif.``: a period that belongs to the word."""
    if not word.endswith("."):
        return False
    stem = word.rstrip(".")
    return bool(_DOTTED.match(word)) or stem.lower() in ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: every non-blank line (a title, a paragraph) is split at ``. ! ?``
    followed by a capital, digit or opening quote, unless the period ends an abbreviation."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        start = 0
        for match in _BOUNDARY.finditer(line):
            words = line[start : match.end(1)].split()
            if match.group(1) == "." and words and is_abbreviation(words[-1]):
                continue
            sentences.append(line[start : match.end(1)])
            start = match.end()
        if line[start:].strip():
            sentences.append(line[start:].strip())
    return sentences


def _split_word(word: str) -> list[str]:
    head: list[str] = []
    tail: list[str] = []
    while word and word[0] in LEADING and len(word) > 1:
        head.append(word[0])
        word = word[1:]
    while word:
        if word[-1] in TRAILING and len(word) > 1:
            tail.insert(0, word[-1])
            word = word[:-1]
        elif word.endswith("...") and len(word) > 3:
            tail.insert(0, "...")
            word = word[:-3]
        elif word.endswith(".") and len(word) > 1 and not is_abbreviation(word):
            tail.insert(0, ".")
            word = word[:-1]
        else:
            break
    for clitic in CLITICS:
        if word.lower().endswith(clitic) and len(word) > len(clitic):
            tail.insert(0, word[-len(clitic) :])
            word = word[: -len(clitic)]
            break
    else:
        if word.endswith(("'", "’")) and len(word) > 1 and word[:-1].isalpha():  # analysts'
            tail.insert(0, word[-1])
            word = word[:-1]
    return head + ([word] if word else []) + tail


def tokenize(sentence: str) -> list[str]:
    """CoNLL-style tokens of one sentence."""
    return [token for word in sentence.split() for token in _split_word(word)]


def sentences_from_text(text: str) -> list[list[str]]:
    """Split raw text into sentences and tokenise each like CoNLL-2003."""
    return [tokens for tokens in (tokenize(s) for s in split_sentences(text)) if tokens]
