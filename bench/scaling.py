"""Scaling: time per OM2P training step and per sampled action vs number of agents and batch.

Not a learning benchmark: random data of simple_spread agents' shape. The step is the
library's ``OM2PAgent.update``, whose agents' policies and critics run as one batched
computation; a Python loop over separate ``VelocityNet``s is timed for sampling as reference.
Run: ``python bench/scaling.py`` (writes data/results/bench/scaling_<dev>.json)
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
    one_step_stacked,
    parse_ints,
    parse_sizes,
    print_table,
    setup,
    write_json,
)

from om2p_lite.flows.meanflow import DEFAULT_DR
from om2p_lite.flows.networks import VelocityNet
from om2p_lite.flows.sampling import sample_meanflow
from om2p_lite.rl.agents import AgentDims, make_agent
from om2p_lite.rl.config import TrainConfig

LINEAR_SLACK = 1.10  # "linear or better": t(n) / t(n0) <= 1.1 · n / n0


def om2p_step(agents: int, batch: int, hidden: int, depth: int, estimator: str, dr: float,
              device: torch.device) -> tuple[Callable[[], None], Callable[[], torch.Tensor],
                                             Callable[[], list[torch.Tensor]]]:
    """(the library's OM2P ``agent.update``, one-step sampler of all agents, loop-of-networks
    sampler). The agent: all agents' actors and critics stacked, uniform ξ, η = 1."""
    cfg = TrainConfig(algo="om2p", batch_size=batch, hidden=hidden, depth=depth,
                      critic_hidden=hidden, critic_depth=depth, estimator=estimator, dr=dr,
                      xi="uniform", eta=1.0)
    agent = make_agent("om2p", AgentDims(agents, OBS_DIM, ACT_DIM, (ACT_DIM,) * agents),
                       cfg).to(device)
    agent.want_logs = False  # as in training between logged steps
    o, o2 = torch.randn(2, batch, agents, OBS_DIM, device=device)
    data = {"obs": o, "next_obs": o2,
            "actions": torch.rand(batch, agents, ACT_DIM, device=device) * 2 - 1,
            "rewards": torch.randn(batch, agents, device=device),
            "dones": torch.zeros(batch, device=device)}

    def step() -> None:
        agent.update(data)

    separate = [VelocityNet(OBS_DIM, ACT_DIM, hidden, depth).to(device) for _ in range(agents)]

    def loop_sample() -> list[torch.Tensor]:
        return [sample_meanflow(n, o[:, i], ACT_DIM, 1) for i, n in enumerate(separate)]

    def stacked_sample() -> torch.Tensor:
        eps = torch.randn(*o.shape[:-1], ACT_DIM, device=device)  # (B, A, act)
        return one_step_stacked(agent.actor, o, eps)

    return step, stacked_sample, loop_sample


def measure(configs: list[tuple[int, int]], hidden: int, depth: int, args,
            device: torch.device) -> list[dict]:
    """Time every (agents, batch) config, interleaved in rounds (fair under drifting load)."""
    steps, samples, loops = {}, {}, {}
    for agents, batch in configs:
        key = f"{agents}x{batch}"
        steps[key], samples[key], loops[key] = om2p_step(agents, batch, hidden, depth,
                                                         args.estimator, args.dr, device)
    clock = clock_of(args, device)
    step_t = interleaved_seconds(steps, device, args.repeats, args.warmup, args.rounds)
    with torch.no_grad():
        both_t = interleaved_seconds({**{f"s{k}": f for k, f in samples.items()},
                                      **{f"l{k}": f for k, f in loops.items()}},
                                     device, args.repeats, args.warmup, args.rounds)
    step_s = {k: t[clock] for k, t in step_t.items()}
    both = {k: t[clock] for k, t in both_t.items()}
    rows = []
    for agents, batch in configs:
        key = f"{agents}x{batch}"
        n_actions = batch * agents
        rows.append({"agents": agents, "batch": batch, "step_s": step_s[key],
                     "step_us_per_sample": 1e6 * step_s[key] / n_actions,
                     "sample_s": both[f"s{key}"],
                     "sample_us_per_action": 1e6 * both[f"s{key}"] / n_actions,
                     "loop_sample_s": both[f"l{key}"],
                     "loop_over_stacked": both[f"l{key}"] / both[f"s{key}"],
                     "step_wall_s": step_t[key]["wall"], "step_cpu_s": step_t[key]["cpu"],
                     "sample_wall_s": both_t[f"s{key}"]["wall"],
                     "sample_cpu_s": both_t[f"s{key}"]["cpu"]})
    del steps, samples, loops
    gc.collect()
    return rows


def add_growth(rows: list[dict], key: str) -> list[dict]:
    """Growth of time vs growth of ``key`` from the first row, and a linear-or-better verdict."""
    first = rows[0]
    for r in rows:
        size_growth = r[key] / first[key]
        r["size_growth"] = size_growth
        r["step_growth"] = r["step_s"] / first["step_s"]
        r["sample_growth"] = r["sample_s"] / first["sample_s"]
        r["linear_or_better"] = max(r["step_growth"], r["sample_growth"]) <= \
            LINEAR_SLACK * size_growth
    return rows


def run(args) -> dict:
    device = setup(args)
    sizes = parse_sizes(args.sizes)
    agents_list = parse_ints(args.agents, "--agents")
    batches = parse_ints(args.batches, "--batches")
    out: dict[str, list[dict]] = {"vs_agents": [], "vs_batch": []}
    for size, (hidden, depth) in sizes.items():
        rows = measure([(n, args.batch) for n in agents_list], hidden, depth, args, device)
        out["vs_agents"] += add_growth([{"size": size, **r} for r in rows], "agents")
        rows = measure([(args.batch_agents, b) for b in batches], hidden, depth, args, device)
        out["vs_batch"] += add_growth([{"size": size, **r} for r in rows], "batch")
    payload = {"benchmark": "scaling",
               "meta": meta(args, device, obs_dim=OBS_DIM, act_dim=ACT_DIM,
                            estimator=args.estimator, dr=args.dr, batch=args.batch,
                            batch_agents=args.batch_agents, linear_slack=LINEAR_SLACK,
                            rounds=args.rounds,
                            step="the library's OM2PAgent.update: critic TD step (target "
                                 "action one-step sampled) + actor mean-flow loss + η=1 Q "
                                 "term, all agents stacked"),
               **out}
    cols = ["size", "agents", "batch", "step_s", "step_us_per_sample", "sample_us_per_action",
            "size_growth", "step_growth", "sample_growth", "linear_or_better",
            "loop_over_stacked"]
    print_table(out["vs_agents"], cols, "Scaling with the number of agents (growth vs first "
                                        "row; loop_over_stacked: Python loop / stacked)")
    print_table(out["vs_batch"], cols, "Scaling with the batch size")
    write_json(args.out, f"scaling_{device.type}", payload)
    return payload


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.set_defaults(sizes="book")
    p.add_argument("--agents", default="2,4,8,16,32")
    p.add_argument("--batch", type=int, default=256, help="batch for the agents sweep")
    p.add_argument("--batches", default="64,256,1024,4096", help="batches for the batch sweep")
    p.add_argument("--batch-agents", type=int, default=3,
                   help="agents in the batch sweep (3 = simple_spread)")
    p.add_argument("--estimator", default="fd", help="du/dr estimator of the OM2P step")
    p.add_argument("--dr", type=float, default=DEFAULT_DR)
    p.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
