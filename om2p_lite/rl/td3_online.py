"""Online independent TD3 (one actor and twin critic per agent) that trains behaviour policies.

Not an offline algorithm and not OM2P: it interacts with the environment, and exists only to
make expert / medium / medium-replay behaviour the way the benchmark's MATD3 policies were.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from om2p_lite.data.behaviour import action_mask
from om2p_lite.envs import VecEnv
from om2p_lite.envs.rollout import rollout_returns
from om2p_lite.flows.stacked import StackedLinear, StackedMLP
from om2p_lite.rl.agents.base import frozen
from om2p_lite.rl.critics import (
    StackedCritic,
    critic_loss,
    make_target,
    polyak_update,
    td_target,
)
from om2p_lite.rl.rundir import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    pickle_errors,
    run_folder_lock,
    save_checkpoint,
)


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


def actor_state(actor: StackedMLP) -> dict[str, torch.Tensor]:
    """The actor's parameters in the shipped snapshot layout: ``weights.k`` (A, d_in, d_out)
    and ``biases.k`` (A, d_out), what ``data.behaviour.ActorPolicy.from_state`` reads."""
    layers = [m for m in actor.net if isinstance(m, StackedLinear)]
    return {**{f"weights.{k}": m.weight.detach().clone() for k, m in enumerate(layers)},
            **{f"biases.{k}": m.bias.detach().clone() for k, m in enumerate(layers)}}


class TD3Learner:
    """All agents' actors and twin critics; each agent learns only from its own obs/action/reward.

    Built from the offline agents' pieces: a stacked ReLU actor per agent (tanh output), a
    ``StackedCritic`` ensemble of two (no LayerNorm, as TD3), ``td_target`` with the clipped
    (min) reduction, ``critic_loss`` and ``polyak_update``.
    """

    def __init__(self, cfg: TD3Config, n_agents: int, obs_dim: int, act_dim: int,
                 mask: np.ndarray) -> None:
        self.cfg = cfg
        self.mask = torch.as_tensor(mask)  # (A, act_dim)
        self.actor = StackedMLP(n_agents, obs_dim, act_dim, cfg.actor_hidden, cfg.depth,
                                activation=nn.ReLU)
        self.critic = StackedCritic(n_agents, obs_dim, act_dim, cfg.critic_hidden, cfg.depth,
                                    n_q=2, layer_norm=False, activation=nn.ReLU)
        self.actor_t, self.critic_t = make_target(self.actor), make_target(self.critic)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.n_updates = 0

    MODULES = ("actor", "critic", "actor_t", "critic_t", "opt_actor", "opt_critic")

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (B, A, act_dim)."""
        return torch.tanh(self.actor(obs)) * self.mask

    def update(self, o: torch.Tensor, a: torch.Tensor, r: torch.Tensor, o2: torch.Tensor,
               d: torch.Tensor) -> dict[str, float]:
        """One TD3 step on a batch: o (B,A,D), a (B,A,d), r (B,A), o2 (B,A,D), d (B,)."""
        cfg = self.cfg
        with torch.no_grad():
            noise = (torch.randn_like(a) * cfg.policy_noise).clamp(-cfg.noise_clip,
                                                                    cfg.noise_clip)
            a2 = (torch.tanh(self.actor_t(o2)) + noise).clamp(-1, 1) * self.mask  # (B, A, d)
            y = td_target(self.critic_t(o2, a2), r, d, cfg.gamma, "min")  # (B, A)
        loss_q = critic_loss(self.critic(o, a), y)
        self.opt_critic.zero_grad()
        loss_q.backward()
        self.opt_critic.step()
        self.n_updates += 1
        logs = {"critic_loss": float(loss_q.detach())}
        if self.n_updates % cfg.policy_delay == 0:
            with frozen(self.critic):
                q_pi = self.critic(o, self.act(o))[0]  # (B, A): the first critic, as TD3
            loss_pi = -q_pi.mean(0).sum()
            self.opt_actor.zero_grad()
            loss_pi.backward()
            self.opt_actor.step()
            polyak_update(self.actor_t, self.actor, cfg.tau)
            polyak_update(self.critic_t, self.critic, cfg.tau)
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

    Returns the learning curve: one row per evaluation (step, return, wall seconds). The
    folder is owned by this process while it trains (``rundir.run_folder_lock``); every file
    is written atomically and the checkpoint holds tensors and plain types only.
    """
    out_dir = Path(out_dir)
    with run_folder_lock(out_dir):
        return _train_td3(cfg, out_dir, progress)


def _train_td3(cfg: TD3Config, out_dir: Path, progress: bool) -> list[dict[str, float]]:
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
        state = load_checkpoint(ckpt)
        for name in TD3Learner.MODULES:
            getattr(learner, name).load_state_dict(state[name])
        learner.n_updates = state["n_updates"]
        step, size, curve, snapshots = state["step"], state["size"], state["curve"], \
            state["snapshots"]
        wall0 = state["wall"]
        for k in buf:
            buf[k][:size] = state["buf"][k].numpy()
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
            snapshots.append({"step": step, "return": ret, "state": actor_state(learner.actor)})
            if progress:
                print(f"[td3 {cfg.task}] step {step} return {ret:.2f} "
                      f"wall {time.time() - t0:.0f}s", flush=True)
            next_eval += cfg.eval_every
            _save_run(out_dir, cfg, curve, snapshots)
            state = {name: getattr(learner, name).state_dict() for name in TD3Learner.MODULES}
            state.update(n_updates=learner.n_updates, step=step, size=size, curve=curve,
                         snapshots=snapshots, wall=time.time() - t0, rng=rng.bit_generator.state,
                         torch_rng=torch.get_rng_state(),
                         buf={k: torch.from_numpy(v[:size].copy()) for k, v in buf.items()})
            save_checkpoint(ckpt, state)
    env.close()
    return curve


def _save_run(out_dir: Path, cfg: TD3Config, curve: list[dict], snapshots: list[dict]) -> None:
    """Write curve.csv and snapshots.pt (all actor snapshots + the config), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["step", "return", "wall_s"])
    writer.writeheader()
    writer.writerows(curve)
    atomic_write_text(out_dir / "curve.csv", text.getvalue())
    blob = io.BytesIO()
    torch.save({"config": asdict(cfg), "snapshots": snapshots}, blob)
    atomic_write_bytes(out_dir / "snapshots.pt", blob.getvalue())


def choose_snapshots(snapshots: list[dict], random_return: float) -> dict[str, int]:
    """Expert = best return; medium = the earliest snapshot nearest random + half the gap."""
    rets = np.array([s["return"] for s in snapshots])
    expert = int(rets.argmax())
    target = random_return + 0.5 * (rets[expert] - random_return)
    medium = int(np.abs(rets[: expert + 1] - target).argmin())
    return {"expert": expert, "medium": medium}


def export_behaviour(run_dir: Path, out_path: Path, random_return: float) -> dict[str, int]:
    """Ship the snapshots up to the expert one (for medium-replay) plus the chosen indices."""
    path = Path(run_dir) / "snapshots.pt"
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle_errors() as err:
        raise CheckpointError(f"{path}: not a snapshots file this library can read safely "
                              f"({type(err).__name__}). Fix: re-run train_td3") from None
    chosen = choose_snapshots(blob["snapshots"], random_return)
    keep = blob["snapshots"][: chosen["expert"] + 1]
    cfg = blob["config"]
    out = {"actor": {"hidden": cfg["actor_hidden"], "depth": cfg["depth"]},
           "config": cfg, "chosen": chosen, "random_return": random_return,
           "snapshots": [{"step": s["step"], "return": s["return"], "state": s["state"]}
                         for s in keep]}
    data = io.BytesIO()
    torch.save(out, data)
    atomic_write_bytes(out_path, data.getvalue())
    return chosen
