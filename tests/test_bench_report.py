"""Bench scripts at a tiny budget (real entry points) and the report functions on their JSON."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from om2p_lite import bench_report as br

BENCH = Path(__file__).resolve().parent.parent / "bench"
TINY = ["--sizes", "16x1", "--repeats", "1", "--warmup", "0", "--threads", "1",
        "--device", "cpu"]


def _bench(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    _bench("sampling_latency").main([*TINY, "--out", str(out), "--batches", "1,8",
                                     "--agents", "1,2", "--rounds", "1",
                                     "--diffusion-steps", "3"])
    _bench("train_step_cost").main([*TINY, "--out", str(out), "--batch", "8",
                                    "--flow-steps", "2", "--diffusion-steps", "3", "--rounds", "1"])
    _bench("scaling").main([*TINY, "--out", str(out), "--agents", "2,4", "--batch", "8",
                            "--batches", "8,16", "--rounds", "1"])
    return out


def test_every_script_writes_json_with_provenance(results: Path):
    loaded = br.load_results(results)
    assert set(loaded) == {"sampling_latency_cpu", "train_step_cost_cpu", "scaling_cpu"}
    for payload in loaded.values():
        m = payload["meta"]
        for key in ("device", "torch", "threads", "command", "git_commit", "date", "repeats"):
            assert key in m, key
        assert m["threads"] == 1 and m["clock"] == "cpu"  # one thread on a CPU: CPU time
    assert "profiler" in loaded["train_step_cost_cpu"]["meta"]["memory_measure"]


def test_latency_table_holds_ratios_to_the_mlp(results: Path):
    payload = br.load_results(results)["sampling_latency_cpu"]
    table = br.latency_table(payload)
    assert list(table.columns[:3]) == ["mlp_us", "mlp", "meanflow_1"]
    assert table["meanflow_1_lean"].isna().tolist() == [False, False, True, True]
    assert "diffusion_3" in table.columns and "flow_20" in table.columns
    assert (table["mlp"] == 1.0).all()
    assert all(r["seconds"] == r["cpu_s"] and r["wall_s"] > 0 for r in payload["results"])
    row = next(r for r in payload["results"]
               if r["method"] == "flow_10" and r["batch"] == 8 and r["agents"] == 2)
    mlp = next(r for r in payload["results"]
               if r["method"] == "mlp" and r["batch"] == 8 and r["agents"] == 2)
    assert table.loc[("16x1", 2, 8), "flow_10"] == pytest.approx(
        row["seconds"] / mlp["seconds"])
    assert len(table) == 4  # 2 agent counts x 2 batches
    fig = br.latency_figure(payload, agents=2)
    assert len(fig.data) == len(table.columns) - 2  # no mlp_us, no lean row for 2 agents
    with pytest.raises(ValueError, match="no latency rows"):
        br.latency_figure(payload, agents=7)


def test_train_cost_table_has_every_method_and_positive_memory(results: Path):
    payload = br.load_results(results)["train_step_cost_cpu"]
    table = br.train_cost_table(payload)
    labels = {idx[2] for idx in table.index}
    assert labels == {"mf_jacobian", "mf_jvp", "mf_fd", "mf_zero", "flow_2", "diffusion_3"}
    assert (table["seconds"] > 0).all() and (table["peak_mib"] > 0).all()
    assert (table.xs("mf_fd", level="label")["time_vs_fd"] == 1.0).all()
    full = table.xs("full", level="kind")
    # the full step also holds a critic, its target and their Adam state
    assert (full["peak_mib"].values > table.xs("loss", level="kind")["peak_mib"].values).all()
    assert len(br.train_cost_figure(payload).data) == 2


def test_scaling_tables_and_figures(results: Path):
    payload = br.load_results(results)["scaling_cpu"]
    agents = br.scaling_table(payload, "vs_agents")
    assert list(agents.agents) == [2, 4] and agents.size_growth.tolist() == [1.0, 2.0]
    batch = br.scaling_table(payload, "vs_batch")
    assert list(batch.batch) == [8, 16]
    assert len(br.scaling_figure(payload, "vs_batch").data) == 3
    with pytest.raises(ValueError, match="sweep"):
        br.scaling_table(payload, "vs_seeds")


def test_targets_table_collects_checks(results: Path):
    targets = br.targets_table(br.load_results(results))
    assert {"target", "ratio", "met", "device"} <= set(targets.columns)
    assert "diffusion_3 / meanflow_1 >= 40" in set(targets.target)  # label names the steps
    assert set(targets.file) == {"sampling_latency_cpu", "train_step_cost_cpu"}


def test_latency_target_checks_use_the_stated_thresholds():
    mod = _bench("sampling_latency")
    rows = [{"size": "s", "agents": 1, "batch": 1024, "method": m, "seconds": s}
            for m, s in (("mlp", 1.0), ("meanflow_1", 1.1), ("flow_10", 8.5),
                         ("diffusion_50", 30.0))]
    checks = {c["target"]: c for c in mod.target_checks(rows, 50)}
    assert checks["meanflow_1 / mlp <= 1.15"]["met"] is True
    assert checks["flow_10 / meanflow_1 >= 8"]["met"] is False  # 8.5 / 1.1 = 7.7
    assert checks["diffusion_50 / meanflow_1 >= 40"]["ratio"] == pytest.approx(30 / 1.1)


def test_load_results_rejects_foreign_json(tmp_path: Path):
    (tmp_path / "x.json").write_text(json.dumps({"benchmark": "nope"}))
    with pytest.raises(ValueError, match="not a bench result"):
        br.load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="run_all"):
        br.load_results(tmp_path / "missing")


def test_bench_subcommand_is_registered():
    from om2p_lite.cli.main import build_parser

    args = build_parser().parse_args(["bench", "--budget", "smoke", "--only", "scaling"])
    assert args.budget == "smoke" and args.only == "scaling" and callable(args.func)


def test_population_bench_times_the_library_step(tmp_path: Path):
    """bench/population.py at a tiny budget: per-member throughput, the OM2P / TD3+BC update
    ratio with its FLOP ratio, and the targets, with provenance."""
    payload = _bench("population").main(
        ["--sizes", "16x1", "--members", "1,2", "--repeats", "1", "--warmup", "0",
         "--threads", "1", "--rounds", "1", "--batch", "8", "--compile-members", "0",
         "--baseline", "", "--device", "cpu", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "population_cpu.json").read_text())
    assert saved["benchmark"] == "population" and saved == json.loads(json.dumps(payload))
    rows = {r["members"]: r for r in saved["results"]}
    assert set(rows) == {1, 2} and rows[1]["vs_one_run"] == 1.0
    assert rows[2]["update_flops"] > rows[1]["update_flops"] > 0  # two members, twice the work
    assert all(r["om2p_vs_td3bc"] > 0 and r["flop_ratio"] > 1 for r in saved["results"])
    assert {c["met"] for c in saved["targets"]} <= {True, False} and saved["targets"]
    for key in ("git_commit", "command", "load_average_before", "matmul_peak_gflops"):
        assert key in saved["meta"], key
    assert not saved["meta"]["command"].startswith("/")  # repository-relative
    from om2p_lite.book.bench_report import population_table

    table = population_table(saved)
    assert list(table.index) == [("16x1", 1), ("16x1", 2)]
    assert table.loc[("16x1", 2), "vs_one_run"] == rows[2]["vs_one_run"]
    with pytest.raises(ValueError, match="expected a 'population' result"):
        population_table({"benchmark": "scaling"})


def test_population_bench_times_another_algorithm_alone(tmp_path: Path, monkeypatch):
    """--algo cql: the throughput rows time CQL's own step (CQL's update FLOPs, not OM2P's),
    with no OM2P-only columns or targets, in a file of its own beside OM2P's."""
    common = ["--sizes", "16x1", "--members", "1,2", "--repeats", "1", "--warmup", "0",
              "--threads", "1", "--rounds", "1", "--batch", "8", "--compile-members", "0",
              "--baseline", "", "--device", "cpu", "--out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", ["bench/population.py", *common, "--algo", "cql"])
    cql = _bench("population").main([*common, "--algo", "cql"])
    assert "--baseline '' --device" in cql["meta"]["command"]  # the empty argument is kept
    om2p = _bench("population").main(common)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["population_cpu.json",
                                                               "population_cql_cpu.json"]
    assert cql["meta"]["algo"] == "cql" and cql["targets"] == [] and cql["compile"] == []
    rows = {r["members"]: r for r in cql["results"]}
    assert {r["algo"] for r in cql["results"]} == {"cql"} and rows[1]["vs_one_run"] == 1.0
    assert "om2p_vs_td3bc" not in rows[1]
    assert rows[1]["update_flops"] != om2p["results"][0]["update_flops"]  # CQL's own step
    from om2p_lite.book.bench_report import population_table

    table = population_table(cql)
    assert list(table.columns) == ["ms_per_member_step", "vs_one_run"]
    with pytest.raises(SystemExit):  # argparse names the choices
        _bench("population").main([*common, "--algo", "sac"])


def test_peer_table_reads_a_peer_result():
    from om2p_lite.book.bench_report import peer_table

    payload = {"benchmark": "peer", "results": [
        {"candidate": "official", "threads": "jax", "steps_per_s": 1.6, "vs_official": 1.0,
         "peak_rss_mib": 2580},
        {"candidate": "ours-fd-t0", "threads": 0, "steps_per_s": 2.4, "vs_official": 1.5,
         "gflops_per_s": 80.0, "of_peak": 0.6, "peak_rss_mib": 660}]}
    table = peer_table(payload)
    assert table.loc["ours-fd-t0", "vs_official"] == 1.5
    assert pd.isna(table.loc["official", "gflops_per_s"])
    with pytest.raises(ValueError, match="expected a 'peer' result"):
        peer_table({"benchmark": "population"})


def test_first_critic_bench_times_both_paths_and_finds_the_same_updates(tmp_path: Path):
    """bench/first_critic.py at a tiny budget: per algorithm both paths timed, the same
    parameters after a few updates, and a JSON with its provenance."""
    payload = _bench("first_critic").main([*TINY, "--out", str(tmp_path), "--batch", "8",
                                           "--rounds", "1", "--algos", "td3bc,omar"])
    saved = json.loads((tmp_path / "first_critic_cpu.json").read_text())
    assert saved["benchmark"] == "first_critic" and saved == json.loads(json.dumps(payload))
    assert [r["algo"] for r in saved["results"]] == ["td3bc", "omar"]
    for r in saved["results"]:
        assert r["bitwise_same"] is True and r["first_critic_ms"] > 0
        assert r["ratio"] == pytest.approx(r["first_critic_ms"] / r["whole_ensemble_ms"])
    assert "git_commit" in saved["meta"] and saved["meta"]["members"] == 3
    table = br.first_critic_table(br.load_results(tmp_path)["first_critic_cpu"])
    assert list(table.index) == [("16x1", "td3bc"), ("16x1", "omar")]
    assert table["bitwise_same"].all() and (table["ratio"] > 0).all()
    with pytest.raises(ValueError, match="expected a 'first_critic' result"):
        br.first_critic_table({"benchmark": "scaling"})
