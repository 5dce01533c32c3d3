"""TokenClassifier's optimisation: frozen word embeddings stay as loaded, everything else trains."""

import pytest
import pytorch_lightning as pl
import torch

from nerdistill.data.labels import LabelSet
from nerdistill.student.encoding import IGNORE
from nerdistill.student.models import tiny_backbone
from nerdistill.student.module import TokenClassifier
from nerdistill.student.plan import RunPlan
from nerdistill.student.schedules import Original

LABELS = LabelSet(("PER", "ORG", "LOC", "MISC"))


def batches(count: int, size: int = 4, length: int = 6) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        labels = torch.randint(0, len(LABELS.tags), (size, length), generator=generator)
        labels[:, 0] = IGNORE
        out.append(
            {
                "input_ids": torch.randint(1000, 2000, (size, length), generator=generator),
                "attention_mask": torch.ones(size, length, dtype=torch.long),
                "labels": labels,
                "gold_tags": [["O"] * (length - 1)] * size,
                "distilled_share": torch.tensor(0.0),
            }
        )
    return out


class Batches(pl.LightningDataModule):
    """Ready-made training batches, one epoch, and its run plan (the module's LR schedule follows it)."""

    def __init__(self, batches: list[dict]) -> None:
        super().__init__()
        self.batches = batches
        size = len(batches[0]["gold_tags"])
        self.plan = RunPlan(Original(), len(batches) * size, 0, size, len(batches), 1, len(batches))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


def fit(module: TokenClassifier, steps: int, tmp_path) -> pl.Trainer:
    """``module`` trained ``steps`` steps on as many tiny batches, on the CPU, writing nothing."""
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=Batches(batches(steps)))
    return trainer


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_word_embeddings_stay_as_loaded_while_the_rest_trains(tmp_path, freeze):
    pl.seed_everything(0)
    module = TokenClassifier(backbone=tiny_backbone, labels=LABELS, lr=1e-2, freeze_word_embeddings=freeze)
    words = module.model.get_input_embeddings().weight
    before_words, before_head = words.detach().clone(), module.model.classifier.weight.detach().clone()
    trainer = fit(module, 3, tmp_path)

    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert (id(words) in optimised) is not freeze
    assert torch.equal(words, before_words) is freeze
    assert not torch.equal(module.model.classifier.weight, before_head)
    assert module.model.bert.embeddings.position_embeddings.weight.requires_grad  # only the word matrix is frozen


def test_load_from_checkpoint_rebuilds_the_trained_model(tmp_path):
    """A checkpoint carries the backbone's architecture: ``TokenClassifier.load_from_checkpoint``
    gives the trained weights and settings back without the run's Hydra config."""
    pl.seed_everything(0)
    module = TokenClassifier(backbone=tiny_backbone, labels=list(LABELS.types), lr=1e-2, cheap_dropout=True)
    trainer = fit(module, 2, tmp_path)
    trainer.save_checkpoint(tmp_path / "trained.ckpt")

    loaded = TokenClassifier.load_from_checkpoint(
        tmp_path / "trained.ckpt", map_location="cpu", weights_only=True
    ).eval()
    assert loaded.label_set.types == LABELS.types and loaded.hparams.lr == 1e-2
    assert loaded.model.config.hidden_size == 32 and loaded.model.config.id2label == module.model.config.id2label
    trained = module.state_dict()
    assert loaded.state_dict().keys() == trained.keys()
    assert all(torch.equal(value, trained[name]) for name, value in loaded.state_dict().items())
    batch = batches(1)[0]
    torch.testing.assert_close(loaded(batch), module.eval()(batch))


def test_a_module_needs_a_backbone_or_its_config():
    with pytest.raises(ValueError, match="backbone"):
        TokenClassifier(labels=list(LABELS.types))
