"""flow_matching_loss: the per-agent reduction Flow+Q trains with agrees with the scalar one."""

import pytest
import torch

from om2p_lite.flows.flow import flow_matching_loss
from om2p_lite.flows.stacked import StackedVelocityNet


def test_per_agent_flow_matching_loss_matches_each_agent_alone():
    torch.manual_seed(0)
    B, A, obs_dim, d = 64, 3, 5, 2
    net = StackedVelocityNet(A, obs_dim, d, hidden=16, depth=2)
    o, a = torch.randn(B, A, obs_dim), torch.rand(B, A, d) * 2 - 1
    r, eps = torch.rand(B, A, 1), torch.randn(B, A, d)
    per_agent = flow_matching_loss(net, o, a, r, eps, reduce="agents")
    assert per_agent.shape == (A,)
    u = net(o, (1 - r) * eps + r * a, r, r)
    by_hand = ((u - (a - eps)) ** 2).sum(-1).mean(0)  # (A,)
    torch.testing.assert_close(per_agent, by_hand)
    torch.testing.assert_close(flow_matching_loss(net, o, a, r, eps), by_hand.mean())
    with pytest.raises(ValueError, match="unknown reduction"):
        flow_matching_loss(net, o, a, r, eps, reduce="sum")
