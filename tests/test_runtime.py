"""precision: auto follows the hardware (detection forced both ways), everywhere a precision is chosen."""

import json
import warnings

import pytest
import torch
from omegaconf import OmegaConf

from nerdistill import runtime
from nerdistill.data import read_conll, write_conll
from nerdistill.evaluate import evaluate
from nerdistill.student.inference import Tagger
from nerdistill.teacher.sim import SimSettings, SimTeacher
from nerdistill.train import train
from tests.conftest import TINY_GOLD_RUN, compose_config

XEON_AMX = {
    "architecture": "x86_64",
    "avx2": True,
    "avx512_f": True,
    "amx_bf16": True,
    "amx_tile": True,
    "avx512_bf16": True,
}
EPYC_AVX2 = {"architecture": "x86_64", "avx2": True, "avx512_f": False, "amx_bf16": False, "avx512_bf16": False}
ARM_BF16 = {"architecture": "aarch64", "neon": True, "bf16": True}


@pytest.fixture
def cpu(monkeypatch):
    """Sets the CPU features PyTorch reports; clears any ISA limit from the environment."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)

    def use(capabilities: dict) -> None:
        monkeypatch.setattr(runtime, "cpu_capabilities", lambda: dict(capabilities))

    return use


@pytest.mark.parametrize(
    ("capabilities", "expected"), [(XEON_AMX, "bf16-mixed"), (ARM_BF16, "bf16-mixed"), (EPYC_AVX2, "32-true")]
)
def test_auto_follows_the_cpu(cpu, capabilities, expected):
    cpu(capabilities)
    choice = runtime.choose_precision("auto", "cpu")
    assert choice.precision == expected
    assert choice.reason


def test_an_isa_limit_in_the_environment_counts_as_no_native_bf16(cpu, monkeypatch):
    cpu(XEON_AMX)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    choice = runtime.choose_precision("auto", "cpu")
    assert choice.precision == "32-true" and "ONEDNN_MAX_CPU_ISA=AVX2" in choice.reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert runtime.choose_precision("auto", "cpu").precision == "bf16-mixed"


def test_auto_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "A100")
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation or True
    )
    assert runtime.choose_precision("auto", "cuda").precision == "bf16-mixed"
    # a V100: emulated only
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert runtime.choose_precision("auto", "cuda").precision == "32-true"
    assert runtime.device_type("gpu") == "cuda" and runtime.device_type("cpu") == "cpu"


def test_an_explicit_precision_wins_and_bf16_on_an_emulating_cpu_warns(cpu):
    cpu(EPYC_AVX2)
    with pytest.warns(UserWarning, match=r"without native bf16.*trainer.precision=32-true"):
        assert runtime.resolve_precision("bf16-mixed", "cpu", "trainer.precision").precision == "bf16-mixed"
    cpu(XEON_AMX)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_precision("32-true", "cpu").precision == "32-true"
        assert runtime.resolve_precision("bf16-mixed", "cpu").precision == "bf16-mixed"


def test_an_unknown_precision_names_the_key():
    with pytest.raises(ValueError, match=r"trainer.precision='fp8' is not a precision"):
        runtime.choose_precision("fp8", "cpu", "trainer.precision")


@pytest.mark.parametrize(("capabilities", "expected"), [(XEON_AMX, "bf16-mixed"), (EPYC_AVX2, "32-true")])
def test_train_resolves_auto_and_records_it(cpu, tmp_path, tiny_train_overrides, capabilities, expected):
    cpu(capabilities)
    cfg = compose_config("train", [*tiny_train_overrides, "trainer.fast_dev_run=true"], tmp_path)
    assert cfg.trainer.precision == "auto"
    metrics = train(cfg)
    assert metrics["precision"] == expected
    assert json.loads((tmp_path / "metrics.json").read_text())["precision"] == expected


def test_train_refuses_an_unknown_precision_before_loading_anything(tmp_path, tiny_train_overrides):
    cfg = compose_config("train", [*tiny_train_overrides, "trainer.precision=half"], tmp_path)
    with pytest.raises(ValueError, match="trainer.precision='half'"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("run")
    train(compose_config("train", TINY_GOLD_RUN, out))
    return out / "model"


@pytest.mark.parametrize(("capabilities", "expected"), [(XEON_AMX, "bf16-mixed"), (EPYC_AVX2, "32-true")])
def test_evaluate_predict_and_the_teacher_resolve_auto(cpu, model_dir, data_dir, tmp_path, capabilities, expected):
    cpu(capabilities)
    for config in ("evaluate", "predict"):
        assert OmegaConf.load(f"conf/{config}.yaml").precision == "auto"
    assert Tagger(model_dir, device="cpu").precision == expected
    subset = tmp_path / "dev.txt"
    write_conll(subset, read_conll(data_dir / "conll2003" / "valid.txt")[:50])
    assert (
        evaluate(compose_config("evaluate", [f"model_dir={model_dir}", f"split={subset}"], tmp_path))["precision"]
        == expected
    )
    teacher = SimTeacher(SimSettings(oracle=[], model_dir=str(model_dir)))
    assert teacher.tagger.precision == expected


def test_the_simulator_identity_counts_precision_only_where_its_tagger_uses_bf16(cpu, model_dir):
    cpu(EPYC_AVX2)
    fp32 = SimSettings(oracle=[], model_dir=str(model_dir)).identity()
    assert SimSettings(oracle=[], model_dir=str(model_dir), precision="32-true").identity() == fp32
    assert SimSettings(oracle=[], model_dir=str(model_dir), precision="bf16-mixed").identity() != fp32
    cpu(XEON_AMX)
    assert SimSettings(oracle=[], model_dir=str(model_dir)).identity() != fp32
    assert SimSettings(oracle=[]).identity() == SimSettings(oracle=[], precision="bf16-mixed").identity()


def test_int8_quantised_tagging_keeps_the_tags(model_dir, data_dir):
    sentences = [s.tokens for s in read_conll(data_dir / "conll2003" / "valid.txt")[:200]]
    fp32 = Tagger(model_dir, precision="32-true", device="cpu")
    int8 = Tagger(model_dir, quantize="int8", device="cpu")
    assert int8.precision == "int8"
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    reference, quantised = fp32.tag(sentences), int8.tag(sentences)
    assert [len(t) for t in quantised] == [len(s) for s in sentences]
    same = sum(a == b for x, y in zip(reference, quantised) for a, b in zip(x, y))
    assert same / sum(map(len, sentences)) > 0.95
    with pytest.raises(ValueError, match="quantize='int4'"):
        Tagger(model_dir, quantize="int4")
