"""nerdistill: distil an LLM NER annotator into a small BERT token classifier."""

__version__ = "0.1.0"
