"""The train / evaluate / grid / table commands: bad input ends in one ``error:`` line and exit
code 2 (never a traceback), a failing run gives exit code 1 and a summary, and the grid lists
its populations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from om2p_lite.cli.main import main

TINY = ["--steps", "3", "--batch-size", "8", "--hidden", "8", "--depth", "1",
        "--critic-hidden", "8", "--critic-depth", "1", "--eval-episodes", "2",
        "--eval-max-steps", "5", "--progress", "false", "--threads", "1"]


def experiment(tmp_path: Path, data: Path, extra: str = "", seeds: str = "[0, 1]") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(f'results_dir = "{tmp_path / "results"}"\n'
                    f'[grid]\nalgos = ["bc"]\ntasks = ["spread"]\nqualities = ["expert"]\n'
                    f'seeds = {seeds}\n'
                    f'[config]\nsteps = 3\nbatch_size = 8\nhidden = 8\ndepth = 1\n'
                    f'critic_hidden = 8\ncritic_depth = 1\neval_episodes = 2\n'
                    f'eval_max_steps = 5\nprogress = false\nthreads = 1\n'
                    f'dataset = "{data}"\n{extra}')
    return path


def test_grid_dry_run_lists_populations_and_max_runs(tmp_path: Path, dataset_path,
                                                      capsys) -> None:
    exp = experiment(tmp_path, dataset_path, seeds="[0, 1, 2]")
    assert main(["grid", "--experiment", str(exp), "--dry-run", "--max-members", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 runs, 0 finished, 3 to do\npopulation 1 (2 members):\n")
    assert f"population 2 (1 member):\n  {tmp_path / 'results/spread/expert/bc/seed2'}" in out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
    assert main(["grid", "--experiment", str(exp), "--max-runs", "1"]) == 0
    capsys.readouterr()
    assert len(list((tmp_path / "results").rglob("result.json"))) == 1
    assert main(["grid", "--experiment", str(exp), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("3 runs, 1 finished, 2 to do\n")
    assert main(["grid", "--experiment", str(exp), "--dry-run", "--results-dir",
                 str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 runs, 0 finished, 3 to do\n") and "elsewhere/spread" in out
    with pytest.raises(SystemExit) as err:
        main(["grid", "--experiment", str(exp), "--max-members", "0"])
    assert err.value.code == 2 and "integer >= 1" in capsys.readouterr().err


def test_grid_failure_exit_code_and_summary(tmp_path: Path, dataset_path, capsys) -> None:
    exp = experiment(tmp_path, dataset_path, extra='[algo.bc]\ndata_budget = "smoke"\n')
    bad = tmp_path / "results/spread/expert/bc/seed1"
    bad.mkdir(parents=True)
    (bad / "config.json").mkdir()  # a folder where the run writes a file
    assert main(["grid", "--experiment", str(exp)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}: FAILED: " in captured.out and "config.json" in captured.out
    assert "error: 1 of 2 runs failed" in captured.err
    assert (tmp_path / "results/spread/expert/bc/seed0/result.json").exists()


@pytest.mark.parametrize("toml, match", [
    ('result_dir = "x"\n', "top level: unknown key(s) ['result_dir']. Fix: use only "
                           "['results_dir', "),
    ('[variants]\n"a/b" = {eta = 1.0}\n', "variants.a/b: name has characters"),
])
def test_grid_refuses_bad_files_without_traceback(tmp_path: Path, dataset_path, capsys,
                                                  toml: str, match: str) -> None:
    exp = experiment(tmp_path, dataset_path)
    exp.write_text(toml + exp.read_text())
    assert main(["grid", "--experiment", str(exp)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {exp}: ") and match in err


def test_grid_checks_dask_and_results_dir_before_anything_runs(tmp_path: Path, dataset_path,
                                                               capsys) -> None:
    exp = experiment(tmp_path, dataset_path)
    for address in ("local:0", "local:two", "nowhere"):
        assert main(["grid", "--experiment", str(exp), "--dask", address]) == 2
        assert f"dask {address!r}: " in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["grid", "--experiment", str(exp), "--results-dir",
                 str(blocker / "results")]) == 2
    assert f"needs {blocker} to be a folder, but it is a file" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_train_config_file_and_flags_are_type_checked(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[config]\nsteps = "five"\n')
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}: config: config field 'steps': expected an integer")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--steps", "five"])
    assert exit_.value.code == 2 and "--steps: invalid int value: 'five'" in \
        capsys.readouterr().err


def test_train_out_dir_that_is_a_file(tmp_path: Path, dataset_path, capsys) -> None:
    target = tmp_path / "run"
    target.write_text("")
    assert main(["train", "--algo", "bc", "--out-dir", str(target), "--dataset",
                 str(dataset_path), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"--out-dir {target}: is a file. Fix: move or delete {target}" in err


def test_train_records_relative_paths_and_command(tmp_path: Path, dataset_path, capsys,
                                                  monkeypatch) -> None:
    run = tmp_path / "run"
    argv = ["train", "--algo", "bc", "--out-dir", str(run), "--dataset", str(dataset_path),
            *TINY]
    monkeypatch.setattr(sys, "argv", ["om2p_lite/__main__.py", *argv])
    assert main(argv) == 0
    text = (run / "result.json").read_text()
    assert str(tmp_path) not in text
    prov = json.loads(text)["provenance"]
    assert prov["command"].startswith("python -m om2p_lite train --algo bc --out-dir run ")
    assert "--dataset spread.npz" in prov["command"]


def test_evaluate_bad_run_folders(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist. Fix:" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["evaluate", "--run", str(tmp_path / "file")]) == 2
    assert "is a file. Fix:" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "has no checkpoint.pt. Fix:" in capsys.readouterr().err


class _Marker:
    """Unpickling this runs code: it writes a file (what a hostile checkpoint would do)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path(self.path).write_text, ("ran",))


def test_evaluate_loads_checkpoints_as_data_only(tmp_path: Path, dataset_path,
                                                 capsys) -> None:
    import torch

    run = tmp_path / "run"
    assert main(["train", "--algo", "bc", "--out-dir", str(run), "--dataset",
                 str(dataset_path), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--episodes", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run"] == str(run) and report["step"] == 3
    ckpt = run / "checkpoint.pt"
    blob = torch.load(ckpt, weights_only=True)

    marker = tmp_path / "pwned"
    torch.save(blob | {"agent": _Marker(str(marker))}, ckpt)
    assert main(["evaluate", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ckpt}: ") and "refused" in err
    assert not marker.exists()  # nothing ran

    data = ckpt.read_bytes()
    for broken, what in ((data[: len(data) // 2], "truncated or corrupt"), (b"", "empty")):
        ckpt.write_bytes(broken)
        assert main(["evaluate", "--run", str(run)]) == 2
        assert what in capsys.readouterr().err


def test_module_prints_one_error_line_not_a_traceback(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text('results_dir = 3\n')
    res = subprocess.run([sys.executable, "-m", "om2p_lite", "grid", "--experiment",
                          str(exp)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: {exp}: results_dir: must be a folder name")


def test_two_grids_at_once_run_each_run_exactly_once(tmp_path: Path, dataset_path) -> None:
    exp = experiment(tmp_path, dataset_path, seeds="[0, 1, 2]")
    exp.write_text(exp.read_text().replace('algos = ["bc"]', 'algos = ["bc", "td3bc"]')
                   .replace("steps = 3", "steps = 20\nlog_every = 5"))
    cmd = [sys.executable, "-m", "om2p_lite", "grid", "--experiment", str(exp),
           "--max-members", "2"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    trained = [{line.split()[1].rstrip(":") for line in out.splitlines()
                if line.startswith("[") and "finished by another process" not in line}
               for out, _ in outs]
    runs = {str(p.parent) for p in (tmp_path / "results").rglob("result.json")}
    assert len(runs) == 6
    assert trained[0] | trained[1] == runs and not trained[0] & trained[1], trained
    for run in runs:
        rows = [json.loads(x) for x in (Path(run) / "log.jsonl").read_text().splitlines()]
        keys = [(r["kind"], r["step"]) for r in rows]
        assert keys == [("eval", 0), ("train", 5), ("train", 10), ("train", 15),
                        ("train", 20), ("eval", 20)], (run, keys)
        assert not (Path(run) / "status.json").exists() and not (Path(run) / ".lock").exists()


def test_grid_checkpoint_every_reaches_every_run(tmp_path):
    """`grid --checkpoint-every N` sets the resume-free checkpoint interval of every run."""
    from om2p_lite.cli.main import build_parser
    from om2p_lite.rl.scheduler import plan_experiment

    exp = tmp_path / "e.toml"
    exp.write_text(f'results_dir = "{tmp_path / "r"}"\n[grid]\nalgos = ["bc"]\n'
                   'tasks = ["spread"]\nqualities = ["expert"]\nseeds = [0, 1]\n')
    args = build_parser().parse_args(["grid", "--experiment", str(exp),
                                      "--checkpoint-every", "50", "--dry-run"])
    assert args.checkpoint_every == 50
    plan = plan_experiment(exp, overrides={"checkpoint_every": args.checkpoint_every})
    assert [r.cfg.checkpoint_every for r in plan.runs] == [50, 50]
    assert args.func(args) == 0


def test_grid_task_filter_keeps_one_share_and_refuses_unknown_tasks(tmp_path):
    """`grid --task T` plans only T's runs; a task outside the grid is a clear error."""
    import pytest

    from om2p_lite.rl.scheduler import plan_experiment

    exp = tmp_path / "e.toml"
    exp.write_text(f'results_dir = "{tmp_path / "r"}"\n[grid]\nalgos = ["bc"]\n'
                   'tasks = ["spread", "tag"]\nqualities = ["expert"]\nseeds = [0]\n')
    assert [r.cfg.task for r in plan_experiment(exp, tasks=["tag"]).runs] == ["tag"]
    assert len(plan_experiment(exp).runs) == 2
    with pytest.raises(ValueError, match="world not in .*Fix: choose from spread, tag"):
        plan_experiment(exp, tasks=["world"])


def test_grid_quality_filter_keeps_one_share_and_refuses_unknown_qualities(tmp_path, capsys):
    """`grid --quality Q` plans only the runs on Q's data (with --task and --algo too); a
    quality outside the grid is one line naming the choices, exit 2."""
    from om2p_lite.cli.main import main
    from om2p_lite.rl.scheduler import plan_experiment

    exp = tmp_path / "e.toml"
    exp.write_text(f'results_dir = "{tmp_path / "r"}"\n[grid]\nalgos = ["bc", "td3bc"]\n'
                   'tasks = ["spread", "tag"]\nqualities = ["random", "expert"]\n'
                   'seeds = [0]\n')
    runs = plan_experiment(exp, qualities=["expert"], tasks=["tag"], algos=["bc"]).runs
    assert [(r.cfg.algo, r.cfg.task, r.cfg.quality) for r in runs] == [("bc", "tag", "expert")]
    assert len(plan_experiment(exp, qualities=["random"]).runs) == 4
    assert main(["grid", "--experiment", str(exp), "--quality", "medium", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "qualities: medium not in" in err[0]
    assert "choose from expert, random" in err[0]
    assert main(["grid", "--experiment", str(exp), "--quality", "expert", "--task", "tag",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 0 finished, 2 to do" in out and "spread" not in out


def test_grid_algo_filter_keeps_one_share_and_refuses_unknown_algos(tmp_path, capsys):
    """`grid --algo A` plans only A's runs (with --task too); an algorithm outside the grid
    is one line naming the choices, exit 2."""
    from om2p_lite.cli.main import main
    from om2p_lite.rl.scheduler import plan_experiment

    exp = tmp_path / "e.toml"
    exp.write_text(f'results_dir = "{tmp_path / "r"}"\n[grid]\nalgos = ["bc", "td3bc"]\n'
                   'tasks = ["spread", "tag"]\nqualities = ["expert"]\nseeds = [0]\n')
    runs = plan_experiment(exp, algos=["td3bc"], tasks=["tag"]).runs
    assert [(r.cfg.algo, r.cfg.task) for r in runs] == [("td3bc", "tag")]
    assert main(["grid", "--experiment", str(exp), "--algo", "cql", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cql not in" in err[0] and "choose from bc, td3bc" in err[0]
