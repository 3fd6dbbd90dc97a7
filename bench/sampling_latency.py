"""Action-sampling latency: one-step mean flow vs K-step flow vs DDPM diffusion vs a plain MLP.

Not a training benchmark. Every policy has the same hidden layers; only the sampler differs.
``meanflow_1`` is the library's ``sample_meanflow(steps=1)`` (one agent) or the one-step
formula on stacked networks (several agents); ``meanflow_1_lean`` (one agent) is that same
formula without the K-step loop's bookkeeping, to show what the sampler's overhead costs.
Run: ``python bench/sampling_latency.py`` (writes data/results/bench/sampling_latency_<dev>.json)
"""

from __future__ import annotations

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

from om2p_lite.flows.diffusion import DiffusionSchedule, sample_diffusion
from om2p_lite.flows.networks import VelocityNet, mlp
from om2p_lite.flows.sampling import sample_flow, sample_meanflow
from om2p_lite.flows.stacked import StackedMLP, StackedVelocityNet

FLOW_STEPS = (1, 5, 10, 20)
# (method, numerator, denominator, minimum ratio or None, maximum ratio or None)
TARGETS = [
    ("meanflow_1 / mlp <= 1.15", "meanflow_1", "mlp", None, 1.15),
    ("flow_10 / meanflow_1 >= 8", "flow_10", "meanflow_1", 8.0, None),
    ("diffusion_50 / meanflow_1 >= 40", "diffusion_50", "meanflow_1", 40.0, None),
]


def policies(agents: int, hidden: int, depth: int, diffusion_steps: int,
             device: torch.device) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name → fn(o) → actions, for one agent (o: (B, obs)) or ``agents`` stacked (B, M, obs)."""
    if agents == 1:
        actor = mlp(OBS_DIM, ACT_DIM, hidden, depth).to(device)
        vel = VelocityNet(OBS_DIM, ACT_DIM, hidden, depth).to(device)
    else:
        actor = StackedMLP(agents, OBS_DIM, ACT_DIM, hidden, depth).to(device)
        vel = StackedVelocityNet(agents, OBS_DIM, ACT_DIM, hidden, depth).to(device)
    schedule = DiffusionSchedule(diffusion_steps)

    def noise(o: torch.Tensor) -> torch.Tensor:
        return torch.randn(*o.shape[:-1], ACT_DIM, device=o.device, dtype=o.dtype)

    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "mlp": lambda o: actor(o).clamp(-1, 1),
        "meanflow_1": (lambda o: sample_meanflow(vel, o, ACT_DIM, 1, noise(o))) if agents == 1
        else (lambda o: one_step_stacked(vel, o, noise(o))),
    }
    if agents == 1:  # diagnostic: eq-one-step written out, without the general K-step loop
        fns["meanflow_1_lean"] = lambda o: one_step_stacked(vel, o, noise(o))
    for k in FLOW_STEPS:
        fns[f"flow_{k}"] = lambda o, k=k: sample_flow(vel, o, ACT_DIM, k, noise(o))
    fns[f"diffusion_{diffusion_steps}"] = \
        lambda o: sample_diffusion(vel, o, ACT_DIM, schedule, noise(o))
    return fns


def run(args) -> dict:
    device = setup(args)
    clock = clock_of(args, device)
    batches = parse_ints(args.batches, "--batches")
    agents_list = parse_ints(args.agents, "--agents")
    results = []
    for size, (hidden, depth) in parse_sizes(args.sizes).items():
        for agents in agents_list:
            fns = policies(agents, hidden, depth, args.diffusion_steps, device)
            for batch in batches:
                shape = (batch, OBS_DIM) if agents == 1 else (batch, agents, OBS_DIM)
                o = torch.randn(*shape, device=device)
                with torch.no_grad():
                    calls = {name: (lambda fn=fn, o=o: fn(o)) for name, fn in fns.items()}
                    rounds = args.rounds * (3 if batch <= 64 else 1)  # cheap: more rounds
                    times = interleaved_seconds(calls, device, args.repeats, args.warmup,
                                                rounds)
                secs = {name: t[clock] for name, t in times.items()}
                for name, s in secs.items():
                    results.append({"size": size, "hidden": hidden, "depth": depth,
                                    "agents": agents, "batch": batch, "method": name,
                                    "seconds": s, "ratio_to_mlp": s / secs["mlp"],
                                    "us_per_action": 1e6 * s / (batch * agents),
                                    "wall_s": times[name]["wall"], "cpu_s": times[name]["cpu"]})
                print(f"  {size} agents={agents} batch={batch}: " + ", ".join(
                    f"{n} {1e6 * s:.0f}us" for n, s in secs.items()), flush=True)
    checks = target_checks(results, args.diffusion_steps)
    payload = {"benchmark": "sampling_latency",
               "meta": meta(args, device, obs_dim=OBS_DIM, act_dim=ACT_DIM,
                            diffusion_steps=args.diffusion_steps, rounds=args.rounds,
                            diffusion_schedule="vp (Diffusion-QL)"),
               "results": results, "targets": checks}
    show(results, checks)
    write_json(args.out, f"sampling_latency_{device.type}", payload)
    return payload


def target_checks(results: list[dict], diffusion_steps: int) -> list[dict]:
    """Each target ratio at every (size, agents, batch); the issue's targets are at 1024."""
    table = {(r["size"], r["agents"], r["batch"], r["method"]): r["seconds"] for r in results}
    checks = []
    for label, num, den, lo, hi in TARGETS:
        num = num.replace("diffusion_50", f"diffusion_{diffusion_steps}")
        label = label.replace("diffusion_50", f"diffusion_{diffusion_steps}")
        for size, agents, batch, method in table:
            if method != num or (size, agents, batch, den) not in table:
                continue
            ratio = table[(size, agents, batch, num)] / table[(size, agents, batch, den)]
            ok = (lo is None or ratio >= lo) and (hi is None or ratio <= hi)
            checks.append({"target": label, "size": size, "agents": agents, "batch": batch,
                           "ratio": ratio, "met": ok})
    return checks


def show(results: list[dict], checks: list[dict]) -> None:
    """Print ratio-to-MLP tables, then the target checks."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    keys = list(dict.fromkeys((r["size"], r["agents"], r["batch"]) for r in results))
    rows = []
    for size, agents, batch in keys:
        row = {"size": size, "agents": agents, "batch": batch}
        for r in results:
            if (r["size"], r["agents"], r["batch"]) == (size, agents, batch):
                row[r["method"]] = r["ratio_to_mlp"]
                if r["method"] == "mlp":
                    row["mlp_us"] = 1e6 * r["seconds"]
        rows.append(row)
    print_table(rows, ["size", "agents", "batch", "mlp_us", *methods],
                "Sampling latency, ratio to the plain MLP policy (mlp_us: its time in µs)")
    print_table(checks, ["target", "size", "agents", "batch", "ratio", "met"],
                "Targets (the issue states them at batch 1024)")


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,64,1024", help="action batch sizes")
    p.add_argument("--agents", default="1,3",
                   help="1 = one agent's policy; M > 1 = M agents' policies as one stacked "
                        "computation (3 = simple_spread)")
    p.add_argument("--diffusion-steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved timing rounds (3x as many for batches <= 64)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
