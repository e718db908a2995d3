"""AdaBN: batch-norm statistics re-estimated on a test set (Li et al., "Revisiting batch normalization for practical
domain adaptation", 2016).

The test-time baseline every simmm table reports beside each method: no training, only the running mean and
variance of every batch-norm layer replaced by their averages over the test set's batches.
"""
from __future__ import annotations

import copy
from typing import Iterable, Union

import torch
from torch import nn

from simmm.dist import is_distributed, sum_over_ranks

__all__ = ["adabn"]


@torch.no_grad()
def adabn(model: nn.Module, loader: Iterable[Union[dict, torch.Tensor]]) -> nn.Module:
    """A copy of ``model`` whose batch-norm statistics are re-estimated on ``loader`` (batches: tensors, or dicts
    whose ``"image"`` the model takes): the average of the set's batch statistics. In a distributed run each process
    averages over its share and the averages are pooled, weighted by batch count (the batches fall differently than
    in one process: the statistics agree closely, not bitwise)."""
    adapted = copy.deepcopy(model)
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return adapted
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the whole set
    adapted.train()
    for m in norms:  # a model may keep its batch norm in eval mode whatever train() asks (RetrievalNet's freeze_bn)
        m.train()
    device = next(model.parameters()).device
    for batch in loader:
        adapted((batch["image"] if isinstance(batch, dict) else batch).to(device))
    if is_distributed():  # each process saw its share of the set: pool the per-batch averages of all
        for m in norms:
            n = m.num_batches_tracked.to(torch.float64).view(1)
            pooled = sum_over_ranks(torch.cat([n, m.running_mean.double() * n, m.running_var.double() * n]))
            c = m.num_features
            if float(pooled[0]) > 0:
                m.running_mean.copy_(pooled[1:c + 1] / pooled[0])
                m.running_var.copy_(pooled[c + 1:] / pooled[0])
    return adapted.eval()
