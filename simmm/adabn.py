"""AdaBN: batch-norm statistics re-estimated on a test set (Li et al., "Revisiting batch normalization for practical
domain adaptation", 2016).

The test-time baseline every simmm table reports beside each method: no training, only the running mean and
variance of every batch-norm layer replaced by their averages over the test set's batches.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, Optional, Union

import torch
from torch import nn

from simmm.dist import is_distributed, sum_over_ranks

__all__ = ["adabn"]


@torch.no_grad()
def adabn(model: nn.Module, loader: Iterable[Union[dict, torch.Tensor]],
          forward: Optional[Callable[[nn.Module, object], object]] = None) -> nn.Module:
    """A copy of ``model`` whose batch-norm statistics are re-estimated on ``loader``: the average of the set's
    batch statistics. Batches are tensors or dicts whose ``"image"`` the model takes; ``forward(model, batch)``
    instead runs the model on a batch as the task's evaluation does (resizing, sliding windows, several scales), so
    that the statistics are those of the inputs it will score. A layer that never sees more than one value per
    channel keeps its statistics. In a distributed run each process
    averages over its share and the averages are pooled, weighted by batch count (the batches fall differently than
    in one process: the statistics agree closely, not bitwise)."""
    adapted = copy.deepcopy(model)
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return adapted
    hooks = []
    for m in norms:
        # momentum None: a cumulative average whose first batch replaces the statistics, so counting from zero
        # discards the source statistics wherever the set is seen
        m.num_batches_tracked.zero_()
        m.momentum = None
        hooks += [m.register_forward_pre_hook(_keep_if_single), m.register_forward_hook(_restore_training)]
    adapted.train()
    for m in norms:  # a model may keep its batch norm in eval mode whatever train() asks (RetrievalNet's freeze_bn)
        m.train()
    device = next(model.parameters()).device
    try:
        for batch in loader:
            if forward is not None:
                forward(adapted, batch)
            else:
                adapted((batch["image"] if isinstance(batch, dict) else batch).to(device))
    finally:
        for hook in hooks:
            hook.remove()
    if is_distributed():  # each process saw its share of the set: pool the per-batch averages of all
        for m in norms:
            n = m.num_batches_tracked.to(torch.float64).view(1)
            pooled = sum_over_ranks(torch.cat([n, m.running_mean.double() * n, m.running_var.double() * n]))
            c = m.num_features
            if float(pooled[0]) > 0:
                m.running_mean.copy_(pooled[1:c + 1] / pooled[0])
                m.running_var.copy_(pooled[c + 1:] / pooled[0])
    return adapted.eval()


def _keep_if_single(module: nn.Module, inputs) -> None:
    """A layer that sees one value per channel (a 1×1 map of a batch of one: PSPNet's global bin at batch size 1)
    has no batch statistics to take: it runs in eval mode for that call and keeps what it had."""
    x = inputs[0]
    if x.numel() == x.shape[1]:
        module.training = False


def _restore_training(module: nn.Module, inputs, output) -> None:
    module.training = True
