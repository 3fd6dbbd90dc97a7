"""The first critic alone: the update cost of the algorithms whose actor reads only Q_1.

TD3's and MA-TD3+BC's actor and OMAR's actor and zeroth-order search read the first critic
of each ensemble only; ``StackedCritic(o, a, n_q=1)`` runs that critic alone. This times
``agent.update`` on a fixed batch of a 3-seed population (World, 3 agents) with that path
and with the whole ensemble computed and Q_1 sliced out (what the code did before), in
interleaved rounds, and checks that both give the same parameters after a few updates.
CQL, whose every critic call reads the whole ensemble, is the control: its ratio is 1.
Run: ``python bench/first_critic.py`` (writes data/results/bench/first_critic_cpu.json)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
from benchlib import (
    base_parser,
    clock_of,
    interleaved_seconds,
    meta,
    parse_sizes,
    print_table,
    setup,
    write_json,
)
from population import population

from om2p_lite.data.generate import get_dataset
from om2p_lite.rl.critics import StackedCritic

ALGOS = ("td3bc", "omar", "cql")
_FORWARD = StackedCritic.forward


@contextlib.contextmanager
def whole_ensemble() -> Iterator[None]:
    """Every critic call computes all n_q critics and slices the asked ones (the old path)."""
    def forward(self: StackedCritic, o: torch.Tensor, a: torch.Tensor,
                n_q: int | None = None) -> torch.Tensor:
        return _FORWARD(self, o, a)[: self.n_q if n_q is None else n_q]

    StackedCritic.forward = forward
    try:
        yield
    finally:
        StackedCritic.forward = _FORWARD


def _paths(update: Callable[[], None]) -> dict[str, Callable[[], None]]:
    """The update with the first critic alone and with the whole ensemble."""
    def old() -> None:
        with whole_ensemble():
            update()

    return {"first_critic": update, "whole_ensemble": old}


def same_updates(algo: str, ds, device: torch.device, hidden: int, depth: int,
                 batch: int, steps: int = 3) -> bool:
    """Both paths from the same start and batches give bitwise the same parameters."""
    states = []
    for path in ("first_critic", "whole_ensemble"):
        torch.manual_seed(0)
        calls = population(algo, 3, hidden, depth, batch, ds, device, gamma=0.95, tau=0.05)
        with whole_ensemble() if path == "whole_ensemble" else contextlib.nullcontext():
            for _ in range(steps):
                calls["update"]()
        agent = calls["agent"]()
        states.append(copy.deepcopy(agent.state_dict()))
    return all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def run(args) -> dict:
    device = setup(args)
    ds = get_dataset("world", "medium", 0, "smoke")
    clock, rows = clock_of(args, device), []
    for size, (hidden, depth) in parse_sizes(args.sizes).items():
        for algo in args.algos.split(","):
            calls = population(algo, 3, hidden, depth, args.batch, ds, device,
                               gamma=0.95, tau=0.05)
            t = interleaved_seconds(_paths(calls["update"]), device, args.repeats,
                                    args.warmup, args.rounds)
            new, old = t["first_critic"][clock], t["whole_ensemble"][clock]
            rows.append({"size": size, "algo": algo, "first_critic_ms": 1e3 * new,
                         "whole_ensemble_ms": 1e3 * old, "ratio": new / old,
                         "bitwise_same": same_updates(algo, ds, device, hidden, depth,
                                                      args.batch)})
    print_table(rows, ["size", "algo", "first_critic_ms", "whole_ensemble_ms", "ratio",
                       "bitwise_same"],
                title="agent.update, 3 seeds stacked: first critic alone / whole ensemble")
    payload = {"benchmark": "first_critic", "meta": meta(args, device, batch=args.batch,
                                                         members=3, task="world"),
               "results": rows}
    write_json(args.out, f"first_critic_{device.type}", payload)
    return payload


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.set_defaults(sizes="64x2", repeats=3, warmup=2)
    p.add_argument("--algos", default=",".join(ALGOS), help="comma list of algorithms")
    p.add_argument("--batch", type=int, default=256, help="transitions per member and step")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
