"""Data layer: CoNLL reading/writing, labels, and training pools."""

from nerdistill.data.conll import CoNLLFormatError, Sentence, read_conll, write_conll
from nerdistill.data.labels import DEFAULT_TYPES, LabelSet, as_label_set, spans, to_iob2

__all__ = [
    "DEFAULT_TYPES",
    "CoNLLFormatError",
    "LabelSet",
    "Sentence",
    "as_label_set",
    "read_conll",
    "spans",
    "to_iob2",
    "write_conll",
]
