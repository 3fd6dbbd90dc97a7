"""Offline multi-agent learners: OM2P, its released-code variant and its baselines, all
built on ``agents.base``.

Not the training loop (``train``): ``make_agent`` only builds an agent from a config.
"""

from __future__ import annotations

from om2p_lite.rl.agents.base import (
    ActorCriticAgent,
    Agent,
    AgentDims,
    GenerativeQAgent,
    dims_of,
)
from om2p_lite.rl.agents.bc import BCAgent
from om2p_lite.rl.agents.cql import CQLAgent
from om2p_lite.rl.agents.diffusionq import DiffusionQAgent
from om2p_lite.rl.agents.flowq import FlowQAgent
from om2p_lite.rl.agents.om2p import OM2PAgent
from om2p_lite.rl.agents.om2p_official import OM2POfficialAgent
from om2p_lite.rl.agents.omar import OMARAgent
from om2p_lite.rl.agents.td3 import TD3Agent
from om2p_lite.rl.agents.td3bc import TD3BCAgent
from om2p_lite.rl.config import ALGORITHMS, TrainConfig

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (
    OM2PAgent, OM2POfficialAgent, BCAgent, TD3BCAgent, TD3Agent, CQLAgent, OMARAgent,
    FlowQAgent, DiffusionQAgent)}
if tuple(AGENTS) != ALGORITHMS:  # config names the algorithms without importing agents
    raise ImportError(f"rl.config.ALGORITHMS {ALGORITHMS} != the agents {tuple(AGENTS)}. "
                      f"Fix: list every agent's name in rl.config.ALGORITHMS, in this order")


def field_readers() -> dict[str, frozenset[str]]:
    """Each field that only some algorithms read (an agent's ``reads``) → those algorithms;
    every field missing here is read by every algorithm."""
    fields = sorted(set().union(*(cls.reads for cls in AGENTS.values())))
    return {k: frozenset(a for a, cls in AGENTS.items() if k in cls.reads) for k in fields}


def unread_fields(algo: str) -> frozenset[str]:
    """The fields some algorithm reads but ``algo`` does not: a change of one of them leaves
    ``algo``'s stored results valid (rl.scheduler.stale_fields)."""
    return frozenset(k for k, algos in field_readers().items() if algo not in algos)


def make_agent(algo: str, dims: AgentDims, cfg: TrainConfig) -> Agent:
    """Build the agent named ``algo`` (one of ``ALGORITHMS``) for shapes ``dims``."""
    if algo not in AGENTS:
        raise ValueError(f"unknown algorithm {algo!r}: choose one of {ALGORITHMS}")
    return AGENTS[algo](dims, cfg)


__all__ = ["AGENTS", "ALGORITHMS", "Agent", "AgentDims", "ActorCriticAgent",
           "GenerativeQAgent", "dims_of", "field_readers", "make_agent", "unread_fields"]
