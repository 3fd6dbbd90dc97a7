"""``data download`` against a stand-in Hub on 127.0.0.1: a tiny set in the official layout
(``simple_spread/expert/seed_0_data/obs_i.npy``, 2-d forces) is fetched, checked, imported and
recorded; missing, truncated, inconsistent and unreachable files are refused in one line.

Every call runs ``python -m om2p_lite`` in a fresh process with HF_HOME in a temporary
folder, HF_ENDPOINT on the stand-in, no proxy and no token, under the socket audit hook of
``test_network_audit`` (a connection anywhere but the loopback fails the test).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from test_network_audit import SITECUSTOMIZE

pytest.importorskip("huggingface_hub")
pytest.importorskip("mpe2")

REPO = "zhuoran-li/offline_marl_dataset"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FOLDER = "simple_spread/expert/seed_0_data"
ROOT = Path(__file__).resolve().parents[1]


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def official_set(n_agents: int = 3, episodes: int = 2, length: int = 25) -> dict[str, bytes]:
    """A Spread set as the official code stores it: per-agent files, float64, 2-d forces."""
    rng = np.random.default_rng(0)
    files: dict[str, bytes] = {}
    n = episodes * length
    for i in range(n_agents):
        states = rng.normal(size=(episodes, length + 1, 18))
        files[f"obs_{i}.npy"] = npy_bytes(states[:, :-1].reshape(n, 18))
        files[f"next_obs_{i}.npy"] = npy_bytes(states[:, 1:].reshape(n, 18))
        files[f"acs_{i}.npy"] = npy_bytes(rng.uniform(-1, 1, size=(n, 2)))
        files[f"rews_{i}.npy"] = npy_bytes(rng.normal(size=n))
        files[f"dones_{i}.npy"] = npy_bytes(np.zeros(n))
    return {f"{FOLDER}/{k}": v for k, v in files.items()}


class FakeHub:
    """One data set repository at one commit, answering the few Hub calls a download makes:
    the revision's file list (``/api/datasets/{repo}/revision/{rev}``) and each file
    (``HEAD``/``GET /datasets/{repo}/resolve/{rev}/{path}``, with X-Repo-Commit and ETag).

    ``listed`` overrides what the file list says of a file (its true size and digest), so
    that the served bytes can be a truncated copy.
    """

    def __init__(self, files: dict[str, bytes], listed: dict[str, bytes] | None = None):
        self.files, self.listed = files, {**files, **(listed or {})}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def sibling(self, path: str) -> dict:
        data = self.listed[path]
        return {"rfilename": path, "size": len(data),
                "blobId": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest(),
                "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "pointerSize": 134}}

    def answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(f"{h.command} {path}")
        api = f"/api/datasets/{REPO}"
        resolve = f"/datasets/{REPO}/resolve/"
        if path in (api, f"{api}/revision/main", f"{api}/revision/{COMMIT}"):
            info = {"id": REPO, "sha": COMMIT, "private": False, "disabled": False,
                    "siblings": [self.sibling(p) for p in sorted(self.listed)]}
            return self.send(h, 200, json.dumps(info).encode(), body,
                             {"Content-Type": "application/json"})
        if path.startswith(f"{api}/revision/"):
            return self.send(h, 404, b"{}", body, {"X-Error-Code": "RevisionNotFound"})
        if path.startswith(resolve):
            rev, _, file = path[len(resolve):].partition("/")
            if rev not in ("main", COMMIT):
                return self.send(h, 404, b"", body, {"X-Error-Code": "RevisionNotFound"})
            if file not in self.files:
                return self.send(h, 404, b"", body, {"X-Error-Code": "EntryNotFound",
                                                     "X-Repo-Commit": COMMIT})
            data = self.files[file]
            return self.send(h, 200, data, body, {
                "X-Repo-Commit": COMMIT, "Content-Type": "application/octet-stream",
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"})
        return self.send(h, 404, b"", body, {"X-Error-Code": "RepoNotFound"})

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, data: bytes, body: bool,
             headers: dict[str, str]) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """The stand-in Hub serving one good set, plus a file of another set (never fetched)."""
    files = {**official_set(), "simple_tag/expert/seed_0_data/obs_0.npy": b"not fetched"}
    with FakeHub(files) as server:
        yield server


HUB_ENV = {"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_ETAG_TIMEOUT": "5",
           "HF_HUB_DOWNLOAD_TIMEOUT": "5", "NO_PROXY": "127.0.0.1,localhost"}


def _outside_env() -> dict[str, str]:
    """This process's environment without any Hub setting, token or proxy."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(
        ("HF_", "HUGGINGFACE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"))}


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run ``python -m om2p_lite data download ...`` in a fresh process, isolated from the
    user's Hub settings, under the socket audit hook."""
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "audit.log"

    def run(*args: str, endpoint: str) -> subprocess.CompletedProcess:
        env = {**_outside_env(), **HUB_ENV, "HF_HOME": str(tmp_path / "hf_home"),
               "HF_ENDPOINT": endpoint, "OM2P_AUDIT_LOG": str(log),
               "PYTHONPATH": os.pathsep.join([str(audit), str(ROOT)])}
        proc = subprocess.run([sys.executable, "-m", "om2p_lite", "data", "download",
                               "--endpoint", endpoint, "--out-dir", str(tmp_path / "out"),
                               *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert "process" in log.read_text()  # the hook ran in that process
        outside = [ln for ln in log.read_text().splitlines() if ln.startswith("OUTSIDE")]
        assert not outside, outside
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return run


@pytest.fixture
def main_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture) -> Iterator:
    """``om2p_lite.cli.main.main`` in this process, with a huggingface_hub imported afresh
    under the same isolated settings (restored afterwards) and connections outside the
    loopback refused."""
    import socket

    for key in list(os.environ):
        if key not in _outside_env():
            monkeypatch.delenv(key)
    for key, value in {**HUB_ENV, "HF_HOME": str(tmp_path / "hf_home")}.items():
        monkeypatch.setenv(key, value)
    for name in [m for m in sys.modules if m.split(".")[0] == "huggingface_hub"]:
        monkeypatch.delitem(sys.modules, name)  # read the settings above on import
    connect = socket.socket.connect

    def loopback_only(sock: socket.socket, address: object) -> None:
        assert isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1"), address
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)

    def run(*args: str, endpoint: str, offline: bool = False) -> tuple[int, str, str]:
        from om2p_lite.cli.main import main

        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
        for name in [m for m in sys.modules if m.split(".")[0] == "huggingface_hub"]:
            del sys.modules[name]  # a fresh import per call: the settings of this call
        capsys.readouterr()
        code = main(["data", "download", "--endpoint", endpoint, "--out-dir",
                     str(tmp_path / "out"), *args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return code, out, err

    yield run
    for name in [m for m in sys.modules if m.split(".")[0] == "huggingface_hub"]:
        del sys.modules[name]  # then monkeypatch puts back the modules there were before


def one_error_line(code: int, err: str) -> str:
    """The CLI refused: exit 2 and exactly one line on stderr, 'error: ...'."""
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_download_imports_validates_and_records_checksums(hub: FakeHub, run_cli,
                                                         tmp_path: Path) -> None:
    """The real entry point in a fresh process: nothing connects outside the loopback."""
    from om2p_lite.data import load_dataset

    proc = run_cli(endpoint=hub.url)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "official-spread-expert-s0.npz"
    ds = load_dataset(out)  # validates every field
    assert ds.obs.shape == (50, 3, 18) and ds.actions.shape == (50, 3, 2)  # the force itself
    assert len(ds.episode_bounds()) == 2 and ds.metadata["action_layout"] == "force-xy"
    assert ds.metadata["reward_variant"] == "omar"
    assert ds.metadata["source"] == f"{REPO}@{COMMIT}/{FOLDER}"
    prov = json.loads((tmp_path / "out" / "official-spread-expert-s0.provenance.json")
                      .read_text())
    assert prov["commit"] == COMMIT and prov["revision"] == "main"
    assert prov["endpoint"] == hub.url and prov["dataset_checksum"] == ds.metadata["checksum"]
    assert len(prov["files"]) == 15  # 3 agents x 5 kinds
    assert {f["path"]: f["sha256"] for f in prov["files"]} == {
        p: hashlib.sha256(b).hexdigest() for p, b in hub.files.items() if p.startswith(FOLDER)}
    assert "data download" in prov["command"] and prov["date"]
    assert f"--revision {COMMIT}" in proc.stdout
    fetched = {r.split()[1] for r in hub.requests if r.startswith("GET /datasets/")}
    assert fetched and all(FOLDER in r for r in fetched)  # the other set's file: never


def test_a_second_download_skips_and_a_cut_short_cache_is_refused(hub: FakeHub, main_cli,
                                                                  tmp_path: Path) -> None:
    """An existing output is never replaced; a partial file in the cache (an interrupted
    copy, a full disk) is not taken as complete on the next call; --force-download
    repairs it."""
    from om2p_lite.data import load_dataset

    code, _, err = main_cli(endpoint=hub.url)
    assert code == 0, err
    out = tmp_path / "out" / "official-spread-expert-s0.npz"
    before, n_requests = out.read_bytes(), len(hub.requests)
    code, stdout, _ = main_cli("--revision", "v9", endpoint=hub.url)
    assert code == 0 and "skip" in stdout and COMMIT in stdout
    assert out.read_bytes() == before and len(hub.requests) == n_requests  # no request

    checksum = load_dataset(out).metadata["checksum"]
    prov = out.with_suffix(".provenance.json")
    out.unlink()
    prov.unlink()
    blob = next((tmp_path / "hf_home").rglob("obs_1.npy")).resolve()
    blob.write_bytes(blob.read_bytes()[:-40])
    line = one_error_line(*main_cli(endpoint=hub.url)[::2])
    assert "obs_1.npy" in line and "partial" in line and "--force-download" in line
    assert not out.exists() and not prov.exists()
    assert main_cli("--force-download", endpoint=hub.url)[0] == 0
    assert load_dataset(out).metadata["checksum"] == checksum


def _drop(files: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if not k.endswith("/" + name)}


def _replace(files: dict[str, bytes], name: str, data: bytes) -> dict[str, bytes]:
    return {k: (data if k.endswith("/" + name) else v) for k, v in files.items()}


GOOD = official_set()
ACS_2 = GOOD[f"{FOLDER}/acs_2.npy"]
CASES = {
    # file absent from the commit's list: refused before anything is fetched
    "missing": (dict(files=_drop(GOOD, "dones_1.npy")), ["dones_1.npy", "missing"]),
    # the server sends fewer bytes than the Hub's list says the file has
    "truncated": (dict(files=_replace(GOOD, "acs_2.npy", ACS_2[:-24]), listed=GOOD),
                  ["acs_2.npy", "truncated or partial", "--force-download"]),
    # the file itself is cut short: its .npy header needs more bytes than it holds
    "short-npy": (dict(files=_replace(GOOD, "acs_2.npy", ACS_2[:-24])),
                  ["acs_2.npy", "header says (50, 2)", "truncated"]),
    # a well-formed file whose header disagrees with its siblings' row count
    "rows": (dict(files=_replace(GOOD, "rews_1.npy", npy_bytes(np.zeros(49)))),
             ["rews_1.npy", "(49,)", "N = 50 rows"]),
    # a NaN in an observation: refused before import, naming the file and row
    "nan": (dict(files=_replace(GOOD, "obs_2.npy", npy_bytes(np.where(
        np.arange(50 * 18).reshape(50, 18) == 7 * 18 + 3, np.nan, 0.0)))),
        ["obs_2.npy", "non-finite", "row 7"]),
    # a set the repository does not hold: the sets it does hold are listed
    "no-set": (dict(files={k.replace("expert", "medium"): v for k, v in GOOD.items()}),
               ["simple_spread/expert/seed_0_data: no such set",
                "simple_spread/medium/seed_0_data", "--folder"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_sets_are_refused_in_one_line_and_write_nothing(case: str, main_cli,
                                                           tmp_path: Path) -> None:
    server_args, words = CASES[case]
    with FakeHub(**server_args) as bad:
        line = one_error_line(*main_cli(endpoint=bad.url)[::2])
    for word in words:
        assert word in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    if case in ("missing", "no-set"):
        assert not any(r.startswith("GET /datasets/") for r in bad.requests)


def test_unreachable_offline_and_unknown_revision_are_one_line(hub: FakeHub,
                                                               main_cli) -> None:
    import socket

    with socket.socket() as s:  # a port on the loopback that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = one_error_line(*main_cli(endpoint=closed)[::2])
    assert "cannot reach" in line and closed in line and "Fix:" in line
    line = one_error_line(*main_cli(endpoint=hub.url, offline=True)[::2])
    assert "HF_HUB_OFFLINE" in line and "Fix:" in line
    line = one_error_line(*main_cli("--revision", "v9", endpoint=hub.url)[::2])
    assert "--revision" in line and "'v9'" in line
    assert not any(r.startswith("GET /datasets/") for r in hub.requests)
