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


def make_agent(algo: str, dims: AgentDims, cfg: TrainConfig) -> Agent:
    """Build the agent named ``algo`` (one of ``ALGORITHMS``) for shapes ``dims``."""
    if algo not in AGENTS:
        raise ValueError(f"unknown algorithm {algo!r}: choose one of {ALGORITHMS}")
    return AGENTS[algo](dims, cfg)


__all__ = ["AGENTS", "ALGORITHMS", "Agent", "AgentDims", "ActorCriticAgent",
           "GenerativeQAgent", "dims_of", "make_agent"]
