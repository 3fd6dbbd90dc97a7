"""Fit and sample the four toy policies of chapters 1-3: MSE, Gaussian, flow, mean flow.

Not the multi-agent trainer: one network, one fixed data set, no critic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from om2p_lite.book.metrics import sliced_wasserstein
from om2p_lite.book.toys import no_obs
from om2p_lite.flows.flow import flow_matching_loss
from om2p_lite.flows.meanflow import DEFAULT_DR, check_meanflow_settings, meanflow_loss
from om2p_lite.flows.networks import VelocityNet, mlp
from om2p_lite.flows.sampling import sample_flow, sample_meanflow
from om2p_lite.flows.timesteps import TimeSampler, sample_r_t
from om2p_lite.runtime.checks import SettingError, check_range
from om2p_lite.runtime.seeding import seed_everything

TOY_METHODS = ("mse", "gaussian", "flow", "meanflow")


class GaussianPolicy(nn.Module):
    """π(a|o) = N(μ(o), diag σ(o)²); with ``fixed_std`` it is the MSE regressor."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, depth: int):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(max(obs_dim, 1), 2 * act_dim, hidden, depth)

    def forward(self, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std), each (B, act_dim); an empty o (B, 0) reads as a constant input."""
        if o.shape[-1] == 0:
            o = torch.ones(*o.shape[:-1], 1, device=o.device, dtype=o.dtype)
        mean, log_std = self.net(o).chunk(2, dim=-1)
        return mean, log_std.clamp(-5, 2)


@dataclass
class ToyFit:
    """A fitted toy policy with its training log."""

    method: str
    net: nn.Module
    act_dim: int
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def sample(self, n: int, steps: int = 1, eps: torch.Tensor | None = None) -> torch.Tensor:
        """n actions (n, act_dim) from the policy; ``steps`` matters for flow and mean flow."""
        device = next(self.net.parameters()).device
        dtype = next(self.net.parameters()).dtype
        o = no_obs(n, device).to(dtype)
        if eps is not None:
            eps = eps.to(device=device, dtype=dtype)
        with torch.no_grad():
            if self.method == "flow":
                return sample_flow(self.net, o, self.act_dim, steps, eps)
            if self.method == "meanflow":
                return sample_meanflow(self.net, o, self.act_dim, steps, eps)
            mean, log_std = self.net(o)
            if self.method == "mse":
                return mean.clamp(-1, 1)
            z = torch.randn_like(mean) if eps is None else eps
            return (mean + log_std.exp() * z).clamp(-1, 1)


def fit_toy(method: str, data: torch.Tensor, steps: int = 2000, batch: int = 256,
            hidden: int = 128, depth: int = 3, lr: float = 1e-3, estimator: str = "jvp",
            dr: float = DEFAULT_DR, xi: TimeSampler | Sequence[float] | str = "uniform",
            ratio: float = 0.25, pairing: str = "sorted", seed: int = 0,
            device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
            eval_every: int = 0,
            eval_steps: int = 1, eval_samples: int = 1000, progress: bool = False) -> ToyFit:
    """Train one toy policy on ``data`` (N, act_dim) and return it with its losses.

    ``flow`` draws r from ξ and regresses the instantaneous velocity; ``meanflow`` draws
    (r, t) pairs from ξ (``pairing``, ``ratio``: see ``sample_r_t``) and uses the chosen du/dr
    estimator.
    With ``eval_every`` > 0 it logs the sliced Wasserstein distance of ``eval_steps``-step
    samples to the data at step 0 and every ``eval_every`` steps. The fit runs on one CPU
    thread (see ``_one_thread``). ``progress`` shows a tqdm bar over the steps (a widget in
    Jupyter and Colab) that disappears when the fit is done; ``TQDM_DISABLE=1`` in the
    environment turns it off (the Makefile's tests and book builds).
    """
    sampler = check_toy_settings(method, steps, batch, hidden, depth, lr, estimator, dr, xi,
                                 ratio, pairing, dtype, eval_every, eval_steps, eval_samples)
    if data.ndim != 2 or len(data) < 2:
        raise ValueError(f"data must be (N, act_dim) with N >= 2, got {tuple(data.shape)}")
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    eval_gen = torch.Generator().manual_seed(seed + 1)  # evaluation never shifts training draws
    act_dim = data.shape[1]
    data = data.to(device=device, dtype=dtype)
    if method in ("flow", "meanflow"):
        net: nn.Module = VelocityNet(0, act_dim, hidden, depth)
    else:
        net = GaussianPolicy(0, act_dim, hidden, depth)
    net = net.to(device=device, dtype=dtype)
    fit = ToyFit(method, net, act_dim)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    def evaluate(step: int) -> None:
        eps = torch.randn(eval_samples, act_dim, generator=eval_gen)
        samples = fit.sample(eval_samples, eval_steps, eps)
        fit.evals.append({"step": step, "sw": sliced_wasserstein(
            samples, data[:eval_samples], generator=eval_gen)})

    with _one_thread():
        start = time.perf_counter()
        if eval_every:
            evaluate(0)
        for step in _steps(steps, progress, f"{method} toy"):
            idx = torch.randint(len(data), (batch,), generator=gen).to(device)
            a = data[idx]  # (B, act_dim)
            o = no_obs(batch, device).to(dtype)
            if method == "meanflow":
                r, t = sample_r_t(batch, sampler, ratio, gen, device, pairing)
                loss, _ = meanflow_loss(net, o, a, r.to(dtype), t.to(dtype), estimator, dr)
            elif method == "flow":
                r = sampler.sample(batch, gen, device).to(dtype)
                loss = flow_matching_loss(net, o, a, r)
            else:
                mean, log_std = net(o)
                if method == "mse":
                    loss = ((mean - a) ** 2).sum(-1).mean()
                else:  # Gaussian negative log-likelihood (up to a constant)
                    loss = (((a - mean) / log_std.exp()) ** 2 / 2 + log_std).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            fit.losses.append(float(loss.detach()))
            if eval_every and (step % eval_every == 0 or step == steps):
                evaluate(step)
        fit.seconds = time.perf_counter() - start
    return fit


def check_toy_settings(method: str, steps: int, batch: int, hidden: int, depth: int, lr: float,
                       estimator: str, dr: float, xi: TimeSampler | Sequence[float] | str,
                       ratio: float, pairing: str, dtype: torch.dtype, eval_every: int,
                       eval_steps: int, eval_samples: int) -> TimeSampler:
    """``fit_toy``'s settings by the rules training uses (``check_meanflow_settings`` for the
    mean-flow ones, for every method, as ``TrainConfig`` does); returns the time sampler."""
    if method not in TOY_METHODS:
        raise SettingError("method", f"unknown toy method {method!r}",
                           f"use one of {', '.join(TOY_METHODS)}")
    sampler = check_meanflow_settings(estimator, dr, xi, ratio, pairing, dtype)
    for name, value, least in (("steps", steps, 1), ("batch", batch, 1), ("hidden", hidden, 1),
                               ("depth", depth, 1), ("eval_every", eval_every, 0),
                               ("eval_steps", eval_steps, 1), ("eval_samples", eval_samples, 1)):
        check_range(name, value, least, integer=True, fix=f"use an integer >= {least}")
    check_range("lr", lr, 0.0, low_open=True, fix="use e.g. lr = 1e-3 (Adam)")
    return sampler


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``, restoring the previous count.

    Toy networks are too small to gain from a second CPU thread, and on a busy machine
    torch's waiting threads cost far more: a 600-step smoke fit took 66-286 s with 2 threads
    and 6.5-9 s with 1 on a 2-core machine at load 8 (same losses, bit for bit).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _steps(steps: int, progress: bool, desc: str) -> Iterable[int]:
    """``range(1, steps + 1)``, wrapped in a transient tqdm bar when ``progress``."""
    if not progress:
        return range(1, steps + 1)
    from tqdm.auto import tqdm

    return tqdm(range(1, steps + 1), desc=desc, unit="step", leave=False, mininterval=0.5)
