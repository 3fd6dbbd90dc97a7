"""Tensor helpers whose bits do not depend on how many agents or members are stacked.

Not networks nor losses: the leaf that ``flow``, ``meanflow``, ``stacked`` and the critics
share (a transpose with a contiguous gradient, and a per-agent batch mean).
"""

from __future__ import annotations

from typing import Any

import torch


class _SwapAxes(torch.autograd.Function):
    """``x.transpose(d0, d1)`` made contiguous, whose gradient is made contiguous the same way.

    Written in the functorch style (``setup_context``, ``jvp``, a generated vmap rule) so
    that ``torch.func.jvp`` / ``vmap`` / ``jacrev`` (the exact du/dr estimators) see through it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, d0: int, d1: int) -> torch.Tensor:
        return x.transpose(d0, d1).contiguous()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.dims = inputs[1:]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad.transpose(*ctx.dims).contiguous(), None, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor, *_: Any) -> torch.Tensor:
        return x_t.transpose(*ctx.dims).contiguous()


def swap_axes(x: torch.Tensor, d0: int, d1: int) -> torch.Tensor:
    """Transpose two axes into a contiguous tensor, with a contiguous gradient too.

    Inside a stacked network every tensor is member-major, (M, N, ·): each member's rows
    are one contiguous block, in the forward and in the backward pass. A gradient that
    arrived as a strided view would make the bias-gradient sums take a path that depends
    on how many members are stacked; this way member m's arithmetic is bit for bit that
    of a network of its own (what a population of runs relies on, ``rl.population``).
    Without a gradient to shape, a plain contiguous transpose does (no autograd node).
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x.transpose(d0, d1).contiguous()
    return _SwapAxes.apply(x, d0, d1)


def batch_mean(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Mean over the batch axis ``dim`` of a per-agent tensor, e.g. (B, A) → (A,).

    Computed row by row on a contiguous copy (batch axis last): a column-wise mean of a
    (B, A) tensor takes a summation order that depends on A, so a population's member
    would differ in the last bit from its own run; a row's sum does not depend on how many
    rows there are.
    """
    return x.movedim(dim, -1).contiguous().mean(-1)
