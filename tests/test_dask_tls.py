"""``grid --dask local:N`` runs a cluster that only its own client and workers can use: every
listening socket asks for the run's TLS credentials (no plain, foreign or credential-less
client gets in, no HTTP port is left open), and ``--dask tls://...`` takes a user's own
cluster's credentials from ``--dask-tls-*`` files."""

from __future__ import annotations

import operator
import socket
import ssl
from pathlib import Path

import pytest

from om2p_lite.cli.main import main
from om2p_lite.rl.cluster import dask_client, dask_security, local_client

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def grid_client():
    """The client the grid starts for ``local:1``, its worker a thread here (tests: fast),
    still talking TLS to the scheduler."""
    client = local_client(1, processes=False)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


def listening(pid_sockets: list) -> set[tuple[str, int]]:
    import psutil

    return {(c.laddr.ip, c.laddr.port) for c in pid_sockets if c.status == psutil.CONN_LISTEN}


def answer_without_credentials(host: str, port: int) -> tuple[bytes, str]:
    """What a socket answers to a plain HTTP request, and how TLS without a client
    certificate ends ("refused" when the server ends the handshake)."""
    with socket.create_connection((host, port), timeout=5) as plain:
        plain.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        try:
            answer = plain.recv(64)
        except OSError:  # reset: the TLS server saw no handshake
            answer = b""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # no certificate of our own
    try:
        with socket.create_connection((host, port), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            return answer, f"answered {tls.recv(64)!r}"
    except ssl.SSLError:  # e.g. 'certificate required', or the connection ended
        return answer, "refused"


def test_the_grids_cluster_speaks_tls_and_its_own_client_works(grid_client) -> None:
    address = grid_client.scheduler.address
    workers = list(grid_client.scheduler_info()["workers"])
    assert address.startswith("tls://127.0.0.1:") and workers
    assert all(w.startswith("tls://127.0.0.1:") for w in workers), workers
    assert grid_client.submit(operator.mul, 6, 7, pure=False).result(timeout=60) == 42


@pytest.mark.parametrize("how", ["no credentials", "tcp://", "other credentials"])
def test_a_client_without_the_runs_credentials_is_refused(grid_client, how: str) -> None:
    from distributed.security import Security

    address = grid_client.scheduler.address
    kwargs = {"security": Security.temporary()} if how == "other credentials" else {}
    if how == "tcp://":
        address = address.replace("tls://", "tcp://")
    with pytest.raises((OSError, TypeError, TimeoutError)):
        intruder = distributed.Client(address, timeout=5, **kwargs)
        intruder.submit(Path.touch, Path("never"), pure=False).result(timeout=5)
    assert grid_client.submit(operator.add, 1, 1, pure=False).result(timeout=60) == 2


def test_no_listening_socket_takes_a_connection_without_credentials(grid_client) -> None:
    import psutil

    ports = listening(psutil.Process().net_connections("tcp"))
    scheduler_port = int(grid_client.scheduler.address.rsplit(":", 1)[1])
    worker_ports = {int(w.rsplit(":", 1)[1]) for w in grid_client.scheduler_info()["workers"]}
    assert {scheduler_port, *worker_ports} <= {p for _, p in ports}  # it sees them all
    for host, port in sorted(ports):
        assert host == "127.0.0.1"
        plain, tls = answer_without_credentials(host, port)
        assert plain == b"" and tls == "refused", (port, plain, tls)


def write_credentials(folder: Path) -> tuple[Path, Path, Path]:
    """A CA certificate, a certificate and its key as PEM files (a cluster's own)."""
    from distributed.security import Security

    sec = Security.temporary()
    files = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    for path, text in zip(files, (sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key),
                          strict=True):
        path.write_text(text)
    return files


def test_a_users_tls_cluster_is_used_with_the_credential_files(tmp_path: Path, dataset_path,
                                                               capsys) -> None:
    from distributed.security import Security

    exp = tmp_path / "exp.toml"
    exp.write_text(f'results_dir = "{tmp_path / "results"}"\n[grid]\nalgos = ["bc"]\n'
                   f'tasks = ["spread"]\nqualities = ["expert"]\nseeds = [0]\n[config]\n'
                   f'steps = 2\nbatch_size = 8\nhidden = 8\ndepth = 1\ncritic_hidden = 8\n'
                   f'critic_depth = 1\neval_episodes = 1\neval_max_steps = 3\n'
                   f'progress = false\nthreads = 1\ndataset = "{dataset_path}"\n')

    ca, cert, key = write_credentials(tmp_path)
    server = Security(tls_ca_file=str(ca), tls_scheduler_cert=str(cert),
                      tls_scheduler_key=str(key), tls_worker_cert=str(cert),
                      tls_worker_key=str(key), tls_client_cert=str(cert),
                      tls_client_key=str(key), require_encryption=True)
    with distributed.LocalCluster(n_workers=1, processes=False, protocol="tls://",
                                  security=server, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with dask_client(address, dask_security(address, str(ca), str(cert), str(key))) as c:
            assert c.submit(operator.mul, 3, 5, pure=False).result(timeout=60) == 15
        assert main(["grid", "--experiment", str(exp), "--dask", address, "--dask-tls-ca",
                     str(ca), "--dask-tls-cert", str(cert), "--dask-tls-key", str(key)]) == 0
        assert len(list((tmp_path / "results").rglob("result.json"))) == 1
        assert main(["grid", "--experiment", str(tmp_path / "x.toml"), "--dask", address]
                    ) == 2  # no credentials named, none in Dask's config: refused up front
        assert "no TLS credentials. Fix: pass --dask-tls-ca/" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dask", "local:2", "--dask-tls-ca", "ca.pem"], "local:N makes credentials of its own"),
    (["--dask", "tcp://127.0.0.1:8786", "--dask-tls-ca", "a", "--dask-tls-cert", "b"],
     "is not a tls:// address"),
    (["--dask", "tls://127.0.0.1:8786", "--dask-tls-cert", "b"], "needs the CA certificate"),
    (["--dask", "tls://127.0.0.1:8786", "--dask-tls-ca", "nope.pem", "--dask-tls-cert",
      "nope.pem"], "--dask-tls-ca nope.pem: no such file"),
    (["--dask-tls-ca", "a"], "given without --dask"),
])
def test_bad_tls_flags_get_one_line_and_exit_2(tmp_path: Path, argv: list[str], message: str,
                                               capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["grid", "--experiment", "x.toml", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Fix:" in err, err
    assert len(err.strip().splitlines()) == 1
