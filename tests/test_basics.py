"""Budgets, device choice, seeding, networks, samplers and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import om2p_lite as om
from om2p_lite.cli.main import main


def test_budgets_are_ordered_and_selected_by_env(monkeypatch):
    smoke, book, full = (om.get_budget(n) for n in ("smoke", "book", "full"))
    assert smoke.toy_steps < book.toy_steps < full.toy_steps
    monkeypatch.setenv("OM2P_BUDGET", "smoke")
    assert om.get_budget().name == "smoke"
    assert om.get_budget(toy_steps=7).toy_steps == 7
    with pytest.raises(ValueError, match="unknown budget 'huge'"):
        om.get_budget("huge")
    with pytest.raises(ValueError, match="unknown budget field"):
        om.get_budget("smoke", steps=3)


def test_pick_device(monkeypatch):
    monkeypatch.delenv("OM2P_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert om.pick_device().type == expected
    monkeypatch.setenv("OM2P_DEVICE", "cpu")
    assert om.pick_device() == torch.device("cpu")
    monkeypatch.setenv("OM2P_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="not a device name"):
        om.pick_device()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            om.pick_device("cuda")


def test_seeding_is_reproducible():
    om.seed_everything(3)
    a = torch.randn(5)
    gen = om.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    again = om.seed_everything(3)
    assert torch.equal(torch.randn(2, generator=gen), torch.randn(2, generator=again))
    with pytest.raises(ValueError, match="non-negative int"):
        om.seed_everything(-1)


def test_velocity_net_shapes_batched_and_unbatched():
    net = om.VelocityNet(4, 3, hidden=16, depth=2)
    o, x, r = torch.randn(5, 4), torch.randn(5, 3), torch.rand(5, 1)
    assert net(o, x, r, r).shape == (5, 3)
    assert net(o[0], x[0], r[0], r[0]).shape == (3,)
    with pytest.raises(ValueError, match="depth >= 1"):
        om.mlp(3, 2, depth=0)


def test_samplers_one_step_definition_and_range():
    net = om.VelocityNet(2, 3, hidden=16, depth=2)
    o, eps = torch.randn(7, 2), torch.randn(7, 3)
    a = om.sample_meanflow(net, o, 3, steps=1, eps=eps, clip=False)
    zeros, ones = torch.zeros(7, 1), torch.ones(7, 1)
    assert torch.allclose(a, eps + net(o, eps, zeros, ones))  # (eq-one-step)
    for k in (1, 4):
        assert om.sample_flow(net, o * 100, 3, k).abs().max() <= 1
        assert om.sample_meanflow(net, o * 100, 3, k).abs().max() <= 1
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        om.sample_flow(net, o, 3, steps=0)


def test_fit_toy_rejects_bad_input():
    data = torch.rand(10, 2)
    with pytest.raises(ValueError, match="unknown toy method"):
        om.fit_toy("gan", data)
    with pytest.raises(ValueError, match="Δr must be > 0"):
        om.fit_toy("meanflow", data, estimator="fd", dr=0.0)
    with pytest.raises(ValueError, match="4 numbers"):
        om.fit_toy("meanflow", data, xi=[1, 2])
    with pytest.raises(ValueError, match="unknown toy kind"):
        om.toy_joint_actions(10, "spiral")


def test_gaussian_policy_averages_modes_but_flow_does_not():
    data = om.toy_joint_actions(4000, "coordination", generator=torch.Generator().manual_seed(0))
    mse = om.fit_toy("mse", data, steps=300, batch=256, hidden=32, depth=2, lr=1e-2)
    a = mse.sample(10)
    assert a.norm(dim=1).max() < 0.2  # the regressor sits between the two modes


def test_cli_toy_and_clean_errors(capsys):
    assert main(["toy", "--budget", "smoke", "--steps", "20", "--method", "flow"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 20 and out["sliced_wasserstein"] > 0
    assert main(["toy", "--budget", "smoke", "--steps", "5", "--estimator", "fd",
                 "--dr", "-1"]) == 2
    assert "Δr must be > 0" in capsys.readouterr().err
    assert main(["info", "--budget", "nope"]) == 2


def _literal_dr_defaults(source: str) -> list[int]:
    """Lines of ``source`` that give a ``dr`` a number as its default: a parameter, a
    dataclass field or a ``--dr`` flag."""
    import ast

    def number(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, float)

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            pairs = [*zip(args.args[len(args.args) - len(args.defaults):], args.defaults,
                          strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
            lines += [d.lineno for a, d in pairs if a.arg == "dr" and number(d)]
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "dr" for t in targets) \
                    and number(node.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and node.args[0].value == "--dr":
            lines += [k.value.lineno for k in node.keywords
                      if k.arg == "default" and number(k.value)]
    return lines


def test_dr_default_is_written_once():
    """Every Δr default (config, toy trainer, estimator, loss, stacked nets, `toy --dr`) is
    ``flows.meanflow.DEFAULT_DR``: no library line gives a ``dr`` a number of its own."""
    import inspect

    from om2p_lite.book.toytrain import fit_toy
    from om2p_lite.cli.main import build_parser
    from om2p_lite.flows.meanflow import DEFAULT_DR, du_dr, meanflow_loss
    from om2p_lite.flows.stacked import stacked_du_dr
    from om2p_lite.rl.config import TrainConfig

    assert TrainConfig().dr == DEFAULT_DR
    for fn in (fit_toy, du_dr, meanflow_loss, stacked_du_dr):
        assert inspect.signature(fn).parameters["dr"].default is DEFAULT_DR, fn.__name__
    assert build_parser().parse_args(["toy"]).dr == DEFAULT_DR
    assert _literal_dr_defaults("def f(x, dr=1e-3): pass\nclass C:\n    dr: float = 1e-3\n"
                                "p.add_argument('--dr', type=float, default=1e-3)\n") \
        == [1, 3, 4]  # the check sees all three forms
    for path in Path(om.__file__).parent.rglob("*.py"):
        found = _literal_dr_defaults(path.read_text(encoding="utf-8"))
        assert not found, f"{path}:{found} writes a Δr default again: use DEFAULT_DR"


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "om2p_lite", "--help"], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0 and "toy" in res.stdout


def test_import_is_light():
    code = "import sys, om2p_lite; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "False"


def test_lazy_exports_resolve_to_the_same_object_every_time():
    import importlib
    import inspect

    for name, module in om._EXPORTS.items():
        mod = importlib.import_module(f"om2p_lite.{module}")  # as if imported first elsewhere
        first, second = getattr(om, name), getattr(om, name)
        assert first is second, name
        # a name is its module (om.plots) unless the module defines it (om.train, a function)
        expected = getattr(mod, name) if hasattr(mod, name) else mod
        assert first is expected, name
        assert inspect.ismodule(first) == (not hasattr(mod, name)), name


def test_git_commit_is_dirty_for_code_changes_but_not_for_written_results(tmp_path,
                                                                         monkeypatch):
    from om2p_lite.runtime.record import git_commit

    monkeypatch.delenv("OM2P_GIT_COMMIT", raising=False)
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "data" / "results").mkdir(parents=True)
    (tmp_path / "data" / "results" / "r.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sha = git_commit(tmp_path)
    assert len(sha) == 40
    (tmp_path / "data" / "results" / "r.json").write_text('{"return": 1}')  # a run's output
    assert git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{sha}-dirty"


def test_git_commit_of_a_copy_without_git_comes_from_the_sender(tmp_path, monkeypatch):
    """A tree exported without .git (a batch node) records the commit its sender names."""
    import pytest

    from om2p_lite.runtime.record import git_commit

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("OM2P_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == "unknown"
    monkeypatch.setenv("OM2P_GIT_COMMIT", "a" * 40)
    assert git_commit(tmp_path) == "a" * 40
    monkeypatch.setenv("OM2P_GIT_COMMIT", "b" * 40)  # a named commit wins over a stale .git
    assert git_commit(Path(__file__).parent) == "b" * 40
    monkeypatch.setenv("OM2P_GIT_COMMIT", "HEAD; rm -rf /")
    with pytest.raises(ValueError, match="OM2P_GIT_COMMIT"):
        git_commit(tmp_path)


def test_package_commit_is_read_once_so_a_loaded_machine_cannot_lose_it(monkeypatch):
    """A grid's later results keep the commit read at start, even if git then times out."""
    import subprocess as sp

    from om2p_lite.runtime import record

    monkeypatch.delenv("OM2P_GIT_COMMIT", raising=False)
    record._package_commit.cache_clear()
    first = record.git_commit()

    def timeout(*args, **kwargs):
        raise sp.TimeoutExpired(args[0], 120)

    monkeypatch.setattr(record.subprocess, "run", timeout)
    assert record.git_commit() == first
    record._package_commit.cache_clear()
    assert record.git_commit() == "unknown"  # what an uncached read under load gave
    record._package_commit.cache_clear()
