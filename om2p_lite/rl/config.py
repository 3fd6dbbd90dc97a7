"""The settings of one training run (``TrainConfig``), its validation and the budget presets.

Not the training loop (``train``) nor the agents: both read their settings from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from om2p_lite.data.behaviour import QUALITIES
from om2p_lite.envs import TASKS
from om2p_lite.flows.meanflow import ESTIMATORS
from om2p_lite.flows.timesteps import PAIRINGS


@dataclass
class TrainConfig:
    """Every knob of one training run; defaults follow SPEC §4 scaled for a CPU."""

    algo: str = "om2p"  # om2p | bc | td3bc | cql | omar | flowq | diffusionq
    task: str = "spread"  # spread | tag | world | halfcheetah
    quality: str = "expert"  # random | medium-replay | medium | expert
    seed: int = 0  # training seed: initial weights, noise, batch order
    data_seed: int = 0  # seed of the dataset (one dataset serves every training seed)
    data_budget: str = "smoke"  # dataset size preset: smoke | book | full
    dataset: str = ""  # path to a dataset .npz; "" = generated/cached from the fields above
    reward_variant: str = "mpe2"  # Spread reward: mpe2 | omar
    steps: int = 1000  # gradient steps
    batch_size: int = 256  # transitions per step (same rows for every agent)
    lr: float = 3e-4  # Adam learning rate, actor and critic
    hidden: int = 256  # actor hidden width (paper: 512)
    depth: int = 3  # actor hidden layers (paper: 4)
    critic_hidden: int = 256  # critic hidden width (LayerNorm MLP)
    critic_depth: int = 3  # critic hidden layers
    n_q: int = 2  # critics per agent in the ensemble
    gamma: float = 0.99  # discount γ
    tau: float = 0.005  # Polyak rate τ of the target networks
    eta: float = 1.0  # weight η of the normalised Q term (0 = behaviour cloning)
    estimator: str = "fd"  # du/dr estimator: jvp | fd | zero | jacobian
    dr: float = 1e-3  # finite-difference step Δr (estimator fd)
    xi: str = "beta55"  # time sampler: uniform | beta55 | logit_normal | "a,b,c,d"
    ratio: float = 0.25  # fraction of (r, t) pairs with r ≠ t
    pairing: str = "sorted"  # (r, t) from two draws: sorted (r = min) | independent (public code)
    q_norm: bool = True  # divide the Q term by sg(mean |Q|) (False: the ablation without it)
    adaptive_p: float = 0.0  # MeanFlow adaptive-weight power p (0 = plain L2)
    sample_steps: int = 1  # OM2P sampling steps (1 = one-step policy)
    flow_steps: int = 10  # Euler steps K of the Flow+Q baseline
    diffusion_steps: int = 5  # denoising steps T of the Diffusion+Q baseline (Diffusion-QL: 5)
    alpha: float = 2.5  # TD3+BC's α (weight of the normalised Q term)
    policy_noise: float = 0.2  # TD3 target-smoothing / CQL proposal noise std
    noise_clip: float = 0.5  # TD3 target-smoothing noise clip
    cql_alpha: float = 1.0  # weight of the CQL conservative term (cql, omar)
    cql_samples: int = 10  # uniform and policy proposals each for CQL's logsumexp
    omar_coef: float = 0.7  # OMAR's weight c of the pull toward searched actions
    omar_iters: int = 2  # OMAR's search iterations
    omar_samples: int = 20  # OMAR's candidate actions per iteration
    omar_elites: int = 5  # OMAR's elites that refit the search Gaussian
    omar_sigma: float = 0.5  # OMAR's initial search std
    eval_every: int = 500  # steps between evaluations (also at 0 and the end); 0 = end only
    eval_episodes: int = 10  # episodes per evaluation, run as one vector of environments
    eval_max_steps: int = 0  # cap on steps per evaluation episode (0 = the task's own length)
    log_every: int = 100  # steps between training-loss log rows
    checkpoint_every: int = 0  # steps between checkpoints (0 = only at the end / stop_at)
    stop_at: int = 0  # stop after this step with a checkpoint, to resume later (0 = run on)
    out_dir: str = ""  # run folder for logs, checkpoint, result.json ("" = keep in memory)
    device: str = ""  # cpu | cuda | cuda:N ("" = CUDA if available)
    progress: bool = True  # show a tqdm progress bar
    threads: int = 0  # torch CPU threads (0 = torch's default)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. TOML), rejecting unknown keys by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**values)

    def validate(self) -> TrainConfig:
        """Raise a ``ValueError`` naming the first bad field and how to fix it."""
        from om2p_lite.flows.timesteps import make_time_sampler
        from om2p_lite.rl.agents import ALGORITHMS

        def bad(field: str, problem: str, fix: str) -> ValueError:
            return ValueError(f"config field '{field}': {problem}. Fix: {fix}")

        if self.algo not in ALGORITHMS:
            raise bad("algo", f"unknown algorithm {self.algo!r}", f"use one of {ALGORITHMS}")
        if self.task not in TASKS:
            raise bad("task", f"unknown task {self.task!r}", f"use one of {TASKS}")
        if self.quality not in QUALITIES:
            raise bad("quality", f"unknown quality {self.quality!r}", f"use one of {QUALITIES}")
        if not (self.eta >= 0 and math.isfinite(self.eta)):
            raise bad("eta", f"η must be a finite number >= 0, got {self.eta}",
                      "use η = 0 for behaviour cloning or η > 0 for Q supervision")
        if self.estimator not in ESTIMATORS:
            raise bad("estimator", f"unknown du/dr estimator {self.estimator!r}",
                      f"use one of {ESTIMATORS}")
        if not (self.dr > 0 and math.isfinite(self.dr)):
            raise bad("dr", f"Δr must be > 0, got {self.dr}",
                      "use a positive step such as 1e-3 (in float32, below ~1e-6 is noise)")
        if self.pairing not in PAIRINGS:
            raise bad("pairing", f"unknown pairing {self.pairing!r}", f"use one of {PAIRINGS}")
        if not 0 <= self.ratio <= 1:
            raise bad("ratio", f"must lie in [0, 1], got {self.ratio}", "e.g. 0.25")
        for name in ("steps", "batch_size", "lr", "hidden", "depth", "critic_hidden",
                     "critic_depth", "n_q", "sample_steps", "flow_steps", "diffusion_steps",
                     "eval_episodes", "log_every", "cql_samples", "omar_samples"):
            if not getattr(self, name) > 0:
                raise bad(name, f"must be > 0, got {getattr(self, name)}", "use a positive value")
        for name in ("eval_every", "eval_max_steps", "checkpoint_every", "stop_at", "threads",
                     "seed", "data_seed", "omar_iters", "cql_alpha", "adaptive_p"):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}", "use 0 or more")
        if not 0 <= self.gamma < 1 or not 0 < self.tau <= 1:
            raise bad("gamma/tau", f"need 0 <= γ < 1 and 0 < τ <= 1, got {self.gamma}, "
                      f"{self.tau}", "use γ = 0.99, τ = 0.005")
        if not 0 <= self.omar_coef <= 1 or not 0 < self.omar_elites <= self.omar_samples:
            raise bad("omar_coef/omar_elites", "need 0 <= c <= 1 and 0 < elites <= samples",
                      "use omar_coef = 0.7, omar_elites = 5, omar_samples = 20")
        if self.stop_at and self.stop_at >= self.steps:
            raise bad("stop_at", f"{self.stop_at} is not before the last step {self.steps}",
                      "use 0 to run to the end, or a step below `steps`")
        try:
            make_time_sampler(self.xi)
        except ValueError as err:
            raise bad("xi", str(err), "use uniform, beta55, logit_normal or 'a,b,c,d' "
                      "with a, b > -1") from err
        return self


# Training presets per named budget (``budget.get_budget`` names); the paper's scale is
# "full" (public code: 4x512 MLPs, batch 256; our step count is smaller than its 1M).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(steps=300, batch_size=128, lr=1e-3, hidden=64, depth=2, critic_hidden=64,
                  critic_depth=2, eval_every=0, eval_episodes=10, data_budget="smoke",
                  cql_samples=5, omar_samples=10, omar_elites=3),
    "book": dict(steps=5_000, batch_size=256, hidden=256, depth=3, critic_hidden=256,
                 critic_depth=3, eval_every=1_000, eval_episodes=20, data_budget="book"),
    "full": dict(steps=100_000, batch_size=256, hidden=512, depth=4, critic_hidden=512,
                 critic_depth=4, eval_every=10_000, eval_episodes=50, data_budget="full"),
}


def budget_config(budget: str | None = None, **overrides: Any) -> TrainConfig:
    """The preset of ``budget`` (default ``$OM2P_BUDGET``, else book) with ``overrides``."""
    from om2p_lite.runtime.budget import get_budget

    name = get_budget(budget).name
    return TrainConfig.from_dict(PRESETS[name] | overrides).validate()
