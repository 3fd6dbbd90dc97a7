"""OM2P: a one-step mean-flow policy per agent, trained with L = L_MF + η · L_Q.

Paper: OM2P (Li et al., 2025, arXiv:2508.06269); public code: github lizr16/OM2P (JAX,
agents/fql_meanfield.py); the mean flow: MeanFlow (Geng et al., 2025, arXiv:2505.13447).

Not the mean-flow maths itself (``meanflow``, ``timesteps``): this class only wires them in;
its generative loss is ``meanflow.meanflow_loss``, the function chapter 2 teaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from om2p_lite.flows.meanflow import VelocityFn, check_estimator, meanflow_loss
from om2p_lite.flows.sampling import sample_meanflow
from om2p_lite.flows.stacked import sample_stacked, stacked_du_dr
from om2p_lite.flows.timesteps import make_time_sampler, sample_r_t
from om2p_lite.rl.agents.base import GenerativeQAgent, Logs


class OM2PAgent(GenerativeQAgent):
    """u_θ(o_i, x, r, t) per agent; a = clip(ε + u_θ(o, ε, 0, 1)) (one step).

    Per member of a population: its time sampler (ξ, ratio, pairing), Δr, and the du/dr
    estimator among ``fd`` and ``zero`` (a mask); ``jvp``/``jacobian`` populations share one.
    """

    name = "om2p"
    member_streams = True
    reads = GenerativeQAgent.reads | {"xi", "ratio", "pairing", "estimator", "dr",
                                      "adaptive_p", "sample_steps"}
    # L_MF sums its squared error over action dims; the public code averages
    # (agents/fql_meanfield.py:370), as om2p-official does
    action_reduce: ClassVar[str] = "sum"

    def set_members(self, cfgs: Sequence[Any]) -> None:
        """Each member's time sampler, Δr (1, P·A, 1) and fd-or-zero estimator mask."""
        super().set_members(cfgs)
        self.time_samplers = [make_time_sampler(c.xi) for c in cfgs]
        estimators = {c.estimator for c in cfgs}
        if len(estimators) > 1 and not estimators <= {"fd", "zero"}:
            raise ValueError(f"members with estimators {sorted(estimators)} cannot share a "
                             f"population: only 'fd' and 'zero' mix")
        fd = [c.estimator == "fd" for c in cfgs]
        for c in cfgs:  # once here, so the per-step du/dr never reads the Δr tensor back
            check_estimator(c.estimator, c.dr)
        self.estimator = "fd" if any(fd) else cfgs[0].estimator
        dr = self.per_agent([c.dr if c.estimator == "fd" else 1.0 for c in cfgs])
        self.register_buffer("dr", dr.view(1, -1, 1), persistent=False)
        mask = None if all(fd) or not any(fd) else self.per_agent(fd, torch.bool).view(1, -1, 1)
        self.register_buffer("fd_mask", mask, persistent=False)

    def sample_times(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, t), each (B, P·A, 1): member m's pairs from its own sampler and generator."""
        B, A = batch_size, self.agents_per_member
        rs, ts = [], []
        for cfg, sampler, gen in zip(self.member_cfgs, self.time_samplers,
                                     self.member_generators(), strict=True):
            r, t = sample_r_t(B * A, sampler, cfg.ratio, generator=gen, pairing=cfg.pairing)
            rs.append(r.view(B, A, 1))
            ts.append(t.view(B, A, 1))
        device = self.act_mask.device
        if len(rs) == 1:
            return rs[0].to(device), ts[0].to(device)
        return torch.cat(rs, 1).to(device), torch.cat(ts, 1).to(device)

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, Logs]:
        """L_MF = Σ_i E w ||u_θ(o, x_r, r, t) - sg(v + (t - r) du/dr)||²   (eq-mf-loss)."""
        B, A, d = actions.shape
        r, t = self.sample_times(B)  # (B, A, 1)
        eps = self.randn(B, A, d)
        per_agent, logs = meanflow_loss(self.velocity(), obs, actions, r, t, self.estimator,
                                        self.dr, self.cfg.adaptive_p, eps=eps,
                                        mask=self.act_mask, fd_mask=self.fd_mask,
                                        reduce="agents", du_dr_fn=stacked_du_dr,
                                        logs=self.want_logs, action_reduce=self.action_reduce)
        return per_agent.sum(), logs

    def velocity(self) -> VelocityFn:
        """The u_θ(o, x_r, r, t) that L_MF trains: the actor, its inputs in that order."""
        return self.actor

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """One-step (or ``cfg.sample_steps``-step) mean-flow sample   (eq-one-step)."""
        eps = self.noise(obs) if eps is None else eps
        return sample_stacked(sample_meanflow, self.actor, obs, eps, steps=self.cfg.sample_steps)
