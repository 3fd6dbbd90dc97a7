"""Train behaviour policies online with multi-agent TD3, then ship medium and expert snapshots.

Only what is online lives here: the vector of environments, the replay buffer, exploration
noise, the resumable checkpoint, the actor snapshots and the choice of the medium and
expert ones. The learner is the offline stack's ``rl.agents.TD3Agent`` (one stacked actor
and twin critic per agent, each agent learning from its own observation, action and
reward: decentralised), stepped by ``agent.update(batch)``; evaluation is
``rl.evaluate.evaluate_agent``. Any task works: HalfCheetah 2x3 and the MPE tasks alike.

Size: one online run's state (buffer, generators, snapshots) is saved and restored as a
whole for a bit-identical resume; split, its checkpoint would be written in two places.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from om2p_lite.envs import DEFAULT_ACTION_LAYOUT, VecEnv, check_task, get_spec
from om2p_lite.envs.vector import env_seed
from om2p_lite.flows.stacked import StackedLinear, StackedMLP
from om2p_lite.rl.agents.base import AgentDims
from om2p_lite.rl.agents.td3 import TD3Agent
from om2p_lite.rl.config import TrainConfig
from om2p_lite.rl.evaluate import evaluate_agent
from om2p_lite.rl.rundir import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CheckpointError,
    RunLog,
    atomic_write_bytes,
    atomic_write_text,
    check_training_checkpoint,
    damaged,
    load_checkpoint,
    pickle_errors,
    run_folder_lock,
    save_checkpoint,
)
from om2p_lite.runtime.checks import SettingError, check_range

# The learner's settings where they differ from TrainConfig's defaults (whose policy_noise
# and noise_clip are TD3's own): small actors (they are shipped), 2-layer critics.
TD3_AGENT: dict[str, Any] = dict(algo="td3", hidden=64, depth=2, critic_depth=2, n_q=2,
                                 lr=3e-4, batch_size=256)
# The learner per task family. HalfCheetah: TD3's MuJoCo settings (2x256 critics, γ 0.99,
# τ 0.005). MPE: maddpg-pytorch's (64-wide critics, γ 0.95, τ 0.01), the code OMAR's MATD3
# behaviour policies are built on. Both matter on MPE: there 2x256 critics cost 23 against 5
# ms of CPU a step (Spread, 4 envs, one update per transition), and with γ 0.99 through
# 25-step time limits the critic of a Spread run on OMAR's reward diverged (Q(o, π(o)) from
# 15 to 30,000 and its loss to 1e7 between steps 6k and 116k, the return falling below
# random's).
TASK_AGENT: dict[str, dict[str, Any]] = {
    "halfcheetah": dict(critic_hidden=256, gamma=0.99, tau=0.005)}
MPE_AGENT: dict[str, Any] = dict(critic_hidden=64, gamma=0.95, tau=0.01)


def task_agent(task: str) -> dict[str, Any]:
    """The learner settings of ``task``'s family (``TASK_AGENT``, else ``MPE_AGENT``)."""
    return dict(TASK_AGENT.get(task, MPE_AGENT))


BUFFER_KEYS = ("obs", "actions", "rewards", "next_obs", "dones")  # an agent batch's keys
CURVE_COLUMNS = ("step", "return", "wall_s")  # curve.csv: one row per evaluation
RESUME_FREE = ("total_steps", "threads")  # may change between a run and its resume
OLD_CHECKPOINT = "ckpt.pt"  # the checkpoint of the retired rl.td3_online driver


@dataclass
class OnlineConfig:
    """What only online training has; the learner's own settings are ``agent`` (TrainConfig
    fields over ``TD3_AGENT``). Defaults suit HalfCheetah 2x3 on a small CPU budget."""

    task: str = "halfcheetah"  # registry name (spread, tag, world, halfcheetah, spreadN)
    total_steps: int = 60_000  # environment transitions collected (all envs together)
    n_envs: int = 1  # environments stepped together
    seed: int = 0  # weights, exploration, replay sampling and the environments
    expl_noise: float = 0.1  # Gaussian exploration noise while collecting
    start_steps: int = 5_000  # uniform-random transitions before the actor acts and learns
    updates_per_step: float = 1.0  # gradient steps per collected transition
    eval_every: int = 5_000  # transitions between evaluations, snapshots and checkpoints
    eval_episodes: int = 3  # episodes per evaluation (deterministic actor)
    log_every: int = 1_000  # transitions between training-loss rows of log.jsonl
    buffer_size: int = 1_000_000  # replay capacity (transitions)
    reward_variant: str = "mpe2"  # MPE reward option (ignored by HalfCheetah)
    action_layout: str = DEFAULT_ACTION_LAYOUT  # MPE action: force-xy (2-d) or mpe2 (5-d)
    critic_layer_norm: bool = False  # LayerNorm in the critics (TD3: none)
    central_critic: bool = True  # MATD3's centralised critics (OMAR's behaviour learner);
    # False: independent TD3, each critic on its own agent's observation and action
    shaping: bool = False  # learn from reward + MPE's optional predator shaping (Tag: -0.1 x
    # the predators' summed distance to the prey); buffer, data and curve keep the reward
    threads: int = 1  # torch CPU threads (be kind to shared machines)
    agent: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides of TD3_AGENT

    def validate(self) -> OnlineConfig:
        """Raise a ``SettingError`` naming the first bad field and its fix."""
        check_task(self.task)
        for name in ("total_steps", "n_envs", "eval_every", "eval_episodes", "log_every",
                     "buffer_size", "threads"):
            check_range(name, getattr(self, name), 0, low_open=True, integer=True,
                        fix="use a positive whole number")
        check_range("buffer_size", self.buffer_size, self.n_envs, integer=True,
                    fix="hold at least one step of every environment")
        check_range("seed", self.seed, 0, integer=True, fix="use 0 or more")
        check_range("start_steps", self.start_steps, 0, integer=True, fix="use 0 or more")
        check_range("expl_noise", self.expl_noise, 0.0, fix="use e.g. 0.1 (TD3)")
        check_range("updates_per_step", self.updates_per_step, 0.0, low_open=True,
                    fix="use e.g. 1.0 (one update per transition)")
        if self.shaping and self.task != "tag":
            raise SettingError("shaping", f"MPE's predator shaping is Tag's option, not "
                               f"{self.task!r}'s (World's predators' reward has its own)",
                               "leave --shaping off")
        if self.eval_every % self.n_envs or self.total_steps % self.eval_every:
            raise SettingError("eval_every", f"{self.eval_every} must be a multiple of n_envs "
                               f"({self.n_envs}) and divide total_steps ({self.total_steps}), "
                               f"so that every checkpoint falls on an evaluation step",
                               "choose e.g. total_steps = 80000, eval_every = 4000, n_envs 1-8")
        self.train_config()
        return self

    def train_config(self) -> TrainConfig:
        """The learner's ``TrainConfig`` (validated; its task, seed and reward are ours)."""
        if not isinstance(self.agent, dict):
            raise SettingError("agent", f"must be a table of TrainConfig fields, got "
                               f"{self.agent!r}", "write e.g. agent = {'lr': 1e-3}")
        fixed = dict(task=self.task, seed=self.seed, reward_variant=self.reward_variant,
                     action_layout=self.action_layout, progress=False, threads=self.threads)
        values = TD3_AGENT | task_agent(self.task) | self.agent | fixed
        if values["algo"] != "td3":
            raise SettingError("agent.algo", f"the online learner is TD3, got "
                               f"{values['algo']!r}", "leave algo out of agent")
        return TrainConfig.from_dict(values).validate()


def actor_state(actor: StackedMLP) -> dict[str, torch.Tensor]:
    """The actor's parameters in the shipped snapshot layout: ``weights.k`` (A, d_in, d_out)
    and ``biases.k`` (A, d_out), what ``data.behaviour.ActorPolicy.from_state`` reads."""
    layers = [m for m in actor.net if isinstance(m, StackedLinear)]
    return {**{f"weights.{k}": m.weight.detach().clone() for k, m in enumerate(layers)},
            **{f"biases.{k}": m.bias.detach().clone() for k, m in enumerate(layers)}}


def make_learner(cfg: OnlineConfig, dims: AgentDims) -> TD3Agent:
    """TD3's ReLU actor and critics (LayerNorm only if asked), per agent, stacked; the
    critics centralised (MATD3) unless ``central_critic`` is off."""
    return TD3Agent(dims, cfg.train_config(), activation=nn.ReLU,
                    layer_norm=cfg.critic_layer_norm, central=cfg.central_critic)


class _Run:
    """One run's state: learner, generators, replay buffer, curve, snapshots, wall time."""

    def __init__(self, cfg: OnlineConfig, out_dir: Path):
        self.cfg, self.out_dir = cfg, out_dir
        spec = get_spec(cfg.task, cfg.reward_variant, cfg.action_layout)
        self.spec, self.cap = spec, min(cfg.buffer_size, cfg.total_steps)
        self.dims = AgentDims(spec.n_agents, spec.obs_dim, spec.act_dim, spec.act_dims)
        torch.manual_seed(cfg.seed)  # the initial weights
        self.agent = make_learner(cfg, self.dims)
        self.agent.want_logs = False  # no extra passes for logs nobody reads
        self.gens = {name: torch.Generator().manual_seed(cfg.seed * 3 + k)  # 3 per seed
                     for k, name in enumerate(("batch", "noise", "explore"))}
        self.agent.generators = [self.gens["noise"]]  # the target smoothing's noise
        A, D, d = spec.n_agents, spec.obs_dim, spec.act_dim
        shapes = {"obs": (A, D), "actions": (A, d), "rewards": (A,), "next_obs": (A, D),
                  "dones": ()}
        self.buf = {k: torch.zeros(self.cap, *shapes[k]) for k in BUFFER_KEYS}
        self.bonus = torch.zeros(self.cap, A) if cfg.shaping else None  # training-only
        self.step, self.curve, self.snapshots, self.wall0 = 0, [], [], 0.0

    @property
    def path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def state(self, wall: float) -> dict[str, Any]:
        """The checkpoint: ``rundir``'s training layout plus the online pieces."""
        size = min(self.step, self.cap)
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "agent": self.agent.full_state(),
                "rng": {k: g.get_state() for k, g in self.gens.items()}
                | {"torch": torch.get_rng_state()},
                "config": asdict(self.cfg), "wall_s": wall, "curve": self.curve,
                "snapshots": self.snapshots,
                "buffer": {k: v[:size].clone() for k, v in self.buf.items()}} | (
                    {"bonus": self.bonus[:size].clone()} if self.bonus is not None else {})

    def restore(self) -> None:
        """Load ``checkpoint.pt``; refuse a damaged one or one made with other settings."""
        blob = check_training_checkpoint(self.path, load_checkpoint(self.path))
        saved = blob.get("config", {})
        default = asdict(OnlineConfig())  # a field added since the run was saved: its default
        changed = sorted(k for k, v in asdict(self.cfg).items()
                         if k not in RESUME_FREE and saved.get(k, default[k]) != v)
        if changed:
            raise ValueError(f"{self.path} was written with other settings ({changed} "
                             f"differ). Fix: use the same settings, or another run folder")
        step, size = blob["step"], min(blob["step"], self.cap)
        buf, rng = blob.get("buffer"), blob["rng"] or {}
        if not isinstance(buf, dict) or any(
                not isinstance(buf.get(k), torch.Tensor) or buf[k].shape != (size,
                                                                             *v.shape[1:])
                for k, v in self.buf.items()):
            raise damaged(self.path, f"'buffer' must hold {list(BUFFER_KEYS)}, {size} rows "
                                     f"each, shaped for task {self.cfg.task!r}")
        if not all(isinstance(blob.get(k), list) for k in ("curve", "snapshots")) or \
                "explore" not in rng:
            raise damaged(self.path, "lacks the online run's 'curve', 'snapshots' or "
                                     "'rng.explore'")
        bonus = blob.get("bonus")
        if self.bonus is not None and (not isinstance(bonus, torch.Tensor)
                                       or bonus.shape != (size, self.dims.n_agents)):
            raise damaged(self.path, f"a shaped run's 'bonus' must hold {size} rows")
        try:
            self.agent.load_full_state(blob["agent"])
            for k, g in self.gens.items():
                g.set_state(rng[k])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise damaged(self.path, f"its weights do not fit the TD3 learner its config "
                                     f"describes ({type(err).__name__})") from None
        torch.set_rng_state(rng["torch"])
        for k, v in self.buf.items():
            v[:size] = buf[k]
        if self.bonus is not None:
            self.bonus[:size] = bonus
        self.step, self.curve, self.snapshots = step, blob["curve"], blob["snapshots"]
        self.wall0 = float(blob.get("wall_s", 0.0))

    def envs(self) -> VecEnv:
        """The environments of the segment that starts now: reset at every checkpoint, with
        seeds that follow the segment, so a resumed run collects what an unbroken one does."""
        seg, E = len(self.curve), self.cfg.n_envs
        return VecEnv(self.cfg.task, E, reward_variant=self.cfg.reward_variant,
                      seeds=[env_seed(self.cfg.seed, seg * E + k) for k in range(E)],
                      action_layout=self.cfg.action_layout)

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Uniform actions for the first ``start_steps``, then π(o) + N(0, σ²), clipped."""
        mask, gen = self.agent.act_mask, self.gens["explore"]
        shape = (self.cfg.n_envs, self.dims.n_agents, self.dims.act_dim)
        if self.step < self.cfg.start_steps:
            return ((torch.rand(shape, generator=gen) * 2 - 1) * mask).numpy()
        a = self.agent.policy(torch.as_tensor(obs, dtype=torch.float32))
        a = a + self.cfg.expl_noise * torch.randn(shape, generator=gen)
        return (a.clamp(-1, 1) * mask).numpy()

    def store(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray,
              term: np.ndarray, bonus: np.ndarray | None = None) -> None:
        """Write the environments' transitions (one each) into the ring buffer, and the
        shaping ``bonus`` beside them in a shaped run."""
        rows = (self.step + torch.arange(self.cfg.n_envs)) % self.cap
        for key, v in zip(BUFFER_KEYS, (obs, act, rew, next_obs, term), strict=True):
            self.buf[key][rows] = torch.as_tensor(np.asarray(v, dtype=np.float32))
        if self.bonus is not None:
            self.bonus[rows] = torch.as_tensor(np.asarray(bonus, dtype=np.float32))
        self.step += self.cfg.n_envs

    def learn(self) -> dict[str, Any]:
        """The updates due by now (``updates_per_step`` per transition after the start);
        returns the last update's logs."""
        due = int(self.cfg.updates_per_step * max(0, self.step - self.cfg.start_steps))
        logs: dict[str, Any] = {}
        size = min(self.step, self.cap)
        while self.agent.n_updates < due:
            idx = torch.randint(0, size, (self.agent.cfg.batch_size,),
                                generator=self.gens["batch"])
            batch = {k: v[idx] for k, v in self.buf.items()}
            if self.bonus is not None:
                batch["rewards"] = batch["rewards"] + self.bonus[idx]
            logs |= self.agent.update(batch)
        return logs


def train_behaviour(cfg: OnlineConfig, out_dir: str | Path,
                    progress: bool = True) -> list[dict[str, float]]:
    """Train (resuming from ``out_dir/checkpoint.pt`` if there is one); write log.jsonl,
    curve.csv and snapshots.pt. Returns the curve: one row per evaluation (step, return,
    wall seconds).

    The folder is owned while it trains (``rundir.run_folder_lock``); every file is written
    atomically, the checkpoint holds tensors and plain types only and is read with
    ``weights_only``. A run stopped and resumed (with the same settings, any
    ``total_steps``) collects, learns and evaluates bit for bit as one that never stopped.
    """
    cfg.validate()
    out_dir = Path(out_dir)
    with run_folder_lock(out_dir):
        if (out_dir / OLD_CHECKPOINT).exists():
            raise CheckpointError(f"{out_dir / OLD_CHECKPOINT}: a checkpoint of the retired "
                                  f"rl.td3_online driver, which this one cannot resume. Fix: "
                                  f"use another run folder, or move that one away")
        return _train(cfg, out_dir, progress)


def _train(cfg: OnlineConfig, out_dir: Path, progress: bool) -> list[dict[str, float]]:
    torch.set_num_threads(cfg.threads)
    run = _Run(cfg, out_dir)
    resumed = run.path.exists()
    if resumed:
        run.restore()
        print(f"resumed from {run.path} at step {run.step}")
    log = RunLog(out_dir, resume_step=run.step if resumed else None)
    t0 = time.time() - run.wall0
    env, obs = None, None
    while run.step < cfg.total_steps:
        if env is None:
            env = run.envs()
            obs = env.reset()
        act = run.explore(obs)
        next_obs, rew, term, _, obs_after = env.step(act)
        before = run.step
        run.store(obs, act, rew, next_obs, term, env.shaping() if cfg.shaping else None)
        obs = obs_after
        logs = run.learn()
        if logs and run.step // cfg.log_every > before // cfg.log_every:
            row = run.agent.member_logs(logs)[0]
            log.add({"step": run.step, "kind": "train", **row,
                     "wall_s": time.time() - t0})
        if run.step % cfg.eval_every == 0:
            env.close()
            env = None  # the next segment starts with fresh episodes, as a resumed run does
            res = evaluate_agent(run.agent, cfg.task, cfg.eval_episodes, 10_000 + cfg.seed,
                                 reward_variant=cfg.reward_variant,
                                 action_layout=cfg.action_layout)
            wall = time.time() - t0
            run.curve.append({"step": run.step, "return": res["return_mean"], "wall_s": wall})
            run.snapshots.append({"step": run.step, "return": res["return_mean"],
                                  "state": actor_state(run.agent.actor)})
            log.add({"step": run.step, "kind": "eval", "return": res["return_mean"],
                     "returns": res["returns"], "wall_s": wall})
            log.write_csv()
            if progress:
                print(f"[td3 {cfg.task}] step {run.step} return {res['return_mean']:.2f} "
                      f"wall {wall:.0f}s", flush=True)
            _save_run(out_dir, cfg, run.curve, run.snapshots)
            save_checkpoint(run.path, run.state(wall))
    if env is not None:
        env.close()
    return run.curve


def _save_run(out_dir: Path, cfg: OnlineConfig, curve: list[dict],
              snapshots: list[dict]) -> None:
    """Write curve.csv and snapshots.pt (all actor snapshots + the config), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(CURVE_COLUMNS))
    writer.writeheader()
    writer.writerows(curve)
    atomic_write_text(out_dir / "curve.csv", text.getvalue())
    blob = io.BytesIO()
    torch.save({"config": asdict(cfg), "snapshots": snapshots}, blob)
    atomic_write_bytes(out_dir / "snapshots.pt", blob.getvalue())


def replay_until(run_dir: str | Path, step: int) -> dict[str, torch.Tensor]:
    """The first ``step`` transitions the run collected (its replay buffer up to, e.g., the
    medium snapshot's step: D4RL's medium-replay), read from its checkpoint."""
    path = Path(run_dir) / CHECKPOINT_NAME
    blob = check_training_checkpoint(path, load_checkpoint(path))
    buf = blob.get("buffer")
    if not isinstance(buf, dict) or not all(isinstance(buf.get(k), torch.Tensor)
                                            for k in BUFFER_KEYS):
        raise damaged(path, f"'buffer' must hold {list(BUFFER_KEYS)}")
    rows = len(buf["obs"])
    if not 0 < step <= min(rows, blob["step"]) or rows < blob["step"]:
        raise ValueError(f"{path}: holds transitions 1-{rows} of {blob['step']} (a buffer "
                         f"that never wrapped), not the first {step}. Fix: ask for at most "
                         f"{rows}, or train with buffer_size >= total_steps")
    return {k: buf[k][:step].clone() for k in BUFFER_KEYS}


def choose_snapshots(snapshots: list[dict], random_return: float,
                     medium_return: float | None = None,
                     expert_return: float | None = None) -> dict[str, int]:
    """Indices of the expert and medium snapshots, by evaluation return.

    Expert: the earliest snapshot reaching ``expert_return`` if given (and reached), else
    the best. Medium: the earliest snapshot up to the expert nearest ``medium_return``
    (default: random + half the gap to the expert's return).
    """
    rets = np.array([s["return"] for s in snapshots])
    reached = np.flatnonzero(rets >= expert_return) if expert_return is not None else []
    expert = int(reached[0]) if len(reached) else int(rets.argmax())
    target = random_return + 0.5 * (rets[expert] - random_return) \
        if medium_return is None else medium_return
    medium = int(np.abs(rets[: expert + 1] - target).argmin())
    return {"expert": expert, "medium": medium}


def export_behaviour(run_dir: str | Path, out_path: str | Path, random_return: float,
                     medium_return: float | None = None,
                     expert_return: float | None = None, replay: bool = True
                     ) -> dict[str, int]:
    """Ship the snapshots up to the expert one plus the chosen indices, in the layout
    ``data.behaviour.load_actor_snapshot`` reads (ReLU actors), and (``replay``) the run's
    transitions up to the medium snapshot beside it (``data.replay``: D4RL's
    medium-replay), cut from the checkpoint's replay buffer, which must not have wrapped."""
    path = Path(run_dir) / "snapshots.pt"
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle_errors() as err:
        raise CheckpointError(f"{path}: not a snapshots file this library can read safely "
                              f"({type(err).__name__}). Fix: re-run train_behaviour") from None
    chosen = choose_snapshots(blob["snapshots"], random_return, medium_return, expert_return)
    keep = blob["snapshots"][: chosen["expert"] + 1]
    cfg = blob["config"]
    agent = TD3_AGENT | cfg.get("agent", {})
    out = {"actor": {"hidden": agent["hidden"], "depth": agent["depth"], "activation": "relu"},
           "config": cfg, "chosen": chosen, "random_return": random_return,
           "snapshots": [{"step": s["step"], "return": s["return"], "state": s["state"]}
                         for s in keep]}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    if replay:  # first, so that a refused replay leaves no policy file without its replay
        write_replay(run_dir, out_path, keep[chosen["medium"]]["step"])
    data = io.BytesIO()
    torch.save(out, data)
    atomic_write_bytes(Path(out_path), data.getvalue())
    return chosen


def write_replay(run_dir: str | Path, policy_file: str | Path, step: int) -> Path:
    """Write the run's first ``step`` transitions, in whole episodes, to
    ``data.replay.replay_path(policy_file)``."""
    from om2p_lite.data.replay import buffer_episodes, replay_path, save_replay

    path = Path(run_dir) / CHECKPOINT_NAME
    cfg = check_training_checkpoint(path, load_checkpoint(path)).get("config", {})
    buf = {k: v.numpy() for k, v in replay_until(run_dir, step).items()}
    spec = get_spec(cfg["task"], cfg["reward_variant"], cfg["action_layout"])
    eps = buffer_episodes(buf, cfg["n_envs"], cfg["eval_every"], spec.episode_length)
    meta = {"task": cfg["task"], "reward_variant": spec.reward_variant,
            "action_layout": spec.action_layout, "step": step, "seed": cfg["seed"],
            "n_envs": cfg["n_envs"], "eval_every": cfg["eval_every"],
            "start_steps": cfg["start_steps"], "expl_noise": cfg["expl_noise"]}
    return save_replay(replay_path(policy_file), eps, meta)


__all__ = ["MPE_AGENT", "OnlineConfig", "TASK_AGENT", "TD3_AGENT", "actor_state",
           "choose_snapshots", "export_behaviour", "make_learner", "replay_until",
           "task_agent", "train_behaviour", "write_replay"]
