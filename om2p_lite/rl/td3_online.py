"""Online independent TD3 (one actor and twin critic per agent) that trains behaviour policies.

Not an offline algorithm and not OM2P: it interacts with the environment, and exists only to
make expert / medium / medium-replay behaviour the way the benchmark's MATD3 policies were.
"""

from __future__ import annotations

import copy
import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from om2p_lite.data.behaviour import AgentMLP, action_mask
from om2p_lite.envs import VecEnv
from om2p_lite.envs.rollout import rollout_returns


@dataclass
class TD3Config:
    """Online TD3 settings; defaults suit HalfCheetah 2x3 on a small CPU budget."""

    task: str = "halfcheetah"  # registry name
    total_steps: int = 60_000  # environment transitions collected (all envs together)
    n_envs: int = 1  # environments stepped together
    seed: int = 0  # seeds torch, numpy and the environments
    actor_hidden: int = 64  # actor width (actors are shipped, so kept small)
    critic_hidden: int = 256  # critic width
    depth: int = 2  # hidden layers in actor and critic
    lr: float = 3e-4  # Adam step size for actor and critic
    batch_size: int = 256  # transitions per gradient step
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target networks
    policy_noise: float = 0.2  # target-policy smoothing noise
    noise_clip: float = 0.5  # clip of the smoothing noise
    policy_delay: int = 2  # critic steps per actor step
    expl_noise: float = 0.1  # Gaussian exploration noise while collecting
    start_steps: int = 5_000  # uniform-random transitions before the actor acts
    updates_per_step: float = 1.0  # gradient steps per collected transition
    eval_every: int = 5_000  # transitions between evaluations / snapshots
    eval_episodes: int = 3  # episodes per evaluation
    buffer_size: int = 1_000_000  # replay capacity (transitions)
    reward_variant: str = "mpe2"  # MPE reward option (ignored by HalfCheetah)
    threads: int = 1  # torch CPU threads (be kind to shared machines)


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Twin-critic TD loss, mean over batch, summed over agents (independent learners)."""
    return (F.mse_loss(q1, y, reduction="none") + F.mse_loss(q2, y, reduction="none")
            ).mean(0).sum()


class TD3Learner:
    """All agents' actors and critics; each agent learns only from its own obs/action/reward."""

    def __init__(self, cfg: TD3Config, n_agents: int, obs_dim: int, act_dim: int,
                 mask: np.ndarray) -> None:
        self.cfg = cfg
        self.mask = torch.as_tensor(mask)  # (A, act_dim)
        self.actor = AgentMLP(n_agents, obs_dim, act_dim, cfg.actor_hidden, cfg.depth, True)
        self.q1 = AgentMLP(n_agents, obs_dim + act_dim, 1, cfg.critic_hidden, cfg.depth)
        self.q2 = AgentMLP(n_agents, obs_dim + act_dim, 1, cfg.critic_hidden, cfg.depth)
        self.actor_t, self.q1_t, self.q2_t = (copy.deepcopy(m) for m in
                                              (self.actor, self.q1, self.q2))
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.opt_critic = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()],
                                           lr=cfg.lr)
        self.n_updates = 0

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (B, A, act_dim)."""
        return self.actor(obs) * self.mask

    def update(self, o: torch.Tensor, a: torch.Tensor, r: torch.Tensor, o2: torch.Tensor,
               d: torch.Tensor) -> dict[str, float]:
        """One TD3 step on a batch: o (B,A,D), a (B,A,d), r (B,A), o2 (B,A,D), d (B,)."""
        cfg = self.cfg
        with torch.no_grad():
            noise = (torch.randn_like(a) * cfg.policy_noise).clamp(-cfg.noise_clip,
                                                                    cfg.noise_clip)
            a2 = ((self.actor_t(o2) + noise).clamp(-1, 1)) * self.mask  # (B, A, d)
            x2 = torch.cat([o2, a2], -1)
            q_next = torch.min(self.q1_t(x2), self.q2_t(x2)).squeeze(-1)  # (B, A)
            y = r + cfg.gamma * (1.0 - d[:, None]) * q_next  # TD target, per agent
        x = torch.cat([o, a], -1)
        loss_q = critic_loss(self.q1(x).squeeze(-1), self.q2(x).squeeze(-1), y)
        self.opt_critic.zero_grad()
        loss_q.backward()
        self.opt_critic.step()
        self.n_updates += 1
        logs = {"critic_loss": float(loss_q.detach())}
        if self.n_updates % cfg.policy_delay == 0:
            q_pi = self.q1(torch.cat([o, self.act(o)], -1)).squeeze(-1)  # (B, A)
            loss_pi = -q_pi.mean(0).sum()
            self.opt_actor.zero_grad()
            loss_pi.backward()
            self.opt_actor.step()
            with torch.no_grad():
                for net, tgt in ((self.actor, self.actor_t), (self.q1, self.q1_t),
                                 (self.q2, self.q2_t)):
                    for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                        pt.lerp_(p, cfg.tau)
            logs["actor_loss"] = float(loss_pi.detach())
        return logs


def _evaluate(learner: TD3Learner, cfg: TD3Config, seed: int) -> float:
    """Evaluate the current actor without exploration noise."""
    def actor_fn(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return learner.act(torch.as_tensor(obs)).numpy()

    return float(rollout_returns(cfg.task, actor_fn, cfg.eval_episodes, seed,
                                 cfg.reward_variant).mean())


def train_td3(cfg: TD3Config, out_dir: Path, progress: bool = True) -> list[dict[str, float]]:
    """Train (resuming from ``out_dir/ckpt.pt`` if present); write curve.csv and snapshots.pt.

    Returns the learning curve: one row per evaluation (step, return, wall seconds).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = VecEnv(cfg.task, cfg.n_envs, seed=cfg.seed, reward_variant=cfg.reward_variant)
    spec = env.spec
    mask = action_mask(spec)
    learner = TD3Learner(cfg, spec.n_agents, spec.obs_dim, spec.act_dim, mask)
    cap = min(cfg.buffer_size, cfg.total_steps)
    A, D, d = spec.n_agents, spec.obs_dim, spec.act_dim
    buf = {"o": np.zeros((cap, A, D), np.float32), "a": np.zeros((cap, A, d), np.float32),
           "r": np.zeros((cap, A), np.float32), "o2": np.zeros((cap, A, D), np.float32),
           "d": np.zeros((cap,), np.float32)}
    step, size, curve, snapshots, wall0 = 0, 0, [], [], 0.0
    ckpt = out_dir / "ckpt.pt"
    if ckpt.exists():  # resume: everything needed to continue is in one file
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        for name in ("actor", "q1", "q2", "actor_t", "q1_t", "q2_t", "opt_actor", "opt_critic"):
            getattr(learner, name).load_state_dict(state[name])
        learner.n_updates = state["n_updates"]
        step, size, curve, snapshots = state["step"], state["size"], state["curve"], \
            state["snapshots"]
        wall0 = state["wall"]
        for k in buf:
            buf[k][:size] = state["buf"][k]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ckpt} at step {step}")
    obs = env.reset()  # a resumed run restarts its episodes (documented in PROVENANCE)
    t0 = time.time() - wall0
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
    debt = 0.0
    while step < cfg.total_steps:
        if step < cfg.start_steps:
            act = rng.uniform(-1, 1, (cfg.n_envs, A, d)).astype(np.float32) * mask
        else:
            with torch.no_grad():
                act = learner.act(torch.as_tensor(obs)).numpy()
            act = np.clip(act + cfg.expl_noise * rng.standard_normal(act.shape), -1, 1)
            act = (act * mask).astype(np.float32)
        next_obs, rew, term, _, obs_after = env.step(act)
        for k in range(cfg.n_envs):
            i = step % cap
            buf["o"][i], buf["a"][i], buf["r"][i] = obs[k], act[k], rew[k]
            buf["o2"][i], buf["d"][i] = next_obs[k], float(term[k])
            step, size = step + 1, min(size + 1, cap)
        obs = obs_after
        if step >= cfg.start_steps:
            debt += cfg.updates_per_step * cfg.n_envs
            while debt >= 1.0:
                idx = rng.integers(0, size, cfg.batch_size)
                learner.update(*(torch.as_tensor(buf[k][idx]) for k in ("o", "a", "r", "o2",
                                                                        "d")))
                debt -= 1.0
        if step >= next_eval or step >= cfg.total_steps:
            ret = _evaluate(learner, cfg, seed=10_000 + cfg.seed)
            curve.append({"step": step, "return": ret, "wall_s": time.time() - t0})
            snapshots.append({"step": step, "return": ret,
                              "state": {k: v.clone() for k, v in
                                        learner.actor.state_dict().items()}})
            if progress:
                print(f"[td3 {cfg.task}] step {step} return {ret:.2f} "
                      f"wall {time.time() - t0:.0f}s", flush=True)
            next_eval += cfg.eval_every
            _save_run(out_dir, cfg, curve, snapshots)
            state = {name: getattr(learner, name).state_dict() for name in
                     ("actor", "q1", "q2", "actor_t", "q1_t", "q2_t", "opt_actor",
                      "opt_critic")}
            state.update(n_updates=learner.n_updates, step=step, size=size, curve=curve,
                         snapshots=snapshots, wall=time.time() - t0, rng=rng.bit_generator.state,
                         torch_rng=torch.get_rng_state(),
                         buf={k: v[:size].copy() for k, v in buf.items()})
            torch.save(state, ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
    env.close()
    return curve


def _save_run(out_dir: Path, cfg: TD3Config, curve: list[dict], snapshots: list[dict]) -> None:
    """Write curve.csv and snapshots.pt (all actor snapshots + the config)."""
    with open(out_dir / "curve.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "return", "wall_s"])
        writer.writeheader()
        writer.writerows(curve)
    torch.save({"config": asdict(cfg), "snapshots": snapshots}, out_dir / "snapshots.pt")


def choose_snapshots(snapshots: list[dict], random_return: float) -> dict[str, int]:
    """Expert = best return; medium = the earliest snapshot nearest random + half the gap."""
    rets = np.array([s["return"] for s in snapshots])
    expert = int(rets.argmax())
    target = random_return + 0.5 * (rets[expert] - random_return)
    medium = int(np.abs(rets[: expert + 1] - target).argmin())
    return {"expert": expert, "medium": medium}


def export_behaviour(run_dir: Path, out_path: Path, random_return: float) -> dict[str, int]:
    """Ship the snapshots up to the expert one (for medium-replay) plus the chosen indices."""
    blob = torch.load(Path(run_dir) / "snapshots.pt", map_location="cpu", weights_only=False)
    chosen = choose_snapshots(blob["snapshots"], random_return)
    keep = blob["snapshots"][: chosen["expert"] + 1]
    cfg = blob["config"]
    out = {"actor": {"hidden": cfg["actor_hidden"], "depth": cfg["depth"]},
           "config": cfg, "chosen": chosen, "random_return": random_return,
           "snapshots": [{"step": s["step"], "return": s["return"], "state": s["state"]}
                         for s in keep]}
    torch.save(out, out_path)
    return chosen
