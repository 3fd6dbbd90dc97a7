"""OM2P: a one-step mean-flow policy per agent, trained with L = L_MF + η · L_Q (SPEC §2-§4).

Not the mean-flow maths itself (``meanflow``, ``timesteps``): this class only wires them in.
"""

from __future__ import annotations

import torch

from om2p_lite.flows.flow import conditional_velocity, interpolate
from om2p_lite.flows.meanflow import adaptive_weight, meanflow_target
from om2p_lite.flows.sampling import sample_meanflow
from om2p_lite.flows.stacked import sample_stacked, stacked_du_dr
from om2p_lite.flows.timesteps import make_time_sampler, sample_r_t
from om2p_lite.rl.agents.base import AgentDims, GenerativeQAgent


class OM2PAgent(GenerativeQAgent):
    """u_θ(o_i, x, r, t) per agent; a = clip(ε + u_θ(o, ε, 0, 1)) (one step)."""

    name = "om2p"

    def __init__(self, dims: AgentDims, cfg):
        super().__init__(dims, cfg)
        self.time_sampler = make_time_sampler(cfg.xi)

    def generative_loss(self, obs: torch.Tensor, actions: torch.Tensor,
                        ) -> tuple[torch.Tensor, dict[str, float]]:
        """L_MF = Σ_i E w ||u_θ(o, x_r, r, t) - sg(v + (t - r) du/dr)||²   (eq-mf-loss)."""
        B, A, _ = actions.shape
        r, t = sample_r_t(B * A, self.time_sampler, self.cfg.ratio, device=obs.device,
                          pairing=self.cfg.pairing)
        r, t = r.view(B, A, 1), t.view(B, A, 1)
        eps = torch.randn_like(actions)
        x_r = interpolate(eps, actions, r)  # (B, A, d)
        v = conditional_velocity(eps, actions) * self.act_mask  # padding dims stay at 0
        u, dudr = stacked_du_dr(self.actor, obs, x_r, r, t, v, self.cfg.estimator,
                                self.cfg.dr)
        u_tgt = meanflow_target(v, r, t, dudr)  # (eq-mf-target)
        sq_err = (((u - u_tgt) * self.act_mask) ** 2).sum(-1)  # (B, A)
        loss = (adaptive_weight(sq_err, self.cfg.adaptive_p) * sq_err).mean(0).sum()
        return loss, {"mf_loss": float(sq_err.mean().detach()),
                      "du_dr_norm": float(dudr.norm(dim=-1).mean())}

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """One-step (or ``cfg.sample_steps``-step) mean-flow sample   (eq-one-step)."""
        eps = self.noise(obs) if eps is None else eps
        return sample_stacked(sample_meanflow, self.actor, obs, eps, steps=self.cfg.sample_steps)
