"""Reference samples of a seeded Cartesian flow (EGNN on DW-4) for tests/flows/test_flow.py.

Written once by the code before flows had a coordinate transform; the Cartesian path must keep
these samples: `python tests/data/make_flow_reference.py tests/data/dw4_flow_reference.json`.
"""
import json, sys, torch
from molsample.flows.distributions import base_distribution
from molsample.flows.sampler import FlowSampler
from molsample.nets import build_net, default_net_spec
from molsample.systems.cards import load_system
from molsample.training.rewards import make_reward
torch.set_num_threads(1)
system = load_system("dw4")
torch.manual_seed(0)
net = build_net(default_net_spec(system, hidden=16, n_layers=2))
for p in net.parameters():
    p.data.add_(0.05 * torch.randn_like(p))
base = base_distribution(system)
reward = make_reward(system, "temperature", kT0=1.25 * system.kT)
ws = FlowSampler(net, base, reward, method="midpoint", steps=8).sample(12, batch_size=5, generator=torch.Generator().manual_seed(3))
json.dump({"x": ws.x.double().tolist(), "logq": ws.logq.tolist(), "logw": ws.logw.tolist(), "energy": ws.energy.tolist()}, open(sys.argv[1], "w"))
