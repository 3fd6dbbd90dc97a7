"""Nothing connects or listens outside the loopback: ``grid --dask local:2`` runs with an
audit hook (Python's ``sys.addaudithook``) in every process, the Dask workers included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded by every Python process started with this folder on PYTHONPATH (site imports
# ``sitecustomize``): records each socket connect / bind / sendto address outside the
# loopback, and that the hook ran in this process at all.
SITECUSTOMIZE = '''
import ipaddress, os, socket, sys

LOG = os.environ["OM2P_AUDIT_LOG"]


def _local(address):
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:  # a host name: resolving it already looks outward
        return False


def _write(line):
    with open(LOG, "a") as fh:
        fh.write(line + "\\n")


def _hook(event, args):
    if event in ("socket.connect", "socket.bind", "socket.sendto"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) == socket.AF_UNIX:
            return
        if not _local(address) or (event == "socket.bind" and address[1:2] == (8787,)):
            _write(f"OUTSIDE {os.getpid()} {event} {address!r}")
        else:
            _write(f"local {os.getpid()} {event} {address!r}")


_write(f"process {os.getpid()} {' '.join(sys.argv)[:80]}")
sys.addaudithook(_hook)
'''

EXPERIMENT = '''results_dir = "{root}"
[grid]
algos = ["bc"]
tasks = ["spread"]
qualities = ["expert"]
seeds = [0, 1]
[config]
steps = 4
batch_size = 8
hidden = 8
depth = 1
critic_hidden = 8
critic_depth = 1
eval_episodes = 2
eval_max_steps = 5
progress = false
threads = 1
dataset = "{data}"
'''


def audit_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment that loads the audit hook in every Python process, and its log."""
    hook = tmp_path / "audit"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "audit.log"
    root = Path(__file__).resolve().parents[1]
    return os.environ | {"OM2P_AUDIT_LOG": str(log),
                         "PYTHONPATH": os.pathsep.join([str(hook), str(root), *filter(
                             None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}, log


def test_the_audit_sees_outside_addresses_and_the_dashboard_port(tmp_path: Path) -> None:
    env, log = audit_env(tmp_path)
    code = ("import socket\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.connect(('192.0.2.1', 9))\n"  # TEST-NET address; a UDP connect sends nothing
            "socket.socket().bind(('0.0.0.0', 0))\n"
            "socket.socket().bind(('127.0.0.1', 0))\n"
            "s = socket.socket()\n"
            "try:\n    s.bind(('127.0.0.1', 8787))\nexcept OSError:\n    pass\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    outside = [x.split(" ", 2)[2] for x in log.read_text().splitlines()
               if x.startswith("OUTSIDE")]
    assert outside == ["socket.connect ('192.0.2.1', 9)", "socket.bind ('0.0.0.0', 0)",
                       "socket.bind ('127.0.0.1', 8787)"]


def test_grid_on_local_dask_stays_on_the_loopback(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    from om2p_lite.data import save_dataset
    from om2p_lite.data.generate import make_dataset

    data = save_dataset(make_dataset("spread", "expert", 0, n_transitions=200)[0],
                        tmp_path / "spread.npz")
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.format(root=tmp_path / "results", data=data))
    env, log = audit_env(tmp_path)
    res = subprocess.run([sys.executable, "-m", "om2p_lite", "grid", "--experiment", str(exp),
                          "--dask", "local:2", "--max-members", "1"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list((tmp_path / "results").rglob("result.json"))) == 2
    lines = log.read_text().splitlines()
    processes = [x for x in lines if x.startswith("process ")]
    assert len(processes) >= 3, lines  # the grid and both workers ran the hook
    assert any(x.startswith("local ") for x in lines), lines  # it saw Dask's own sockets
    outside = [x for x in lines if x.startswith("OUTSIDE")]
    assert not outside, outside
