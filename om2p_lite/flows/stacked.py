"""Many independent networks (one per agent, or per seed) evaluated as ONE batched computation.

Not shared weights: member m only ever sees its own slice of every weight tensor
(W: (M, in, out)), applied with one ``torch.einsum`` per layer instead of a Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from om2p_lite.flows.meanflow import DEFAULT_DR, VelocityFn, du_dr
from om2p_lite.flows.ops import swap_axes


class StackedLinear(nn.Module):
    """y[..., m, :] = x[..., m, :] @ W[m] + b[m]; initialised per member like ``nn.Linear``."""

    def __init__(self, n_members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim) if in_dim > 0 else 0.0
        self.weight = nn.Parameter(torch.empty(n_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., M, in) → (..., M, out), as one batched matmul over members."""
        lead, (M, d_in) = x.shape[:-2], x.shape[-2:]
        xm = swap_axes(x.reshape(-1, M, d_in), 0, 1)  # (M, N, in)
        return swap_axes(self.forward_members(xm), 0, 1).reshape(*lead, M, -1)

    def forward_members(self, xm: torch.Tensor, first: int | None = None) -> torch.Tensor:
        """Member-major x: (M, N, in) → (M, N, out), one batched matmul (``first``: only
        the first M members' weights, for a caller that needs only those; None: all)."""
        return torch.baddbmm(self.bias[:first].unsqueeze(1), xm, self.weight[:first])


class StackedLayerNorm(nn.Module):
    """LayerNorm over the feature axis with a separate affine (γ, β) per member."""

    def __init__(self, n_members: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_members, dim))
        self.bias = nn.Parameter(torch.zeros(n_members, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., M, dim) → same shape."""
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return x * self.weight + self.bias

    def forward_members(self, xm: torch.Tensor, first: int | None = None) -> torch.Tensor:
        """Member-major x: (M, N, dim) → same shape (``first``: as ``StackedLinear``)."""
        xm = nn.functional.layer_norm(xm, xm.shape[-1:], eps=self.eps)
        return xm * self.weight[:first].unsqueeze(1) + self.bias[:first].unsqueeze(1)


class StackedMLP(nn.Module):
    """``n_members`` independent MLPs (as ``networks.mlp``): (B, M, in_dim) → (B, M, out_dim).

    Any number of leading batch dims is allowed; the member axis is the second to last.
    Inside, the input is turned member-major once, (M, N, in), and back once at the end.
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int, hidden: int = 256,
                 depth: int = 3, layer_norm: bool = False,
                 activation: type[nn.Module] = nn.GELU):
        super().__init__()
        if n_members < 1 or in_dim < 0 or out_dim <= 0 or hidden <= 0 or depth < 1:
            raise ValueError(f"StackedMLP needs n_members >= 1, in_dim >= 0, out_dim > 0, "
                             f"hidden > 0, depth >= 1; got {n_members=}, {in_dim=}, "
                             f"{out_dim=}, {hidden=}, {depth=}")
        self.n_members, self.in_dim, self.out_dim = n_members, in_dim, out_dim
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers.append(StackedLinear(n_members, width, hidden))
            if layer_norm:
                layers.append(StackedLayerNorm(n_members, hidden))
            layers.append(activation())
            width = hidden
        layers.append(StackedLinear(n_members, width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., M, in_dim) → (..., M, out_dim)."""
        if x.shape[-2:] != (self.n_members, self.in_dim):
            raise ValueError(f"StackedMLP expects (..., {self.n_members}, {self.in_dim}), "
                             f"got {tuple(x.shape)}")
        lead, M = x.shape[:-2], self.n_members
        xm = swap_axes(x.reshape(-1, M, self.in_dim), 0, 1)  # (M, N, in)
        return swap_axes(self.forward_members(xm), 0, 1).reshape(*lead, M, self.out_dim)

    def forward_members(self, xm: torch.Tensor, first: int | None = None) -> torch.Tensor:
        """Member-major x: (M, N, in_dim) → (M, N, out_dim); with ``first``, x holds only
        the first ``first`` members and only their networks run."""
        for layer in self.net:
            xm = layer.forward_members(xm, first) if hasattr(layer, "forward_members") \
                else layer(xm)
        return xm

    @classmethod
    def from_mlps(cls, mlps: Sequence[nn.Sequential]) -> StackedMLP:
        """Stack equally shaped ``networks.mlp`` modules (weights copied) into one network."""
        linears = [[m for m in seq if isinstance(m, nn.Linear)] for seq in mlps]
        first = linears[0]
        norms = any(isinstance(m, nn.LayerNorm) for m in mlps[0])
        act = next(type(m) for m in mlps[0] if not isinstance(m, nn.Linear | nn.LayerNorm))
        out = cls(len(mlps), first[0].in_features, first[-1].out_features,
                  first[0].out_features, len(first) - 1, norms, act)
        with torch.no_grad():
            stacked_lin = [m for m in out.net if isinstance(m, StackedLinear)]
            for k, layer in enumerate(stacked_lin):
                layer.weight.copy_(torch.stack([lin[k].weight.T for lin in linears]))
                layer.bias.copy_(torch.stack([lin[k].bias for lin in linears]))
            if norms:
                lns = [[m for m in seq if isinstance(m, nn.LayerNorm)] for seq in mlps]
                stacked_ln = [m for m in out.net if isinstance(m, StackedLayerNorm)]
                for k, layer in enumerate(stacked_ln):
                    layer.weight.copy_(torch.stack([ln[k].weight for ln in lns]))
                    layer.bias.copy_(torch.stack([ln[k].bias for ln in lns]))
        return out


def _broadcast_time(tau: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Time (B, 1) or (B, M, 1) → (B, M, 1), so one-member samplers can drive stacked nets."""
    if tau.dim() == like.dim() - 1:
        tau = tau.unsqueeze(-2)
    return tau.expand(*like.shape[:-1], 1)


class StackedVelocityNet(nn.Module):
    """u_θ(o, x, r, t) for M members at once: o (B, M, obs), x (B, M, act) → (B, M, act).

    The stacked twin of ``networks.VelocityNet``; r, t may be (B, M, 1) or (B, 1) (shared
    across members), so ``sampling.sample_meanflow``/``sample_flow`` work with ``eps`` of
    shape (B, M, act) and ``meanflow.du_dr`` works with every estimator but ``jacobian``
    (use ``stacked_du_dr`` for that one).
    """

    def __init__(self, n_members: int, obs_dim: int, act_dim: int, hidden: int = 256,
                 depth: int = 3, layer_norm: bool = False):
        super().__init__()
        self.n_members, self.obs_dim, self.act_dim = n_members, obs_dim, act_dim
        self.net = StackedMLP(n_members, obs_dim + act_dim + 2, act_dim, hidden, depth,
                              layer_norm)

    def forward(self, o: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """o: (B, M, obs), x: (B, M, act), r, t: (B, M, 1) or (B, 1) → u: (B, M, act)."""
        r, t = _broadcast_time(r, x), _broadcast_time(t, x)
        return self.net(torch.cat([o, x, r, t], dim=-1))


def stacked_du_dr(net: VelocityFn, o: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor,
                  t: torch.Tensor, v: torch.Tensor, estimator: str = "jvp",
                  dr: float | torch.Tensor = DEFAULT_DR, fd_mask: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``meanflow.du_dr`` for stacked inputs (B, M, ·), adding the per-sample ``jacobian``.

    The jacobian of member m's output w.r.t. every member's input is (M, d, M, d); members
    are independent, so du/dr is its diagonal blocks: J[m, :, m, :] v[m] + ∂_r u[m].
    """
    if estimator != "jacobian":
        return du_dr(net, o, x_r, r, t, v, estimator, dr, fd_mask)
    u = net(o, x_r, r, t)

    def single(o1: torch.Tensor, x1: torch.Tensor, r1: torch.Tensor,
               t1: torch.Tensor) -> torch.Tensor:
        return net(o1[None], x1[None], r1[None], t1[None])[0]

    jac_x, jac_r = torch.func.vmap(torch.func.jacrev(single, argnums=(1, 2)))(o, x_r, r, t)
    # jac_x: (B, M, d, M, d), jac_r: (B, M, d, M, 1)
    dudr = torch.einsum("bmimj,bmj->bmi", jac_x, v) + \
        torch.einsum("bmim->bmi", jac_r[..., 0])  # (eq-total-derivative)
    return u, dudr.detach()


class FlatMembers(nn.Module):
    """View a stacked velocity net as one net on flattened members: (B, M·k) in and out.

    Lets the one-member samplers (``sample_meanflow``, ``sample_flow``,
    ``diffusion.sample_diffusion``) drive all members at once, their times being (B, 1).
    """

    def __init__(self, net: nn.Module, n_members: int):
        super().__init__()
        self.inner, self.n_members = net, n_members

    def forward(self, o: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """o: (B, M·obs), x: (B, M·act), r, t: (B, 1) → (B, M·act)."""
        M = self.n_members
        u = self.inner(o.unflatten(-1, (M, -1)), x.unflatten(-1, (M, -1)), r, t)
        return u.flatten(-2)


def sample_stacked(sampler: Callable[..., torch.Tensor], net: nn.Module, o: torch.Tensor,
                   eps: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """Run a one-member ``sampler(net, o, act_dim, ..., eps=...)`` on stacked o (B, M, obs)
    and ε (B, M, act) through ``FlatMembers``; returns actions (B, M, act)."""
    M = o.shape[-2]
    flat = FlatMembers(net, M)
    a = sampler(flat, o.flatten(-2), eps.shape[-1] * M, eps=eps.flatten(-2), **kwargs)
    return a.unflatten(-1, (M, -1))
