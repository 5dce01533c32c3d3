"""Cheap CPU dropout: the same distribution and gradients as dropout, reproducible under a seed,
and a model whose eval outputs are unchanged by the swap."""

import pytest
import torch
from torch import nn

from nerdistill.data.labels import LabelSet
from nerdistill.student.dropout import CheapDropout, cheap_dropout, keep_mask, use_cheap_dropout
from nerdistill.student.models import tiny_backbone
from nerdistill.student.module import TokenClassifier

LABELS = LabelSet(("PER", "ORG", "LOC", "MISC"))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_drops_p_of_the_elements(p):
    torch.manual_seed(0)
    kept = keep_mask(torch.Size([1000, 1001]), p, torch.device("cpu")).float().mean().item()
    assert abs(kept - (1 - p)) < 0.003  # ~6 standard deviations at n = 1,001,000


def test_keep_mask_has_no_pattern_across_positions():
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([4000, 64]), 0.5, torch.device("cpu")).float()
    # the four 16-bit slices of one 64-bit draw land in adjacent positions: they must be independent
    by_slot = mask.view(-1, 4).mean(0)
    assert torch.all((by_slot - 0.5).abs() < 0.01)
    neighbours = (mask.view(-1)[:-1] * mask.view(-1)[1:]).mean().item()
    assert abs(neighbours - 0.25) < 0.01


def test_cheap_dropout_keeps_the_expectation_and_masks_gradients():
    torch.manual_seed(0)
    x = torch.rand(500, 400, requires_grad=True)
    y = cheap_dropout(x, 0.1, training=True)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.005
    assert torch.allclose(y[~dropped], x[~dropped] / 0.9)
    assert abs(y.mean().item() - x.mean().item()) < 0.005
    y.sum().backward()
    assert torch.equal(x.grad == 0, dropped)
    assert torch.allclose(x.grad[~dropped], torch.full_like(x.grad[~dropped], 1 / 0.9))


def test_cheap_dropout_is_identity_in_eval_and_seeded_in_training():
    x = torch.randn(64, 32)
    assert torch.equal(cheap_dropout(x, 0.3, training=False), x)
    assert torch.equal(cheap_dropout(x, 1.0, training=True), torch.zeros_like(x))
    torch.manual_seed(7)
    first = cheap_dropout(x, 0.3, training=True)
    torch.manual_seed(7)
    assert torch.equal(cheap_dropout(x, 0.3, training=True), first)
    assert not torch.equal(cheap_dropout(x, 0.3, training=True), first)


def test_use_cheap_dropout_swaps_modules_and_leaves_eval_outputs_unchanged():
    torch.manual_seed(0)
    model = tiny_backbone(LABELS).eval()
    ids = torch.randint(1000, 2000, (3, 9))
    attention_mask = torch.ones(3, 9, dtype=torch.long)
    attention_mask[2, 4:] = 0
    before = model(input_ids=ids, attention_mask=attention_mask).logits
    use_cheap_dropout(model)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert any(isinstance(m, CheapDropout) for m in model.modules())
    assert torch.equal(model(input_ids=ids, attention_mask=attention_mask).logits, before)
    model.train()
    torch.manual_seed(1)
    first = model(input_ids=ids, attention_mask=attention_mask).logits
    assert not torch.allclose(first, before)  # dropout is on while training
    torch.manual_seed(1)
    assert torch.equal(model(input_ids=ids, attention_mask=attention_mask).logits, first)


@pytest.mark.parametrize("cheap", [True, False])
def test_token_classifier_uses_cheap_dropout_unless_disabled(cheap):
    module = TokenClassifier(backbone=tiny_backbone, labels=LABELS, cheap_dropout=cheap)
    assert any(isinstance(m, CheapDropout) for m in module.modules()) is cheap
