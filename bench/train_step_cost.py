"""Training-step cost: wall time and peak memory of one update, per du/dr estimator and baseline.

Not a learning benchmark: random data of a simple_spread agent's shape, so only cost counts.
Time: the methods of one (size, kind) are timed interleaved in rounds, so load drift on a
shared machine hits them alike. Peak memory: ``benchlib.peak_step_memory`` (CUDA
max_memory_allocated; on CPU the profiler's memory timeline), on one step of each
configuration built alone, after the timing.
Run: ``python bench/train_step_cost.py`` (writes data/results/bench/train_step_cost_<dev>.json)

Two step kinds per method:
``loss``: the generative loss alone (forward, backward, Adam step) — isolates du/dr's cost;
``full``: what an offline actor-critic update costs — a critic TD step whose target action
is sampled from the policy, then the actor step L_gen + η L_Q with L_Q through an action
sampled *with gradients* (1 network call for mean flow, K for flow, T for diffusion).
Both are the library's own code: the agents (``OM2PAgent`` per estimator, ``FlowQAgent``,
``DiffusionQAgent``) for one agent, ``generative_loss`` + ``Agent.step`` and ``update``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
from benchlib import (
    ACT_DIM,
    OBS_DIM,
    base_parser,
    clock_of,
    interleaved_seconds,
    meta,
    parse_sizes,
    peak_step_memory,
    print_table,
    setup,
    write_json,
)

from om2p_lite.flows.meanflow import DEFAULT_DR
from om2p_lite.rl.agents import AgentDims, make_agent
from om2p_lite.rl.config import TrainConfig

ESTIMATOR_METHODS = ("mf_jacobian", "mf_jvp", "mf_fd", "mf_zero")
# (label, numerator, denominator, kind, quantity, minimum ratio): "B is ≥ x times cheaper"
TARGETS = [
    ("jvp/fd time >= 1.5", "mf_jvp", "mf_fd", "loss", "seconds", 1.5),
    ("jvp/fd memory >= 2", "mf_jvp", "mf_fd", "loss", "peak_mib", 2.0),
    ("diffusion+Q / OM2P(fd) time >= 10.8", "diffusion", "mf_fd", "full", "seconds", 10.8),
    ("diffusion+Q / OM2P(fd) memory >= 3.8", "diffusion", "mf_fd", "full", "peak_mib", 3.8),
    ("jacobian / fd time (paper's reference?)", "mf_jacobian", "mf_fd", "full", "seconds",
     None),
    ("jacobian / fd memory (paper's reference?)", "mf_jacobian", "mf_fd", "full", "peak_mib",
     None),
]


def build_step(method: str, kind: str, hidden: int, depth: int, batch: int,
               flow_steps: int, diffusion_steps: int, dr: float, eta: float,
               device: torch.device) -> Callable[[], None]:
    """One training step of ``method`` ('mf_<estimator>', 'flow', 'diffusion') as a closure:
    the library's agent (OM2P, Flow+Q, Diffusion+Q) for one simple_spread agent."""
    algo = "om2p" if method.startswith("mf_") else {"flow": "flowq",
                                                    "diffusion": "diffusionq"}[method]
    cfg = TrainConfig(algo=algo, batch_size=batch, hidden=hidden, depth=depth,
                      critic_hidden=hidden, critic_depth=depth, xi="uniform", ratio=0.25,
                      estimator=method[3:] if algo == "om2p" else "fd", dr=dr, eta=eta,
                      flow_steps=flow_steps, diffusion_steps=diffusion_steps)
    agent = make_agent(algo, AgentDims(1, OBS_DIM, ACT_DIM, (ACT_DIM,)), cfg).to(device)
    agent.want_logs = False  # as in training between logged steps
    data = {"obs": torch.randn(batch, 1, OBS_DIM, device=device),
            "next_obs": torch.randn(batch, 1, OBS_DIM, device=device),
            "actions": torch.rand(batch, 1, ACT_DIM, device=device) * 2 - 1,
            "rewards": torch.randn(batch, 1, device=device),
            "dones": torch.zeros(batch, device=device)}
    if kind == "loss":  # the generative loss alone: forward, backward, Adam step
        def step() -> None:
            loss, _ = agent.generative_loss(data["obs"], data["actions"])
            agent.step(agent.optimizers["actor"], loss)
        return step

    def full_step() -> None:  # critic TD step + actor L_gen + η L_Q + Polyak: agent.update
        agent.update(data)
    return full_step


def build(cfg: dict, device: torch.device) -> Callable[[], None]:
    """The step closure for one configuration row (seeded, so every build is alike)."""
    torch.manual_seed(cfg["seed"])
    return build_step(cfg["method"], cfg["kind"], cfg["hidden"], cfg["depth"], cfg["batch"],
                      cfg["flow_steps"], cfg["diffusion_steps"], cfg["dr"], cfg["eta"],
                      device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(cfgs: list[dict], device: torch.device, repeats: int, warmup: int,
            rounds: int, clock: str) -> list[dict]:
    """Time all configs interleaved in rounds; then peak memory of each, built alone."""
    steps = {i: build(cfg, device) for i, cfg in enumerate(cfgs)}
    for step in steps.values():
        step()  # creates Adam state outside the measurements
    secs = interleaved_seconds(steps, device, repeats, warmup, rounds, min_seconds=0.0)
    del steps
    free(device)
    rows = []
    for i, cfg in enumerate(cfgs):
        step = build(cfg, device)
        step()
        rows.append({**cfg, "seconds": secs[i][clock], "wall_s": secs[i]["wall"],
                     "cpu_s": secs[i]["cpu"], **peak_step_memory(step, device)})
        del step
        free(device)
    return rows


def method_label(method: str, flow_steps: int, diffusion_steps: int) -> str:
    """Human label: 'flow' → 'flow_10', 'diffusion' → 'diffusion_50'."""
    return {"flow": f"flow_{flow_steps}",
            "diffusion": f"diffusion_{diffusion_steps}"}.get(method, method)


def run(args) -> dict:
    device = setup(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - {*ESTIMATOR_METHODS, "flow", "diffusion"}
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from "
                         f"{[*ESTIMATOR_METHODS, 'flow', 'diffusion']}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or set(kinds) - {"loss", "full"}:
        raise SystemExit(f"--kinds: use 'loss', 'full' or both, got {args.kinds!r}")
    rows = []
    for size, (hidden, depth) in parse_sizes(args.sizes).items():
        for kind in kinds:
            cfgs = [{"size": size, "hidden": hidden, "depth": depth, "kind": kind,
                     "method": method, "batch": args.batch, "flow_steps": args.flow_steps,
                     "diffusion_steps": args.diffusion_steps, "dr": args.dr,
                     "eta": args.eta, "seed": args.seed,
                     "label": method_label(method, args.flow_steps, args.diffusion_steps)}
                    for method in methods]
            for row in measure(cfgs, device, args.repeats, args.warmup, args.rounds,
                               clock_of(args, device)):
                rows.append(row)
                print(f"  {size} {kind:4s} {row['label']:13s} {1e3 * row['seconds']:9.1f} ms "
                      f"{row['peak_mib']:8.1f} MiB", flush=True)
    add_ratios(rows)
    checks = target_checks(rows)
    payload = {"benchmark": "train_step_cost",
               "meta": meta(args, device, memory=True, obs_dim=OBS_DIM, act_dim=ACT_DIM,
                            batch=args.batch,
                            flow_steps=args.flow_steps, diffusion_steps=args.diffusion_steps,
                            dr=args.dr, eta=args.eta, rounds=args.rounds,
                            time_sampler="uniform, ratio 0.25",
                            critic="the agents' StackedCritic: 1 agent, ensemble of 2, "
                                   "LayerNorm, same hidden size as the policy",
                            step="the library's agents: generative_loss + Agent.step "
                                 "(loss), agent.update (full)"),
               "results": rows, "targets": checks}
    show(rows, checks)
    write_json(args.out, f"train_step_cost_{device.type}", payload)
    return payload


def add_ratios(rows: list[dict]) -> None:
    """Time and memory of every row relative to OM2P's fd step of the same size and kind."""
    ref = {(r["size"], r["kind"]): r for r in rows if r["method"] == "mf_fd"}
    for r in rows:
        base = ref.get((r["size"], r["kind"]))
        r["time_vs_fd"] = r["seconds"] / base["seconds"] if base else None
        r["memory_vs_fd"] = r["peak_mib"] / base["peak_mib"] \
            if base and base["peak_mib"] > 0 else None


def target_checks(rows: list[dict]) -> list[dict]:
    """Each target ratio (numerator cost / denominator cost) per size."""
    table = {(r["size"], r["kind"], r["method"]): r for r in rows}
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    checks = []
    for label, num, den, kind, qty, lo in TARGETS:
        for size in sizes:
            a, b = table.get((size, kind, num)), table.get((size, kind, den))
            if a is None or b is None:
                continue
            ratio = a[qty] / b[qty] if b[qty] > 0 else None
            met = None if lo is None or ratio is None else ratio >= lo
            checks.append({"target": label, "size": size, "kind": kind, "ratio": ratio,
                           "met": met})
    return checks


def show(rows: list[dict], checks: list[dict]) -> None:
    print_table(rows, ["size", "kind", "label", "seconds", "peak_mib", "extra_mib", "time_vs_fd",
                       "memory_vs_fd"],
                "Training-step cost (time in s, peak extra memory in MiB; ratios to mf_fd)")
    print_table(checks, ["target", "size", "kind", "ratio", "met"],
                "Targets (stated for a GPU; '-' = reported, no target)")


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join([*ESTIMATOR_METHODS, "flow", "diffusion"]))
    p.add_argument("--kinds", default="loss,full", help="'loss', 'full' or both")
    p.add_argument("--batch", type=int, default=256, help="training batch (public code: 256)")
    p.add_argument("--flow-steps", type=int, default=10)
    p.add_argument("--diffusion-steps", type=int, default=50)
    p.add_argument("--dr", type=float, default=DEFAULT_DR, help="fd step Δr")
    p.add_argument("--eta", type=float, default=1.0, help="Q-term weight η")
    p.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
