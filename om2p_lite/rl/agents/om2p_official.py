"""``om2p-official``: OM2P as the paper's released code trains and samples it, as a variant.

Not a second OM2P loss: it is ``OM2PAgent`` with the released recipe's switches thrown
(``meanflow_loss``, ``sample_r_t``, ``normalised_q_loss``); the critic is the shared one.

Facts from the released code (github lizr16/OM2P at f3cfd05; ``M`` = agents/fql_meanfield.py,
``N`` = utils/networks.py; the README's command: --agent.q_weight=1.0 --agent.is_autograd=0):

- The network output itself is the action: a = clip(net(o, ε, t_start=0, t_stop=1))
  (M:517-532, flow_steps=1 M:716), not ε + u; the Q term uses the same call with the
  default times 0 and 1 (M:377, N:495-499) and clips it (M:381).
- Training: x_0 = ε, x_1 = the data action, t_start and t_stop two independent U[0, 1)
  draws, unordered, no t_start = t_stop share (M:306-310, time_selection='uniform' M:737);
  x sits at t_stop, x = (1 - t_stop) x_0 + t_stop x_1 (M:339); v = x_1 - x_0 (M:340); the
  network reads [o, x, t_start, t_stop] (M:343, N:499).
- du/dt: d/dt_stop along the path (M:346-364); the README's ``is_autograd=0`` is a finite
  difference with Δ = 1e-12 (M:736), and t_stop - 1e-12 == t_stop in float32 for all but
  t_stop < ~2e-5, so it is 0 (in eager code; inside jax.grad the two passes differ by
  rounding and it diverges); ``is_autograd=2`` is 0 outright (M:357-358). Here: 0.
- L_BC = mean over batch AND action dims of (pred - sg(u_tgt))² (M:370); ours sums over d.
- L_Q = -mean_B of the two critics' mean Q (M:382-383, :391), normalised only with
  ``normalize_q_loss`` (default False, M:717; the README command does not set it), weight
  ``q_weight`` = 1 (M:732, README): L = L_BC + q_weight · L_Q (M:425-428; the OMAR term of
  M:428 is 0 unless is_softmax_q = 1, M:386-389).
- Shared with ours already: TD target from the policy's own clipped next action and the
  mean of the two target critics (M:30-37, q_agg='mean' M:711), γ = 0.99, τ = 0.005, batch
  256 (M:704-710), GELU MLPs (N:45), LayerNorm in the critic only (M:707-708). Sizes and lr
  are the budget's: the released default is 4×512 actor and critics (M:705-706) with lr
  3e-4 (M:703; the README runs 1e-3). Left different: the released step computes the actor
  and critic losses on the same pre-update parameters (M:470-481); ours steps the critic
  first (``ActorCriticAgent.update``).

The released target's sign. With x at s = t_stop and σ = t_start, u(x_s, σ, s) is the mean
velocity over [σ, s]: (s - σ) u = ∫_σ^s v dτ; differentiating in s along the path gives
u + (s - σ) du/ds = v, so u = v - (t_stop - t_start) du/dt_stop. The code computes
``vel - (t_start - t_stop) * dudt`` = v + (t_stop - t_start) du/dt_stop (M:368), dudt being
d/dt_stop (M:353-356, M:360-364): the opposite sign, the identity for x at t_start. In our
names (x at r, eq-mf-target) it is ``meanflow_target(v, t, r, du/dr)`` with r and t
swapped (tests/test_om2p_official.py). It changes nothing here (du/dt = 0), but it does
in the released code's default ``is_autograd=1`` (M:735).

TrainConfig fields: reads what every critic agent reads (sizes, n_q, lr, batch, γ, τ, ...);
overrides, whatever the config says, the ones in ``OFFICIAL`` (so its ``reads`` holds
none of OM2P's mean-flow fields, nor eta or q_norm).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from om2p_lite.flows.meanflow import VelocityFn
from om2p_lite.rl.agents.base import ActorCriticAgent
from om2p_lite.rl.agents.om2p import OM2PAgent

# the released recipe's settings, fixed by the algorithm (ratio and dr go unread with them)
OFFICIAL: dict[str, Any] = dict(eta=1.0, q_norm=False, xi="uniform", pairing="independent",
                                estimator="zero", adaptive_p=0.0, sample_steps=1)


def official_config(cfg: Any) -> Any:
    """``cfg`` with the released recipe's settings (``OFFICIAL``) in place of its own."""
    return dataclasses.replace(cfg, **OFFICIAL)


class OM2POfficialAgent(OM2PAgent):
    """a = clip(net(o, ε, 0, 1)); L = mean_d ||net(o, x_s, σ, s) - v||² - mean Q   (see above)."""

    name = "om2p-official"
    action_reduce = "mean"  # the squared error averaged over action dims (M:370)
    reads = ActorCriticAgent.reads  # ``OFFICIAL`` overrides η, q_norm and the mean-flow fields

    def __init__(self, dims: Any, cfg: Any):
        super().__init__(dims, official_config(cfg))

    def set_members(self, cfgs: Sequence[Any]) -> None:
        """As OM2P's, each member with the released settings in place of its own."""
        super().set_members([official_config(c) for c in cfgs])

    def velocity(self) -> VelocityFn:
        """u(o, x_r, r, t) with x at r = t_stop: the network reads (x, t_start, t_stop),
        so its time inputs are (t, r) in our names (M:339, :343)."""
        return lambda o, x, r, t: self.actor(o, x, t, r)

    def policy(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """The network output at (o, ε, t_start = 0, t_stop = 1), clipped (M:525-532)."""
        eps = self.noise(obs) if eps is None else eps
        t_start = eps.new_zeros(*eps.shape[:-1], 1)  # (B, A, 1)
        return self.actor(obs, eps, t_start, t_start + 1).clamp(-1, 1)
