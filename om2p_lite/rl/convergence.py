"""Has the critic trained? Q of the data's actions against the data's own discounted return.

Not a training signal and not evaluation in the environment: a probe of fixed transitions,
read at every evaluation, so a protocol's length is judged by what it trains (the critic),
not by behaviour cloning's curve.

Time limits. The datasets mark MPE's 25-step and HalfCheetah's 1000-step episode ends as
``timeouts``, and the TD target bootstraps through them (only ``terminals`` stop it), so the
critic's fixed point is an infinite-horizon value. The Monte-Carlo target therefore adds a
tail at a time limit: the episode's mean reward over its last ``tail_steps`` steps, continued
for ever,   G_t = Σ_{k=t}^{T-1} γ^{k-t} r_k + γ^{T-t} r̄_tail / (1 - γ)   (eq-mc-target);
a true terminal adds nothing. ``tail=False`` gives the plain truncated return-to-go.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from om2p_lite.flows.stacked import StackedMLP

PROBE_SIZE = 4096  # transitions in the probe (all of a smaller dataset)
PROBE_SEED = 0  # the probe's rows and policy noise: the same for every run of a dataset
TAIL_STEPS = 5  # steps whose mean reward continues past a time limit


def mc_returns(ds: Any, gamma: float, tail: bool = True,
               tail_steps: int = TAIL_STEPS) -> np.ndarray:
    """Discounted return-to-go of every transition and agent, (N, A) float64 (eq-mc-target).

    Episodes are the dataset's ``episode_bounds``; one that ends in a timeout (or with the
    data, unfinished) gets the stationary tail when ``tail`` is set.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma: must lie in [0, 1), got {gamma}. Fix: use e.g. 0.99")
    rewards = np.asarray(ds.rewards, dtype=np.float64)  # (N, A)
    out = np.empty_like(rewards)
    for start, stop in ds.episode_bounds():
        r = rewards[start:stop]  # (T, A)
        g = (r[-tail_steps:].mean(0) / (1.0 - gamma)
             if tail and not bool(ds.terminals[stop - 1]) else np.zeros(r.shape[1]))
        for k in range(stop - start - 1, -1, -1):
            g = r[k] + gamma * g  # (eq-mc-target)
            out[start + k] = g
    return out


def probe_rows(n: int, size: int = PROBE_SIZE, seed: int = PROBE_SEED) -> np.ndarray:
    """The sorted rows of an n-row data set that the critic probe reads (all when n <= size)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))


class CriticProbe:
    """Fixed probe transitions of one dataset, laid out for a population of ``n_members``.

    ``measure(agent)`` returns, per member (mean over its agents and the probe rows):
    ``q_probe`` = Q(o, a_data), ``q_pi_probe`` = Q(o, a_π) (the overestimation gap is their
    difference), ``mc_probe``, the Monte-Carlo target of the same rows (eq-mc-target), and
    ``q_err_probe`` = ‖Q(o, a_data) − G‖ / ‖G‖ over rows and agents (eq-q-rel-err): 0 at
    the fixed point, 1 for a critic that says 0. Unlike the ratio of means it still reads
    where rewards of both signs leave the mean target near 0. ``mc_rms_probe`` = ‖G‖, the
    scale against which a change of Q is judged.
    """

    def __init__(self, ds: Any, gamma: float, n_members: int, device: torch.device | str,
                 size: int = PROBE_SIZE, seed: int = PROBE_SEED):
        rows = probe_rows(len(ds), size, seed)
        P = n_members
        self.seed, self.n_members = seed, P
        self.obs = torch.as_tensor(np.tile(ds.obs[rows], (1, P, 1)), dtype=torch.float32,
                                   device=device)  # (B, P·A, D)
        self.actions = torch.as_tensor(np.tile(ds.actions[rows], (1, P, 1)),
                                       dtype=torch.float32, device=device)  # (B, P·A, d)
        g = mc_returns(ds, gamma)[rows]  # (B, A)
        self.mc = float(g.mean())
        self.g = torch.as_tensor(np.tile(g, (1, P)), dtype=torch.float32,
                                 device=device)  # (B, P·A)
        self.g_norm = float(np.sqrt((g ** 2).mean()))

    @torch.no_grad()
    def measure(self, agent: Any) -> list[dict[str, float]]:
        """Per member: q_probe, q_pi_probe, mc_probe (empty dicts for an agent with no critic)."""
        if not getattr(agent, "uses_critic", False):
            return [{} for _ in range(self.n_members)]
        P = self.n_members
        # every member the same noise, whatever its place in the population; training's
        # generators are untouched
        gens = [torch.Generator().manual_seed(self.seed) for _ in range(P)]
        a_pi = agent.act(self.obs, gens)  # (B, P·A, d)
        q_data = agent.critic(self.obs, self.actions).mean(0)  # (B, P·A)
        q_pi = agent.critic(self.obs, a_pi).mean(0)  # (B, P·A)
        data = q_data.mean(0).view(P, -1).mean(1).tolist()
        pi = q_pi.mean(0).view(P, -1).mean(1).tolist()
        sq = ((q_data - self.g) ** 2).mean(0).view(P, -1).mean(1)  # (P,)
        err = (sq.sqrt() / self.g_norm if self.g_norm else sq * float("nan")).tolist()
        return [{"q_probe": d, "q_pi_probe": p, "mc_probe": self.mc,  # (eq-q-rel-err)
                 "q_err_probe": e, "mc_rms_probe": self.g_norm}
                for d, p, e in zip(data, pi, err, strict=True)]


def mc_floor(ds: Any, gamma: float, steps: int = 3000, hidden: int = 64, depth: int = 2,
             batch_size: int = 256, lr: float = 1e-3, size: int = PROBE_SIZE,
             seed: int = PROBE_SEED) -> float:
    """The relative error (eq-q-rel-err) on the probe's rows of a regression of G on (o, a)
    fitted to the other rows: how close a critic of this size can come to the Monte-Carlo
    target, whose per-row chance (a sparse collision, the policy's noise) no function of
    (o, a) predicts. A diagnostic beside the probe, not a rule: a critic at e = 0.9 on data
    whose floor is 0.85 has trained; one at 0.9 over a floor of 0.2 has not.
    """
    n = len(ds)
    probe = probe_rows(n, size, seed)  # the probe's own rows
    train = np.setdiff1d(np.arange(n), probe)
    if len(train) == 0:
        raise ValueError(f"mc_floor: the data set's {n} rows are all probe rows. Fix: use a "
                         f"data set larger than {size} transitions, or a smaller size")
    g = mc_returns(ds, gamma)  # (N, A)
    x = torch.as_tensor(np.concatenate([ds.obs, ds.actions], -1), dtype=torch.float32)
    mu, sd = g[train].mean(0), g[train].std(0) + 1e-8  # (A,): fit standardised targets
    y = torch.as_tensor((g - mu) / sd, dtype=torch.float32)  # (N, A)
    with torch.random.fork_rng():  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        net = StackedMLP(x.shape[1], x.shape[2], 1, hidden, depth, layer_norm=True)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        rows = torch.as_tensor(train)
        for _ in range(steps):
            b = rows[torch.randint(len(rows), (batch_size,))]
            loss = ((net(x[b]).squeeze(-1) - y[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = net(x[probe]).squeeze(-1).double().numpy() * sd + mu  # (B, A)
    return float(np.sqrt(((pred - g[probe]) ** 2).mean() / (g[probe] ** 2).mean()))


def convergence(q: float, mc: float) -> float:
    """How far the critic came: Q(o, a_data) / G, 1 at the fixed point (NaN if G = 0)."""
    return q / mc if mc else float("nan")
