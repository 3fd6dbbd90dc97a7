"""Dask for the grid: a private TLS cluster on 127.0.0.1 (``local:N``) or a running
scheduler's address with its credentials; every connection is encrypted.

Not the scheduler (``rl.scheduler``, which submits one population per Dask task): this only
checks addresses and makes clients. Dask is optional (``pip install 'om2p-lite[scale]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_dask_address(address: str) -> str:
    """``local:N`` with N >= 1, or a scheduler address (``tls://host:port``,
    ``tcp://host:port``, ``host:port``)."""
    if address.startswith("local:"):
        text = address.split(":", 1)[1]
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"dask {address!r}: not a worker count. Fix: write local:N with "
                             f"N >= 1 workers, or a scheduler address such as "
                             f"tcp://127.0.0.1:8786")
    elif ":" not in address:
        raise ValueError(f"dask {address!r}: neither local:N nor a scheduler address. Fix: "
                         f"write local:2, or e.g. tcp://127.0.0.1:8786")
    return address


def _import_dask() -> Any:
    """``dask.distributed``, or a ``ValueError`` with the install line."""
    try:
        import dask.distributed
    except ImportError as err:
        raise ValueError("dask: Dask is not installed. Fix: pip install 'om2p-lite[scale]'"
                         ) from err
    return dask.distributed


def _stop_http(dask_worker: Any = None, dask_scheduler: Any = None) -> None:
    """Close a Dask server's HTTP port (health, metrics: no credentials asked there)."""
    server = dask_worker if dask_worker is not None else dask_scheduler
    if getattr(server, "http_server", None) is not None:
        server.http_server.stop()


def local_client(n_workers: int, processes: bool = True) -> Any:
    """A Dask client of a new cluster on 127.0.0.1 that only this client and its workers can
    use: every connection is mutual TLS with credentials made for it alone
    (``Security.temporary``, kept in memory), and no HTTP port (no dashboard) stays open.

    ``processes`` = False runs the workers as threads of this process (tests); they still
    talk to the scheduler over TLS.
    """
    distributed = _import_dask()
    import dask
    from distributed.security import Security

    try:
        security = Security.temporary()
    except ImportError as err:
        raise ValueError("dask local:N: making its TLS credentials needs the cryptography "
                         "package. Fix: pip install 'om2p-lite[scale]'") from err
    # Dask always starts an HTTP server (health, metrics): no routes while it starts, then
    # closed; the workers' processes inherit the config through their nanny
    no_routes = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
    with dask.config.set(no_routes):
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=processes, protocol="tls://",
            security=security, host="127.0.0.1", dashboard_address=None,
            worker_dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
    client = None
    try:
        client = distributed.Client(cluster)  # takes the cluster's credentials
        client.run(_stop_http)
        client.run_on_scheduler(_stop_http)
    except BaseException:
        if client is not None:
            client.close()
        cluster.close()
        raise
    return client


def dask_security(address: str, ca: str | None = None, cert: str | None = None,
                  key: str | None = None) -> Any:
    """Credentials for a running scheduler at ``tls://HOST:PORT``: the CA's certificate,
    this client's certificate and (if not inside it) its key, PEM files. None without files:
    the client then reads Dask's own config (``distributed.comm.tls.*``)."""
    check_dask_address(address)
    flags = "--dask-tls-ca/--dask-tls-cert/--dask-tls-key"
    if not (ca or cert or key):
        if address.startswith("tls://"):
            _import_dask()
            from distributed.security import Security

            if Security().get_connection_args("client").get("ssl_context") is None:
                raise ValueError(f"dask {address!r}: no TLS credentials. Fix: pass {flags} "
                                 f"FILEs, or set distributed.comm.tls.ca-file and "
                                 f"distributed.comm.tls.client.cert/key in Dask's config")
        return None
    if address.startswith("local:"):
        raise ValueError(f"{flags}: local:N makes credentials of its own. Fix: drop them, "
                         f"or give the tls:// address of your own scheduler")
    if not address.startswith("tls://"):
        raise ValueError(f"{flags}: {address!r} is not a tls:// address, so the connection "
                         f"would not be encrypted. Fix: write it as tls://HOST:PORT")
    if not (ca and cert):
        raise ValueError(f"{flags}: TLS needs the CA certificate and this client's "
                         f"certificate. Fix: pass both --dask-tls-ca FILE and "
                         f"--dask-tls-cert FILE (and --dask-tls-key FILE unless the "
                         f"certificate file holds the key)")
    for flag, path in (("--dask-tls-ca", ca), ("--dask-tls-cert", cert),
                       ("--dask-tls-key", key)):
        if path and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file. Fix: name the PEM file")
    _import_dask()
    from distributed.security import Security

    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key or None,
                    require_encryption=True)


def dask_client(address: str, security: Any = None) -> Any:
    """A Dask client: ``local:N`` starts N single-threaded worker processes on 127.0.0.1
    that only this client can reach (``local_client``); anything else is a running
    scheduler's address, with ``security`` (``dask_security``) or Dask's own TLS config."""
    check_dask_address(address)
    if address.startswith("local:"):
        return local_client(int(address.split(":", 1)[1]))
    distributed = _import_dask()
    if security is None:
        dask_security(address)  # a tls:// address needs credentials in Dask's config
    try:
        return distributed.Client(address, timeout=30, security=security)
    except (OSError, TimeoutError, ValueError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"dask {address!r}: no scheduler answers there, or it refused these "
                         f"credentials ({text}). Fix: start one (dask scheduler), check "
                         f"the TLS files, or use local:N") from err

