"""The mean-flow target u_tgt = v + (t - r) du/dr, its four du/dr estimators, the loss, and
the rules its settings obey (estimator, Δr, and the bundle ``check_meanflow_settings``).

Not the time sampler (``timesteps``) nor action sampling (``sampling``).
Taught in chapter 2 (book/02_mean_flow).
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from om2p_lite.flows.flow import conditional_velocity, interpolate
from om2p_lite.flows.ops import batch_mean
from om2p_lite.flows.timesteps import (
    TimeSampler,
    check_pairing,
    check_ratio,
    make_time_sampler,
)
from om2p_lite.runtime.checks import SettingError

ESTIMATORS = ("jvp", "fd", "zero", "jacobian")
COMPUTE_DTYPE = torch.float32  # the dtype agents and toys train in (Δr is checked against it)
DEFAULT_DR = 1e-3  # the fd estimator's Δr, written once: TrainConfig, fit_toy, `toy --dr` read it
DR_MAX = 1.0  # the longest Δr: the path from noise (r = 0) to the action (r = 1) has length 1
DR_FIX = f"use a step such as dr = {DEFAULT_DR:g} (float32's optimum is near sqrt(eps) ~ " \
    "3e-4; below ~1e-6 it is mostly rounding noise)"
VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class PrecisionWarning(UserWarning):
    """A setting that runs, but that the compute dtype cannot resolve (e.g. a tiny Δr)."""


def check_dr(dr: float, dtype: torch.dtype = COMPUTE_DTYPE) -> float:
    """Δr as a float, or a ``SettingError`` on 'dr': a number in (0, ``DR_MAX``] (a longer
    step leaves the path for every r) that ``dtype`` does not round to 0 (0/0 in eq-fd)."""
    if isinstance(dr, bool) or not isinstance(dr, numbers.Real) or not 0 < dr <= DR_MAX:
        raise SettingError("dr", f"Δr must be > 0 and <= {DR_MAX:g} (the length of the path "
                           f"from noise to action), got {dr!r}", DR_FIX)
    if _rounds_to_zero(float(dr), dtype):
        raise SettingError("dr", f"Δr = {dr:g} is 0 in {dtype} (the dtype the networks compute "
                           f"in), so the finite difference would be 0/0",
                           f"use Δr >= 1e-7, e.g. {DEFAULT_DR:g} (float32's optimum is near "
                           f"sqrt(eps) ~ 3e-4)")
    return float(dr)


@functools.lru_cache(maxsize=64)
def _rounds_to_zero(dr: float, dtype: torch.dtype) -> bool:
    """Whether ``dtype`` stores ``dr`` as 0 (cached: ``du_dr`` asks on every call)."""
    return float(torch.tensor(dr, dtype=dtype)) == 0


def check_estimator(estimator: str, dr: float | torch.Tensor | None = None,
                    dtype: torch.dtype = COMPUTE_DTYPE) -> None:
    """Raise a ``SettingError`` for an unknown estimator or, with ``fd``, a bad Δr.

    A tensor ``dr`` (one Δr per agent of a population) is not read: whoever built it checked
    each entry once (``OM2PAgent.set_members``), and reading it would sync the device on
    every training step.
    """
    if estimator not in ESTIMATORS:
        raise SettingError("estimator", f"unknown du/dr estimator {estimator!r}",
                           f"use one of {', '.join(ESTIMATORS)}")
    if estimator == "fd" and not isinstance(dr, torch.Tensor):
        check_dr(dr, dtype)  # type: ignore[arg-type]


def unresolved_share(dr: float, dtype: torch.dtype = COMPUTE_DTYPE, n: int = 4096,
                     ) -> tuple[float, float]:
    """For r on an even grid of [0, 1): the share where Δr is below ``dtype``'s spacing at r
    (so r + Δr rounds to r or jumps a whole spacing), and the share where r + Δr == r."""
    r = (torch.arange(n, dtype=torch.float64) + 0.5).div(n).to(dtype)
    spacing = torch.nextafter(r, torch.ones_like(r)) - r
    below = (torch.tensor(dr, dtype=torch.float64) < spacing.double()).double().mean()
    equal = (r + torch.tensor(dr, dtype=dtype) == r).double().mean()
    return float(below), float(equal)


def warn_unresolved_dr(dr: float, dtype: torch.dtype = COMPUTE_DTYPE,
                       stacklevel: int = 3) -> bool:
    """Warn (``PrecisionWarning``) if Δr is below ``dtype``'s resolution for at least half
    of r in [0, 1] (float32: Δr < 2^-24 ≈ 6e-8); return whether it warned."""
    below, equal = unresolved_share(dr, dtype)
    if below < 0.5:
        return False
    warnings.warn(f"field 'dr': Δr = {dr:g} is below {dtype}'s spacing for {below:.0%} of r "
                  f"in [0, 1] (r + Δr == r for {equal:.0%}), so the fd estimate of du/dr there "
                  f"is 0 or rounding noise. Kept as asked (a Δr sweep needs it); to train, use "
                  f"Δr ~ {DEFAULT_DR:g} (float32's optimum is near sqrt(eps) ~ 3e-4)",
                  PrecisionWarning,
                  stacklevel=stacklevel)
    return True


def check_meanflow_settings(estimator: str, dr: float, xi: TimeSampler | Sequence[float] | str,
                            ratio: float, pairing: str | None = None,
                            dtype: torch.dtype = COMPUTE_DTYPE, warn: bool = True,
                            ) -> TimeSampler:
    """The rules of the mean-flow settings, written once for ``TrainConfig.validate``,
    ``fit_toy`` and the ``toy`` command: a known estimator; a Δr that ``check_dr`` accepts
    (whatever the estimator, so a bad value never waits for a switch to fd); a ξ with a
    finite, normalisable density; ratio in [0, 1]; a known pairing (``None``: not set).

    Returns the time sampler; a ``SettingError`` names the first bad field. With ``fd`` and
    ``warn``, a Δr that ``dtype`` cannot resolve for most r gets a ``PrecisionWarning``
    (kept, not refused: chapter 6 sweeps such values).
    """
    check_estimator(estimator, dr, dtype)
    if estimator != "fd":
        check_dr(dr, dtype)  # unused by this estimator, but a bad value is still refused
    if estimator == "fd" and warn:
        # up the stack: warn_unresolved_dr, this, TrainConfig._check_fields or
        # check_toy_settings, validate or fit_toy, then their caller (where it points)
        warn_unresolved_dr(dr, dtype, stacklevel=5)
    sampler = make_time_sampler(xi)
    check_ratio(ratio)
    if pairing is not None:
        check_pairing(pairing)
    return sampler


def du_dr(net: VelocityFn, o: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor,
          t: torch.Tensor, v: torch.Tensor, estimator: str = "jvp",
          dr: float | torch.Tensor = DEFAULT_DR, fd_mask: torch.Tensor | None = None,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (u_θ(o, x_r, r, t), du/dr) with du/dr = ∂_x u · v + ∂_r u   (eq-total-derivative).

    ``jvp``: exact, one forward-mode pass with tangents (v, 1, 0);
    ``fd``: [u(x_r + Δr v, r + Δr) - u(x_r, r)] / Δr, forward passes only (eq-fd);
    ``zero``: du/dr = 0 (flow matching on (r, t) pairs);
    ``jacobian``: exact, per-sample Jacobians (memory-hungry reference).
    u keeps its graph for the loss; du/dr is detached (it only enters the stop-grad target).
    For ``fd``, ``dr`` may be a tensor broadcasting against u (a Δr per agent) and
    ``fd_mask`` a bool tensor: where it is False the estimate is exactly 0 (the members of a
    population trained with the ``zero`` estimator).
    """
    check_estimator(estimator, dr, x_r.dtype)  # a python Δr: cheap; a tensor: checked once
    if estimator == "jvp":
        def fn(x: torch.Tensor, r_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            return net(o, x, r_, t_)

        u, dudr = torch.func.jvp(fn, (x_r, r, t), (v, torch.ones_like(r), torch.zeros_like(t)))
        return u, dudr.detach()
    u = net(o, x_r, r, t)
    if estimator == "zero":
        return u, torch.zeros_like(u)
    if estimator == "fd":
        with torch.no_grad():
            u_shift = net(o, x_r + dr * v, r + dr, t)
            dudr = (u_shift - u.detach()) / dr  # (eq-fd)
            if fd_mask is not None:
                dudr = torch.where(fd_mask, dudr, 0.0)
            return u, dudr
    # jacobian: J_x (B, d, d) and J_r (B, d, 1), one sample at a time under vmap
    def single(o1: torch.Tensor, x1: torch.Tensor, r1: torch.Tensor,
               t1: torch.Tensor) -> torch.Tensor:
        return net(o1, x1, r1, t1)

    jac_x, jac_r = torch.func.vmap(torch.func.jacrev(single, argnums=(1, 2)))(o, x_r, r, t)
    dudr = torch.einsum("bij,bj->bi", jac_x, v) + jac_r[..., 0]  # (eq-total-derivative)
    return u, dudr.detach()


def meanflow_target(v: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                    dudr: torch.Tensor) -> torch.Tensor:
    """u_tgt = v + (t - r) du/dr, the MeanFlow identity   (eq-mf-target)."""
    return (v + (t - r) * dudr).detach()  # (eq-mf-target)


def adaptive_weight(sq_err: torch.Tensor, p: float = 0.0, c: float = 1e-3) -> torch.Tensor:
    """w = 1 / (||Δ||² + c)^p, detached; p = 0 gives plain L2   (eq-adaptive-weight)."""
    if p < 0 or c <= 0:
        raise ValueError(f"adaptive weight needs p >= 0 and c > 0, got p={p}, c={c}")
    if p == 0:
        return torch.ones_like(sq_err)
    return 1.0 / (sq_err.detach() + c) ** p  # (eq-adaptive-weight)


def meanflow_loss(net: nn.Module | VelocityFn, o: torch.Tensor, a: torch.Tensor,
                  r: torch.Tensor, t: torch.Tensor, estimator: str = "jvp",
                  dr: float | torch.Tensor = DEFAULT_DR, p: float = 0.0, c: float = 1e-3,
                  eps: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                  fd_mask: torch.Tensor | None = None, reduce: str = "mean",
                  du_dr_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
                  logs: bool = True, action_reduce: str = "sum",
                  ) -> tuple[torch.Tensor, dict[str, float] | dict[str, torch.Tensor]]:
    """L_MF = E w ||u_θ(o, x_r, r, t) - sg(u_tgt)||²   (eq-mf-loss); returns (loss, logs).

    ``action_reduce='mean'`` averages the squared error over the (real) action dims instead
    of summing it, as the public OM2P code does (``agents.om2p_official``).

    The multi-agent form (what OM2P trains with): a (B, A, d) with ``mask`` (A, d) marking
    each agent's real action dims (padding gets no velocity and no error), ``reduce='agents'``
    for the (A,) per-agent losses E_B w ||·||² and per-agent log tensors (no host sync),
    ``dr``/``fd_mask`` per agent (see ``du_dr``), and ``du_dr_fn`` for stacked networks
    (``stacked.stacked_du_dr``). ``reduce='mean'`` gives the scalar and float logs;
    ``logs=False`` skips the logs (the steps a trainer does not log).
    """
    eps = torch.randn_like(a) if eps is None else eps
    x_r = interpolate(eps, a, r)  # (B, act_dim)
    v = conditional_velocity(eps, a)  # (B, act_dim)
    if mask is not None:
        v = v * mask  # padding dims stay at 0
    u, dudr = (du_dr_fn or du_dr)(net, o, x_r, r, t, v, estimator, dr, fd_mask)
    u_tgt = meanflow_target(v, r, t, dudr)  # (eq-mf-target)
    err = u - u_tgt if mask is None else (u - u_tgt) * mask
    sq_err = (err ** 2).sum(-1)  # (B,) or (B, A)
    if action_reduce == "mean":  # each agent's real dims: mask (A, d) sums to them
        sq_err = sq_err / (a.shape[-1] if mask is None else mask.sum(-1))
    elif action_reduce != "sum":
        raise ValueError(f"unknown action reduction {action_reduce!r}: use 'sum' or 'mean'")
    if reduce == "agents":
        loss = batch_mean(adaptive_weight(sq_err, p, c) * sq_err)  # (A,)   (eq-mf-loss)
        if not logs:
            return loss, {}
        with torch.no_grad():
            zero = (dudr if mask is None else dudr * mask) == 0
            return loss, {"mf_loss": batch_mean(sq_err),
                          "du_dr_norm": batch_mean(dudr.norm(dim=-1)),
                          "du_dr_zero_frac": batch_mean(zero.all(-1).float())}
    if reduce != "mean":
        raise ValueError(f"unknown reduction {reduce!r}: use 'mean' or 'agents'")
    loss = (adaptive_weight(sq_err, p, c) * sq_err).mean()  # (eq-mf-loss)
    return loss, {"mf_loss": float(sq_err.mean().detach()),
                  "du_dr_norm": float(dudr.norm(dim=-1).mean()),
                  "du_dr_zero_frac": float((dudr == 0).all(-1).float().mean())}


def fd_error_sweep(net: nn.Module, o: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor,
                   t: torch.Tensor, v: torch.Tensor, drs: list[float],
                   dtype: torch.dtype = torch.float32) -> list[dict[str, float]]:
    """For each Δr: relative error of the ``fd`` estimate (run in ``dtype``) against the exact
    float64 ``jvp``, and the fraction of samples whose estimate is exactly zero.

    This is the evidence for how small Δr may go: error ∝ Δr until rounding (∝ eps/Δr) wins.
    """
    import copy

    ref_net = copy.deepcopy(net).to(torch.float64)
    args64 = [z.to(torch.float64) for z in (o, x_r, r, t, v)]
    _, exact = du_dr(ref_net, *args64[:4], args64[4], "jvp")
    low_net = copy.deepcopy(net).to(dtype)
    low = [z.to(dtype) for z in (o, x_r, r, t, v)]
    scale = exact.norm(dim=-1).mean()
    rows = []
    for dr in drs:
        _, fd = du_dr(low_net, *low[:4], low[4], "fd", dr)
        err = (fd.to(torch.float64) - exact).norm(dim=-1).mean() / scale
        rows.append({"dr": float(dr), "rel_error": float(err),
                     "zero_fraction": float((fd == 0).all(dim=-1).float().mean())})
    return rows
