"""Loading the local model from its GGUF file: the tokenizer (converted once and kept by the file's
sha256), the weights in the configured dtype, and reading its tokens back as bytes."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nerdistill.teacher.client import TeacherError
from nerdistill.teacher.local.settings import LocalSettings

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, inverted: token characters to the bytes they stand for."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class LoadedModel:
    """The tokenizer (its chat template) and the causal LM of ``settings``' GGUF file on ``settings.device``,
    and what generating with them needs to know: the end-of-turn tokens, the context length, the KV cache
    argument."""

    def __init__(self, settings: LocalSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
        if missing:
            raise TeacherError(
                f"teacher=local needs {' and '.join(missing)}, with which transformers reads GGUF files: "
                f"pip install {' '.join(missing)} (or -e '.[local]')"
            )
        self.path = settings.path()
        self.sha256 = sha256_file(self.path)
        started = time.perf_counter()
        where, name = str(self.path.parent), self.path.name
        converted = (
            Path(settings.convert_dir) / f"{self.path.stem}-{self.sha256[:16]}-tokenizer"
            if settings.convert_dir
            else None
        )
        self.tokenizer_from = (
            "converted" if converted is not None and (converted / "tokenizer.json").is_file() else "gguf"
        )
        if self.tokenizer_from == "converted":
            self.tokenizer = AutoTokenizer.from_pretrained(str(converted), local_files_only=True)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
            if converted is not None:
                self.save_tokenizer(converted)
        self.device = torch.device(settings.device)
        self.model = (
            AutoModelForCausalLM.from_pretrained(
                where, gguf_file=name, dtype=getattr(torch, settings.dtype), local_files_only=True
            )
            .to(self.device)
            .eval()
        )
        self.load_s = time.perf_counter() - started
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.path} has no chat template")
        eos = self.model.generation_config.eos_token_id
        self.eos = {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None} | {
            int(self.tokenizer.eos_token_id)
        }
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos)
        self.special = set(self.tokenizer.all_special_ids)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        # the KV cache argument: `cache` in newer transformers 5 releases (`past_key_values` deprecated),
        # `past_key_values` before
        self.cache_kwarg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.bytes_of = _byte_decoder()

    def save_tokenizer(self, target: Path) -> None:
        """The tokenizer as transformers saves it (its chat template included), written whole or not at
        all: converting it from the GGUF file's vocabulary costs about 40 s of CPU, the weights 5."""
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        self.tokenizer.save_pretrained(str(partial))
        try:
            partial.rename(target)
        except OSError:  # another process saved it first
            import shutil

            shutil.rmtree(partial, ignore_errors=True)

    def render(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int] | None, int]:
        """The prompt's token ids; those of its shared prefix (all before the last message), if a prefix of
        them; and how many tokens its first message (the system message, which every call of a job shares) takes."""
        turns = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in messages]
        ids = list(
            self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=False)
        )
        if len(turns) < 2:
            return ids, None, 0
        prefix = list(
            self.tokenizer.apply_chat_template(
                turns[:-1], add_generation_prompt=False, tokenize=True, return_dict=False
            )
        )
        opening = (
            list(
                self.tokenizer.apply_chat_template(
                    turns[:1], add_generation_prompt=False, tokenize=True, return_dict=False
                )
            )
            if len(turns) > 2
            else prefix
        )
        if not (0 < len(prefix) < len(ids) and ids[: len(prefix)] == prefix):
            return ids, None, 0
        return ids, prefix, len(opening) if prefix[: len(opening)] == opening else 0

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for (GPT-2 byte-level BPE), so logprobs' ``bytes`` spell the answer."""
        piece = self.tokenizer.convert_ids_to_tokens(token)
        if all(c in self.bytes_of for c in piece):
            return bytes(self.bytes_of[c] for c in piece)
        return piece.encode("utf-8")
