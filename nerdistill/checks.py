"""Config values checked against the types their targets declare, and input errors on the command line."""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_object
from omegaconf import DictConfig

SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def simple_types(annotation: Any) -> tuple[type, ...] | None:
    """The types an annotation allows if all are simple (int, float, bool, str, None); else None (not checked)."""
    members = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    return tuple(members) if members and all(m in SIMPLE for m in members) else None


def accepts(allowed: tuple[type, ...], value: Any) -> bool:
    """Whether ``value`` fits: bool is not a number, an integer is a float."""
    kind = type(value)
    return kind in allowed or (kind is int and float in allowed)


def check_value(key: str, value: Any, allowed: tuple[type, ...]) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``value`` is of one of the ``allowed`` simple types."""
    if not accepts(allowed, value):
        expected = " or ".join(SIMPLE[t] for t in allowed)
        raise ValueError(f"{key}={value!r}: expected {expected}, got {type(value).__name__}")


def check_types(node: DictConfig, key: str, target: Callable[..., Any] | None = None) -> None:
    """Each value of ``node`` against the annotation of the same-named parameter of ``target``
    (default: the node's ``_target_``); a wrong type (``data.batch_size=abc``) is a ``ValueError``
    naming ``<key>.<name>``. Parameters without a simple annotation are not checked."""
    target = target or get_object(node._target_)
    parameters = inspect.signature(target, eval_str=True).parameters
    for name, value in node.items():
        parameter = parameters.get(str(name))
        allowed = simple_types(parameter.annotation) if parameter is not None else None
        if allowed is not None:
            check_value(f"{key}.{name}", value, allowed)


def check_tagger_config(cfg: DictConfig) -> None:
    """The types of ``evaluate``'s and ``predict``'s model settings (ranges:
    :class:`~nerdistill.student.inference.Tagger`)."""
    for key, allowed in (
        ("batch_size", (int,)),
        ("max_length", (int,)),
        ("precision", (str,)),
        ("quantize", (str, type(None))),
    ):
        check_value(key, cfg.get(key), allowed)


def in_multirun() -> bool:
    """Whether this job runs under ``-m`` (a failing job is then the launcher's to record, not the process's to end)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def exit_on_input_error(log: logging.Logger) -> Iterator[None]:
    """In a single run, a bad input (``ValueError``: a malformed file or config value;
    ``OSError``: a file that is missing or not a file) ends the command with its one-line
    message and exit status 1, not a traceback (so does a target Hydra could not build from its
    config, whose message names the config key). In a multirun the error is raised on, so the
    launcher records the job as failed and runs the others."""
    try:
        yield
    except (ValueError, OSError, InstantiationException) as err:
        if in_multirun():
            raise
        log.error("%s", err)  # on the console and in the run's log file, once
        raise SystemExit(1) from None
