"""bench/peer.py without the official code: reading both programs' logs into steps per
second, the candidate list and its alternating order, the errors for missing official
paths, and the child-process runner's exit code, peak memory and timeout."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def peer():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("peer")


# the official train.csv as its CsvLogger writes it: metrics, the two time columns, step last
HEADER = ("training/actor/actor_loss,training/critic/critic_loss,time/epoch_time,"
          "time/total_time,step")
TIMES = {10: 119.66, 20: 128.15, 30: 136.02, 40: 144.71}


def write_official_csv(path: Path, times: dict[int, float]) -> Path:
    lines = [HEADER] + [f"-9.99,16.4,0.85,{t},{s}" for s, t in times.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_official_csv_gives_steps_per_second(peer, tmp_path):
    path = write_official_csv(tmp_path / "train.csv", TIMES)
    times = peer.official_times(path)
    assert times == TIMES
    assert peer.rate(times, 20, 40, path) == pytest.approx(20 / (TIMES[40] - TIMES[20]))


def test_official_csv_found_below_save_dir(peer, tmp_path):
    nested = tmp_path / "Debug" / "run_name"
    nested.mkdir(parents=True)
    write_official_csv(nested / "train.csv", TIMES)
    assert peer.find_official_csv(tmp_path) == nested / "train.csv"
    with pytest.raises(ValueError, match="expected one train.csv"):
        peer.find_official_csv(nested / "nothing_here")


def test_official_csv_errors(peer, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no 'step' and 'time/total_time'"):
        peer.official_times(path)
    path.write_text(HEADER + "\n[1, 2],16.4,0.85,128.1,20\n")  # a value with a comma
    with pytest.raises(ValueError, match="line 2 has 6 fields"):
        peer.official_times(path)


def test_ours_log_gives_steps_per_second(peer, tmp_path):
    rows = [{"step": 0, "kind": "eval", "return": -50.0, "wall_s": 3.0},
            {"step": 20, "kind": "train", "critic_loss": 1.0, "wall_s": 14.5},
            {"step": 40, "kind": "train", "critic_loss": 0.9, "wall_s": 26.25},
            {"step": 40, "kind": "eval", "return": -40.0, "wall_s": 30.0}]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    times = peer.ours_times(path)
    assert times == {20: 14.5, 40: 26.25}  # evaluation rows do not count
    assert peer.rate(times, 20, 40, path) == pytest.approx(20 / (26.25 - 14.5))


def test_rate_names_the_missing_step_and_refuses_no_time(peer, tmp_path):
    with pytest.raises(ValueError, match="no row for step 140.*Fix"):
        peer.rate(TIMES, 20, 140, tmp_path / "x")
    with pytest.raises(ValueError, match="time does not grow"):
        peer.rate({20: 5.0, 40: 5.0}, 20, 40, tmp_path / "x")


def test_parse_ours(peer):
    cands = peer.parse_ours("fd:1, zero:0,fd:2")
    assert [(c.estimator, c.threads) for c in cands] == [("fd", 1), ("zero", 0), ("fd", 2)]
    assert len({c.name for c in cands}) == 3 and not any(c.official for c in cands)
    assert len(peer.parse_ours(peer.DEFAULT_OURS)) == len(peer.DEFAULT_OURS.split(","))
    for bad, why in (("fd", "ESTIMATOR:THREADS"), ("jvp:1", "ESTIMATOR:THREADS"),
                     ("fd:-1", "ESTIMATOR:THREADS"), ("fd:x", "ESTIMATOR:THREADS"),
                     ("fd:1,fd:1", "twice"), (" , ", "empty")):
        with pytest.raises(SystemExit, match=f"--ours.*{why}.*Fix"):
            peer.parse_ours(bad)


def test_rounds_alternate(peer):
    cands = [peer.Candidate("official"), *peer.parse_ours("fd:1,zero:2")]
    first, second = peer.round_order(cands, 0), peer.round_order(cands, 1)
    assert first == cands and second == cands[::-1]
    assert peer.round_order(cands, 2) == first


def test_missing_official_paths_say_what_to_pass(peer):
    with pytest.raises(SystemExit) as err:
        peer.check_official(None, None, None, None)
    lines = str(err.value).splitlines()
    fields = ["--official-repo", "--official-python", "--official-runner", "--data-root"]
    assert [line.split(":")[0] for line in lines] == fields
    assert all("not given. Fix:" in line for line in lines)
    assert "github.com/lizr16/OM2P" in lines[0]


def test_wrong_official_paths_are_named(peer, tmp_path):
    repo = tmp_path / "OM2P"
    repo.mkdir()
    text = tmp_path / "not_a_python"
    text.write_text("")
    with pytest.raises(SystemExit) as err:
        peer.check_official(repo, text, tmp_path / "absent.py", tmp_path)
    msg = str(err.value)
    for field in ("--official-repo", "--official-python", "--official-runner", "--data-root"):
        assert f"{field}: " in msg
    assert msg.count("Fix:") == 4 and "main.py" in msg and "obs_0.npy" in msg


def test_good_official_paths_pass(peer, tmp_path):
    (tmp_path / "repo" / "agents").mkdir(parents=True)
    (tmp_path / "repo" / "main.py").write_text("")
    (tmp_path / "repo" / "agents" / "fql_meanfield.py").write_text("")
    runner = tmp_path / "run.py"
    runner.write_text("")
    seed_dir = tmp_path / "data" / peer.SEED_DIR
    seed_dir.mkdir(parents=True)
    (seed_dir / "obs_0.npy").write_bytes(b"")
    off = peer.check_official(tmp_path / "repo", Path(sys.executable), runner,
                              tmp_path / "data")
    cmd, env = peer.official_command(off, 140, 20, tmp_path / "save")
    assert env["OM2P_DATA_ROOT"] == str(off.data_root)
    assert env["OM2P_OFFICIAL_REPO"] == str(off.repo)
    assert "--offline_steps=140" in cmd and "--log_interval=20" in cmd
    assert "--agent.is_autograd=2" in cmd and "--eval_interval=0" in cmd


def test_ours_command_has_the_paper_size(peer, tmp_path):
    cand = peer.parse_ours("zero:2")[0]
    cmd, _ = peer.ours_command(cand, tmp_path / "d.npz", 140, 20, tmp_path / "run")
    flags = dict(zip(cmd[4::2], cmd[5::2], strict=True))  # after python -m om2p_lite train
    assert flags["--hidden"] == flags["--critic-hidden"] == str(peer.HIDDEN)
    assert flags["--depth"] == flags["--critic-depth"] == str(peer.DEPTH)
    assert flags["--estimator"] == "zero" and flags["--threads"] == "2"
    assert flags["--steps"] == "140" and flags["--log-every"] == "20"


def test_run_child_reports_exit_memory_and_timeout(peer, tmp_path):
    mib = 64
    res = peer.run_child([sys.executable, "-c", f"b = bytearray({mib} * 2**20); b[::4096] = "
                          f"b'x' * len(b[::4096]); raise SystemExit(3)"],
                         {}, tmp_path / "a.log", timeout=60, cwd=tmp_path)
    assert res["rc"] == 3 and not res["timed_out"]
    assert res["peak_rss_mib"] >= mib
    res = peer.run_child([sys.executable, "-c", "import time; time.sleep(60)"], {},
                         tmp_path / "b.log", timeout=0.5, cwd=tmp_path)
    assert res["timed_out"] and res["rc"] != 0 and res["wall_s"] < 30


def test_load_processes_start_and_stop(peer):
    procs = peer.start_load(2)
    assert all(p.poll() is None for p in procs)
    peer.stop_load(procs)
    assert all(p.returncode is not None for p in procs)


def test_summary_and_targets(peer):
    cands = [peer.Candidate("official"), *peer.parse_ours("fd:0,zero:1")]
    runs = [{"candidate": c, "steps_per_s": s, "peak_rss_mib": 100.0}
            for c, s in (("official", 1.0), ("official", 1.2), ("ours-fd-t0", 1.5),
                         ("ours-fd-t0", 1.9), ("ours-zero-t1", 2.0), ("ours-zero-t1", None))]
    rows = peer.summarise(cands, runs, {"fd": 3e10, "zero": 2e10}, peak=100.0)
    by = {r["candidate"]: r for r in rows}
    assert by["official"]["steps_per_s"] == pytest.approx(1.1)
    assert by["ours-fd-t0"]["vs_official"] == pytest.approx(1.7 / 1.1)
    assert by["ours-zero-t1"]["runs"] == 1
    assert by["ours-zero-t1"]["gflops_per_s"] == pytest.approx(2e10 * 2.0 / 1e9)
    assert by["ours-zero-t1"]["of_peak"] == pytest.approx(0.4)
    checks = peer.target_checks(rows, load=0)
    assert checks[0]["ratio"] == pytest.approx(2.0 / 1.1) and checks[0]["met"]
    assert "ours-zero-t1" in checks[0]["target"]
    default = [c for c in checks if "threads 0" in c["target"]]
    assert len(default) == 1 and default[0]["met"] == (1.7 / 1.1 >= peer.TARGET_RATIO)
