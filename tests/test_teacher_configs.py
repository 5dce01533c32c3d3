"""Every teacher, prompt and input option composes, and what can be built offline, is."""

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from nerdistill.teacher.client import TeacherClient
from nerdistill.teacher.sim import SimSettings
from tests.conftest import CONF, compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_default_is_the_offline_simulated_teacher(tmp_path):
    cfg = compose_config("annotate", [], tmp_path)
    assert (
        cfg.teacher.name == "sim" and cfg.prompt.id == "standard" and cfg.input.n == 1000 and cfg.input.split == "train"
    )
    assert isinstance(instantiate(cfg.teacher.sim), SimSettings)


@pytest.mark.parametrize("option", options("teacher"))
def test_teachers_build_their_client(option, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = compose_config("annotate", [f"teacher={option}"], tmp_path)
    client = instantiate(cfg.teacher.client, base_url=cfg.teacher.base_url or "http://127.0.0.1:1/v1")
    assert isinstance(client, TeacherClient) and client.model == cfg.teacher.model
    assert ("sim" in cfg.teacher) == option.startswith("sim")


def test_openai_teacher_reads_its_key_from_the_environment_only(tmp_path):
    cfg = compose_config("annotate", ["teacher=openai"], tmp_path)
    assert (
        cfg.teacher.api_key_env == "OPENAI_API_KEY"
        and cfg.teacher.base_url == "https://api.openai.com/v1"
        and cfg.teacher.model == "gpt-4o-mini"
    )
    assert "sk-" not in str(cfg)


@pytest.mark.parametrize("option", options("prompt"))
def test_prompts_compose_with_id_and_version(option, tmp_path):
    cfg = compose_config("annotate", [f"prompt={option}"], tmp_path)
    prompt = instantiate(cfg.prompt)
    assert prompt.key == f"{option}@{cfg.prompt.version}"


@pytest.mark.parametrize("option", options("input"))
def test_inputs_compose(option, tmp_path):
    source = instantiate(compose_config("annotate", [f"input={option}"], tmp_path).input)
    assert source.describe()["kind"] == option


def test_standalone_simulator_config_composes(tmp_path):
    cfg = compose_config("sim", ["teacher.sim.port=8000", "teacher.sim.target_f1=0.7"], tmp_path)
    settings = instantiate(cfg.teacher.sim)
    assert settings.port == 8000 and settings.target_f1 == 0.7 and settings.models == ["sim"]


def test_local_teacher_dtype_is_checked_and_keys_its_own_cache_entries(tmp_path):
    """``teacher.local.dtype``: float32 by default, keyed as before the option existed (the phase 1
    caches keep answering); bfloat16 answers differ, so they get their own key; a typo names the key."""
    from nerdistill.teacher.local import LocalSettings, identity

    cfg = compose_config("annotate", ["teacher=local"], tmp_path)
    settings = instantiate(cfg.teacher.local)
    assert settings.dtype == "float32" and "dequantized to fp32" in settings.description
    assert (
        "dequantized to bf16"
        in instantiate(
            compose_config("annotate", ["teacher=local", "teacher.local.dtype=bfloat16"], tmp_path).teacher.local
        ).description
    )
    with pytest.raises(
        InstantiationException, match=r"teacher\.local\.dtype must be one of \['bfloat16', 'float32'\], got 'float16'"
    ):
        instantiate(
            compose_config("annotate", ["teacher=local", "teacher.local.dtype=float16"], tmp_path).teacher.local
        )
    # the identity results/phase1_local/standard/report.json recorded for the packaged file in fp32
    sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert identity(sha256, settings.models, "float32") == "local:baeb3ddbefbe37f8"
    assert identity(sha256, settings.models, "bfloat16") != identity(sha256, settings.models, "float32")
    assert LocalSettings().dtype == "float32"


def test_local_teacher_device_resolves_and_keys_gpu_answers_apart(tmp_path, monkeypatch):
    """``teacher.local.device``: ``auto`` is the CPU where torch sees no CUDA GPU and ``cuda`` where it
    sees one (said in the description); a CUDA device that is not there, or a typo, names the key; answers
    made on a GPU get their own cache key, and the CPU's key is the one recorded before the option existed."""
    import torch

    from nerdistill.teacher.local import LocalSettings, identity

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = instantiate(compose_config("annotate", ["teacher=local"], tmp_path).teacher.local)
    assert settings.device == "cpu" and settings.description.endswith("on this machine's CPU")
    with pytest.raises(InstantiationException, match=r"teacher\.local\.device=cuda: torch sees 0 CUDA device"):
        instantiate(compose_config("annotate", ["teacher=local", "teacher.local.device=cuda"], tmp_path).teacher.local)
    with pytest.raises(ValueError, match=r"teacher\.local\.device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        LocalSettings(device="gpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    on_gpu = LocalSettings()
    assert on_gpu.device == "cuda" and on_gpu.description.endswith("on this machine's GPU (cuda)")
    assert LocalSettings(device="cuda:0").device == "cuda:0"
    assert LocalSettings(device="cpu").device == "cpu"
    with pytest.raises(ValueError, match=r"teacher\.local\.device=cuda:1: torch sees 1 CUDA device"):
        LocalSettings(device="cuda:1")

    sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    keys = {device: identity(sha256, settings.models, "float32", device) for device in ("cpu", "cuda", "cuda:0")}
    assert keys["cpu"] == "local:baeb3ddbefbe37f8"
    assert keys["cuda"] == keys["cuda:0"] != keys["cpu"]
