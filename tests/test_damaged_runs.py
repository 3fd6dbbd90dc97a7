"""Resume and grid meet a damaged or foreign file with one ``error:`` line naming the file,
the problem and the fix, exit code 2, and the run folder exactly as it was; a full disk
while a checkpoint is written leaves the previous checkpoint intact; a dataset whose
``.npy`` header declares an absurd shape is refused before anything is allocated."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from om2p_lite.cli.main import main
from om2p_lite.rl import rundir

KEYS = {"algo": "bc", "task": "spread", "quality": "expert", "seed": 0}  # the grid's own
SHARED = {"steps": 3, "batch_size": 8, "hidden": 8, "depth": 1, "critic_hidden": 8,
          "critic_depth": 1, "eval_episodes": 2, "eval_max_steps": 5, "log_every": 1,
          "progress": False, "threads": 1}
RUN = Path("results/spread/expert/bc/seed0")  # the run folder, below a test's tmp_path


def flags(data: Path, **extra) -> list[str]:
    """``train`` flags of the one run (the grid's run, as a command line)."""
    values = KEYS | SHARED | {"dataset": str(data)} | extra
    return [x for k, v in values.items()
            for x in (f"--{k.replace('_', '-')}", str(v).lower() if isinstance(v, bool)
                      else str(v))]


def experiment(tmp_path: Path, data: Path) -> Path:
    """An experiment whose single run is ``tmp_path / RUN``."""
    def toml(v: object) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    path = tmp_path / "exp.toml"
    path.write_text(f'results_dir = "{tmp_path / "results"}"\n[grid]\nalgos = ["bc"]\n'
                    f'tasks = ["spread"]\nqualities = ["expert"]\nseeds = [0]\n[config]\n'
                    + "".join(f"{k} = {toml(v)}\n" for k, v in SHARED.items())
                    + f'dataset = "{data}"\n')
    return path


@pytest.fixture(scope="module")
def templates(tmp_path_factory, dataset_path: Path) -> dict[str, Path]:
    """Two run folders trained once: ``stopped`` at step 2 (checkpoint, log, config) and
    ``finished`` (plus result.json); each test damages a copy."""
    root = tmp_path_factory.mktemp("runs")
    folder = root / "work"
    assert main(["train", *flags(dataset_path, stop_at=2), "--out-dir", str(folder)]) == 0
    shutil.copytree(folder, root / "stopped")
    assert main(["train", *flags(dataset_path), "--out-dir", str(folder)]) == 0
    shutil.copytree(folder, root / "finished")
    return {"stopped": root / "stopped", "finished": root / "finished"}


def place(template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / RUN
    shutil.copytree(template, folder)
    return folder


def digest(folder: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file and folder below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _edit_checkpoint(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        blob = torch.load(folder / "checkpoint.pt", weights_only=True)
        edit(blob)
        torch.save(blob, folder / "checkpoint.pt")
    return damage


def _edit_log(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        rows = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]
        (folder / "log.jsonl").write_text("".join(json.dumps(edit(r)) + "\n" for r in rows))
    return damage


def _result_return_string(folder: Path) -> None:
    res = json.loads((folder / "result.json").read_text())
    (folder / "result.json").write_text(json.dumps(res | {"return": "high"}))


def _drop_step(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "step"}


DAMAGES = {  # name: (template, damage, file named, words of the problem)
    "checkpoint_without_agent": ("stopped", _edit_checkpoint(lambda b: b.pop("agent")),
                                 "checkpoint.pt", "has no 'agent' entry"),
    "checkpoint_bad_rng": ("stopped", _edit_checkpoint(
        lambda b: b["rng"].update(batch=torch.zeros(10, dtype=torch.uint8))),
        "checkpoint.pt", "'rng.batch' is not a CPU random generator state"),
    "log_rows_are_lists": ("stopped", _edit_log(lambda r: list(r.values())), "log.jsonl",
                           "line 1 must be a JSON object"),
    "log_step_missing": ("stopped", _edit_log(_drop_step), "log.jsonl",
                         "line 1: 'step' must be an integer"),
    "log_step_string": ("stopped", _edit_log(lambda r: r | {"step": str(r["step"])}),
                        "log.jsonl", "line 1: 'step' must be an integer >= 0, got '0'"),
    "result_return_string": ("finished", _result_return_string, "result.json",
                             "'return' must be a number or null, got 'high'"),
}


@pytest.mark.parametrize("entry", ["train", "grid"])
@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damaged_run_file_is_refused_in_one_line_and_nothing_changes(
        case: str, entry: str, templates, dataset_path: Path, tmp_path: Path,
        capsys) -> None:
    template, damage, name, problem = DAMAGES[case]
    folder = place(templates[template], tmp_path)
    damage(folder)
    before = digest(folder)
    if entry == "train":
        argv = ["train", *flags(dataset_path), "--out-dir", str(folder)]
    else:
        argv = ["grid", "--experiment", str(experiment(tmp_path, dataset_path))]
    capsys.readouterr()
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {folder / name}: {problem}") and "Fix: " in line, line
    assert digest(folder) == before  # nothing written, deleted or cleaned up


def test_table_refuses_a_result_whose_return_is_a_string(templates, tmp_path: Path,
                                                         capsys) -> None:
    folder = place(templates["finished"], tmp_path)
    _result_return_string(folder)
    capsys.readouterr()
    assert main(["table", "--results", str(tmp_path / "results")]) == 2
    assert "'return' must be a number or null" in one_error_line(capsys)


def test_the_validator_takes_new_eval_keys_and_a_cut_off_last_line(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    rows = [{"step": 0, "kind": "eval", "return": -1.0, "returns": [-1.0, -2.0],
             "q_probe": 0.5, "q_pi_probe": 0.4, "mc_probe": 0.3},
            {"step": 1, "kind": "train", "critic_loss": 2.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 2, "ki')
    assert rundir.read_run_file(log) == rows  # a write cut off by a kill is dropped
    log.write_text('{"step": 0, "ki\n' + json.dumps(rows[1]) + "\n")
    with pytest.raises(rundir.RunFileError, match="line 1 is not valid JSON.*Fix: delete"):
        rundir.read_run_file(log)


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(
        templates, dataset_path: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    folder = place(templates["stopped"], tmp_path)
    ckpt = folder / "checkpoint.pt"
    previous = ckpt.read_bytes()
    real_open = open

    class FullDisk:
        """A file whose writes fail as on a full disk."""

        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return FullDisk(fh) if "checkpoint.pt" in str(file) and "w" in mode else fh

    monkeypatch.setattr(rundir, "open", full_disk_open, raising=False)
    capsys.readouterr()
    assert main(["train", *flags(dataset_path), "--out-dir", str(folder)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {ckpt}: No space left on device: checkpoint.pt was not "
                           f"replaced (the previous one, if any, is intact). Fix: free "
                           f"space"), line
    assert ckpt.read_bytes() == previous
    assert not list(folder.glob(".*.tmp"))  # no temporary file left behind
    monkeypatch.undo()  # space again: the rerun resumes from the intact checkpoint
    assert main(["train", *flags(dataset_path), "--out-dir", str(folder)]) == 0
    assert json.loads((folder / "result.json").read_text())["config"]["steps"] == 3


def lying_npz(source: Path, out: Path, rows: int) -> Path:
    """``source`` with the obs header declaring ``rows`` rows (data left as it was)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "obs.npy":
                with zin.open(info) as fp:
                    np.lib.format.read_magic(fp)
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                    start = fp.tell()
                import io

                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    head, {"descr": np.lib.format.dtype_to_descr(dtype),
                           "fortran_order": fortran, "shape": (rows, *shape[1:])})
                data = head.getvalue() + data[start:]
            zout.writestr(info.filename, data)
    return out


def test_a_header_declaring_an_absurd_shape_is_refused_before_any_allocation(
        dataset_path: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    bad = lying_npz(dataset_path, tmp_path / "data/lying.npz", rows=10**12)  # 196 TiB of obs
    before = digest(tmp_path / "data")
    capsys.readouterr()
    assert main(["data", "validate", str(bad)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"FAIL {bad}: field 'obs': its header "
                                               f"declares shape (1000000000000, "), out
    assert main(["train", *flags(bad), "--out-dir", str(tmp_path / "run")]) == 2
    assert "field 'obs': its header declares shape" in one_error_line(capsys)
    assert not list((tmp_path / "run").rglob("*")) and digest(tmp_path / "data") == before
    # control: the same rewrite keeping the true row count still loads
    from om2p_lite.data import load_dataset

    n = len(load_dataset(dataset_path))
    assert len(load_dataset(lying_npz(dataset_path, tmp_path / "true.npz", rows=n))) == n
