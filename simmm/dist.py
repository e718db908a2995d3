"""Distributed helpers: thin wrappers over ``torch.distributed`` that also work in a single process.

``torchrun --nproc_per_node N -m simmm train RECIPE`` starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
set; :func:`init_from_env` joins them into one process group (NCCL on GPUs, gloo on CPU). Multi-node runs go through
torchrun's rendezvous (``--nnodes``, ``--rdzv-endpoint``); nothing here changes.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as td
from torch import nn

__all__ = ["SyncBatchNormCPU", "all_gather_objects", "all_true", "any_true", "barrier", "convert_sync_batchnorm",
           "destroy", "gather_rows", "init_from_env", "is_distributed", "is_main", "local_rank", "mean_over_ranks",
           "per_process", "rank", "sum_over_ranks", "world_size"]


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on the process that logs and saves (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        td.barrier()


def init_from_env(device: str, timeout_s: float = 600.0) -> bool:
    """Join the process group torchrun describes in the environment (``WORLD_SIZE`` > 1). Returns whether the run is
    distributed. ``device``: the recipe's device (``auto``/``cpu``/``cuda``...): NCCL for CUDA, gloo for CPU."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    td.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return True


def destroy() -> None:
    if is_distributed():
        td.destroy_process_group()


def all_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every process (one process: ``flag``). Used where all must take the same branch
    (a step skipped by the NaN guard on one rank must be skipped on all, or the others wait for its gradients)."""
    if not is_distributed():
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    td.all_reduce(t)
    return float(t) == 0.0


def any_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on some process (a stop asked of one process stops all at the same step)."""
    return not all_true(not flag, device)


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes, as a copy (``t`` is untouched). NCCL reduces on the GPU: a CPU tensor makes the
    trip there and back."""
    out = t.clone()
    if not is_distributed():
        return out
    if td.get_backend() == "nccl" and out.device.type != "cuda":
        moved = out.to(torch.device("cuda", torch.cuda.current_device()))
        td.all_reduce(moved)
        return moved.to(t.device)
    td.all_reduce(out)
    return out


def per_process(count: torch.Tensor) -> torch.Tensor:
    """The mean of ``count`` over processes (float32), or ``count`` itself, untouched, in one process.

    A loss that is a mean over the batch's pixels (or any items) divides its sum by their count. In a distributed
    run each process holds a share of the batch and DDP averages the processes' gradients: a process that divides
    its own sum by ``per_process(its count)`` instead of its count gives, after that average, the gradient of the
    mean over the whole batch, as one process holding every sample computes it. Every process must call it (it
    is a collective), also one whose share holds no item."""
    if not is_distributed():
        return count
    return (sum_over_ranks(count.to(torch.float64)) / world_size()).float()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum over processes of the incoming gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        td.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        td.all_reduce(grad)
        return grad


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each named scalar over processes (what a log line of a distributed run shows)."""
    if not is_distributed() or not values:
        return values
    t = sum_over_ranks(torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device))
    return {k: float(v) / world_size() for k, v in zip(values, t.tolist())}


def all_gather_objects(obj) -> list:
    """``obj`` of every process, by rank (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    td.all_gather_object(out, obj)
    return out


def gather_rows(rows: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """The rows each process computed for its share of ``total`` items, put together in item order on every process:
    ``rows[i]`` is item ``index[i]`` (on the CPU). Every item must be computed by exactly one process."""
    out = torch.empty(total, *rows.shape[1:], dtype=rows.dtype)
    seen = torch.zeros(total, dtype=torch.bool)
    for part_rows, part_index in all_gather_objects((rows.cpu(), index.cpu())):
        out[part_index] = part_rows
        seen[part_index] = True
    if not bool(seen.all()):
        raise RuntimeError(f"gather_rows: {int((~seen).sum())} of {total} items were computed by no process")
    return out


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are taken over the whole batch of all processes, on any device.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this is its CPU counterpart (gloo), for ``sync_bn: true`` in CPU
    runs. Each process takes the count n_i, mean μ_i and biased variance σ_i² of its share over (B, H, W); a
    differentiable all-reduce gathers them; the pooled μ = Σ n_i μ_i / N and σ² = Σ n_i (σ_i² + (μ_i − μ)²) / N
    normalise, and the running variance gets the unbiased σ²·N/(N−1), as ``BatchNorm`` does. In one process, or in
    eval mode, it is plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and is_distributed() and world_size() > 1):
            return super().forward(input)
        c, dims = input.shape[1], [0] + list(range(2, input.dim()))
        x = input.float()
        var, mean = torch.var_mean(x, dim=dims, unbiased=False)
        n = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        # every process's (n, mean, var) in its own row; a differentiable sum over processes gathers them
        rows = torch.zeros(world_size(), 2 * c + 1, dtype=x.dtype, device=x.device)
        rows = rows.index_put((torch.tensor([rank()], device=x.device),), torch.cat([n, mean, var])[None])
        rows = _AllReduceSum.apply(rows)
        counts, means, variances = rows[:, :1], rows[:, 1:c + 1], rows[:, c + 1:]
        total = counts.sum()
        mean = (counts * means).sum(0) / total  # Chan et al.: pooled mean and variance, no E[x²] - E[x]² loss
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * total / (total - 1).clamp_min(1), alpha=m)
        shape = [1, c] + [1] * (input.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch-norm layer of ``module`` made to synchronise its statistics across processes: torch's
    ``SyncBatchNorm`` on CUDA, :class:`SyncBatchNormCPU` elsewhere. The state dict keys do not change."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNormCPU):
        out = SyncBatchNormCPU(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
        if module.track_running_stats:
            out.running_mean.copy_(module.running_mean)
            out.running_var.copy_(module.running_var)
            out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
