"""Experiments: a TOML grid of runs → validated configs → populations trained, finished runs
skipped, each run's ``result.json`` written beside its logs.

Not the training loop (``rl.train``, ``rl.population``) nor a command line (``cli.train``).

Experiment file (TOML)::

    results_dir = "data/results/main"   # run folders {task}/{quality}/{algo}/seed{seed} below
    [grid]
    algos = ["om2p", "bc"]; tasks = ["spread"]; qualities = ["expert"]; seeds = [0, 1, 2]
    [config]                             # TrainConfig fields shared by every run
    steps = 2000
    [algo.om2p]                          # per-algorithm fields
    eta = 1.0
    [variants]                           # optional: every grid cell once per variant,
    eta1 = { eta = 1.0 }                 # run folders {task}/{quality}/{algo}/{variant}/seed{s}
    eta0 = { eta = 0.0, algos = ["om2p"] }   # ``algos``: only these algorithms get it

An algorithm that no variant applies to runs once per cell, without a variant folder.
``[grid] exclude = ["spread/expert/cql"]`` (optional) drops those task/quality/algo cells.

A run's fields are ``[config]``, then ``[algo.NAME]``, then its variant, then the caller's
``overrides``; the grid sets algo, task, quality, seed and the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from om2p_lite.data.generate import versions
from om2p_lite.rl.config import FIELD_READERS, TrainConfig
from om2p_lite.rl.population import population_key, train_population
from om2p_lite.rl.rundir import (
    RESULT_FREE,
    NonFiniteError,
    RunFileError,
    RunFolder,
    RunFolderBusy,
    check_folder,
    describe_os_error,
)
from om2p_lite.runtime.record import (
    portable_command,
    portable_config,
    portable_text,
    provenance,
)

DEFAULT_RESULTS_DIR = "data/results/main"
TOP_LEVEL_KEYS = ("results_dir", "grid", "config", "algo", "variants")
GRID_KEYS = ("algos", "tasks", "qualities", "seeds")
GRID_OPTIONAL = ("exclude",)  # task/quality/algo cells of the product that do not run
VARIANT_ALGOS = "algos"  # a variant's own key: the algorithms it applies to (default: all)
# set by the grid for each run, so no table may set them
GRID_FIELDS = ("algo", "task", "quality", "seed", "out_dir")
VARIANT_NAME = re.compile(r"[A-Za-z0-9._=-]+")


class ExperimentFailed(RuntimeError):
    """Some runs of an experiment failed; the others finished and were written.

    ``failures`` maps run folder → error text; ``results`` holds the finished runs' results.
    """

    def __init__(self, failures: dict[str, str], results: list[dict[str, Any]], total: int):
        self.failures, self.results, self.total = failures, results, total
        listed = "; ".join(f"{k}: {v}" for k, v in failures.items())
        super().__init__(f"{len(failures)} of {total} runs failed: {listed}")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of an experiment: its validated config and variant name (None: no variants)."""

    cfg: TrainConfig
    variant: str | None = None

    @property
    def out_dir(self) -> str:
        return self.cfg.out_dir


# ----------------------------------------------------------------------------- reading


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, naming the file in any error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: experiment/config file does not exist. Fix: check "
                                f"the path (relative paths start from {Path.cwd().name}/)")
    if not path.is_file():
        raise ValueError(f"{path}: is a folder, not a TOML file. Fix: name the .toml file")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
        import tomli as tomllib
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be read ({err}). Fix: make it a readable UTF-8 "
                         f"TOML file") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}. Fix: correct the line named") from err


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Read and validate an experiment TOML file (unknown top-level keys are refused)."""
    return validate_experiment(read_toml(path), where=str(path))


def _bad(where: str, key: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"{where}: {key}: {problem}. Fix: {fix}")


def check_fields(values: Any, where: str, key: str) -> dict[str, Any]:
    """A table of TrainConfig fields: a table, no grid fields, every name and type valid."""
    if not isinstance(values, dict):
        raise _bad(where, key, f"must be a table of config fields, got {values!r}",
                   f"write it as [{key}] with lines such as steps = 100")
    grid_set = sorted(set(values) & set(GRID_FIELDS))
    if grid_set:
        raise _bad(where, key, f"sets {grid_set}, which the grid sets for each run",
                   "list algorithms, tasks, qualities and seeds in [grid]; results_dir "
                   "places the run folders")
    try:
        TrainConfig.from_dict(dict(values))
    except (TypeError, ValueError) as err:
        if "Fix:" in str(err):
            raise ValueError(f"{where}: {key}: {err}") from err
        raise _bad(where, key, str(err), "correct the field named") from err
    return values


def _str_list(grid: dict[str, Any], key: str, where: str) -> None:
    items = grid[key]
    kind = int if key == "seeds" else str
    if not isinstance(items, list) or not items:
        raise _bad(where, f"grid.{key}", f"must be a non-empty list, got {items!r}",
                   f"write {key} = [...]")
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool) or (kind is int and item < 0):
            want = "integers >= 0" if kind is int else "strings"
            raise _bad(where, f"grid.{key}", f"must hold {want}, got {item!r}",
                       f"write e.g. {key} = {[0, 1] if kind is int else ['spread']}")
    dup = sorted({str(i) for i in items if items.count(i) > 1})
    if dup:
        raise _bad(where, f"grid.{key}", f"lists {dup} more than once",
                   "list each value once (runs with equal values share one folder)")


def validate_experiment(doc: Any, where: str = "experiment") -> dict[str, Any]:
    """Check an experiment document's structure; return it unchanged.

    Raises a ``ValueError`` naming the file, the key, the problem and the fix.
    """
    if not isinstance(doc, dict):
        raise _bad(where, "document", f"must be a TOML table, got {type(doc).__name__}",
                   "pass the dict load_experiment returns")
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise _bad(where, "top level", f"unknown key(s) {unknown}",
                   f"use only {list(TOP_LEVEL_KEYS)} (TrainConfig fields go in [config])")
    if "results_dir" in doc and (not isinstance(doc["results_dir"], str)
                                 or not doc["results_dir"].strip()):
        raise _bad(where, "results_dir", f"must be a folder name, got {doc['results_dir']!r}",
                   'write e.g. results_dir = "data/results/main"')
    grid = doc.get("grid")
    if not isinstance(grid, dict):
        raise _bad(where, "grid", "missing or not a table",
                   f"add a [grid] table with {list(GRID_KEYS)}")
    extra = sorted(set(grid) - set(GRID_KEYS) - set(GRID_OPTIONAL))
    missing = [k for k in GRID_KEYS if k not in grid]
    if extra or missing:
        problem = ", ".join(([f"unknown key(s) {extra}"] if extra else [])
                            + ([f"missing {missing}"] if missing else []))
        raise _bad(where, "grid", problem,
                   f"[grid] takes {list(GRID_KEYS)} and optionally {list(GRID_OPTIONAL)}")
    for key in GRID_KEYS:
        _str_list(grid, key, where)
    if "exclude" in grid:
        _check_exclude(grid, where)
    check_fields(doc.get("config", {}), where, "config")
    algo_tables = doc.get("algo", {})
    if not isinstance(algo_tables, dict):
        raise _bad(where, "algo", "must hold one table per algorithm",
                   "write [algo.om2p] with its fields below")
    from om2p_lite.rl.agents import ALGORITHMS

    for name, values in algo_tables.items():
        if name not in ALGORITHMS:
            raise _bad(where, f"algo.{name}", "unknown algorithm", f"use one of {ALGORITHMS}")
        check_fields(values, where, f"algo.{name}")
    if "variants" in doc:
        variants = doc["variants"]
        if not isinstance(variants, dict) or not variants:
            raise _bad(where, "variants", "must be a non-empty table of named tables",
                       "write e.g. [variants.eta0] with eta = 0.0 below, or drop [variants]")
        for name, values in variants.items():
            if not VARIANT_NAME.fullmatch(name):
                raise _bad(where, f"variants.{name}", "name has characters other than "
                           "letters, digits and ._=-", "rename it, e.g. eta0.5 or dr=1e-3")
            if not isinstance(values, dict):
                check_fields(values, where, f"variants.{name}")
            only = values.get(VARIANT_ALGOS, grid["algos"])
            if (not isinstance(only, list) or not only
                    or any(a not in grid["algos"] for a in only)):
                raise _bad(where, f"variants.{name}.{VARIANT_ALGOS}",
                           f"must be a non-empty list of the grid's algorithms, got {only!r}",
                           f"write e.g. {VARIANT_ALGOS} = {grid['algos'][:1]}")
            check_fields({k: v for k, v in values.items() if k != VARIANT_ALGOS}, where,
                         f"variants.{name}")
    return doc


def _check_exclude(grid: dict[str, Any], where: str) -> None:
    """``exclude`` lists task/quality/algo cells of the grid, each once."""
    items = grid["exclude"]
    cells = {f"{t}/{q}/{a}" for t in grid["tasks"] for q in grid["qualities"]
             for a in grid["algos"]}
    if not isinstance(items, list) or any(i not in cells for i in items):
        bad = items if not isinstance(items, list) else [i for i in items if i not in cells]
        raise _bad(where, "grid.exclude", f"must list task/quality/algo cells of the grid, "
                   f"got {bad!r}", 'write e.g. exclude = ["spread/expert/cql"]')
    if len(set(items)) != len(items):
        raise _bad(where, "grid.exclude", "lists a cell more than once", "list each once")


def _variants_of(doc: dict[str, Any], algo: str) -> list[tuple[str | None, dict[str, Any]]]:
    """The variants (name, fields) that apply to ``algo``; [(None, {})] when none does."""
    found = [(name, {k: v for k, v in fields.items() if k != VARIANT_ALGOS})
             for name, fields in (doc.get("variants") or {}).items()
             if algo in fields.get(VARIANT_ALGOS, [algo])]
    return found or [(None, {})]


# ----------------------------------------------------------------------------- runs


def _runs(doc: dict[str, Any], results_dir: str | Path | None = None,
          overrides: dict[str, Any] | None = None, where: str = "experiment") -> list[Run]:
    validate_experiment(doc, where)
    overrides = dict(check_fields(overrides or {}, where, "overrides"))
    root = Path(results_dir if results_dir is not None
                else doc.get("results_dir", DEFAULT_RESULTS_DIR))
    # seed-major order: a grid cut short still has every cell at its first seeds
    return [_run(doc, root, task, quality, algo, seed, name, fields, overrides, where)
            for seed in doc["grid"]["seeds"]
            for task, quality, algo, name, fields in experiment_cells(doc)]


def experiment_cells(doc: dict[str, Any]) -> list[tuple[str, str, str, str | None,
                                                        dict[str, Any]]]:
    """(task, quality, algo, variant, its fields) of every cell the grid runs, in grid
    order, seeds aside: the one expansion of [grid], exclude and [variants]."""
    grid, excluded = doc["grid"], set(doc["grid"].get("exclude", []))
    return [(t, q, a, name, fields) for t in grid["tasks"] for q in grid["qualities"]
            for a in grid["algos"] if f"{t}/{q}/{a}" not in excluded
            for name, fields in _variants_of(doc, a)]


def _run(doc: dict[str, Any], root: Path, task: str, quality: str, algo: str, seed: int,
         name: str | None, fields: dict[str, Any], overrides: dict[str, Any],
         where: str) -> Run:
    """One run: ``[config]`` | ``[algo.NAME]`` | variant | overrides, validated."""
    out = RunFolder.of(root, task, quality, algo, seed, name).path
    values = (dict(doc.get("config", {})) | dict(doc.get("algo", {}).get(algo, {}))
              | dict(fields) | overrides)
    values |= {"algo": algo, "task": task, "quality": quality, "seed": seed,
               "out_dir": str(out)}
    try:
        cfg = TrainConfig.from_dict(values).validate()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: run {out}: {err}") from err
    return Run(cfg, name)


def experiment_runs(doc: dict[str, Any], results_dir: str | Path | None = None,
                    overrides: dict[str, Any] | None = None) -> list[TrainConfig]:
    """Every run of an experiment document as a validated ``TrainConfig`` (seed-major)."""
    return [run.cfg for run in _runs(doc, results_dir, overrides)]


def read_result(out_dir: str | Path) -> dict[str, Any] | None:
    """A run folder's ``result.json`` (checked by ``rundir.read_run_file``), None if it has
    none; a damaged one raises ``rundir.RunFileError`` rather than being run over."""
    return RunFolder(out_dir).read_result()


def stale_fields(result: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Config fields (outside ``rundir.RESULT_FREE``, and read by ``cfg.algo``: ``FIELD_READERS``)
    whose value in ``result`` differs from ``cfg``; a field the result predates counts as
    its default."""
    stored = result["config"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    ignored = set(RESULT_FREE) | {k for k, algos in FIELD_READERS.items()
                                  if cfg.algo not in algos}
    return sorted(k for k, v in dataclasses.asdict(cfg).items()
                  if k not in ignored and stored.get(k, defaults[k]) != v)


def finished_result(run: Run) -> dict[str, Any] | None:
    """The run's result if it finished with this config, None if it still has to run.

    Raises a ``ValueError`` when the folder holds a finished run made with other settings
    (so an edited experiment never passes old numbers off as new ones).
    """
    res = read_result(run.out_dir)
    if res is None:
        return None
    changed = stale_fields(res, run.cfg)
    if changed:
        raise ValueError(f"{RunFolder(run.out_dir).result_file}: made with other settings "
                         f"({changed} differ). Fix: move that folder away, or give this experiment "
                         f"another results_dir or variant name")
    return res


# ----------------------------------------------------------------------------- training


def record(summary: dict[str, Any], command: str | None = None,
           variant: str | None = None) -> dict[str, Any]:
    """The JSON-able result of a finished run, with everything needed to reproduce it
    (paths repository-relative)."""
    cfg = portable_config(summary["config"])
    final = summary["final"] or {}
    prov = provenance(seed=cfg["seed"], command=command)
    prov["device"] = summary["device"]
    dataset = dict(summary.get("dataset") or {})
    if dataset.get("command"):
        dataset["command"] = portable_command(dataset["command"])
    return {"task": cfg["task"], "quality": cfg["quality"], "algo": cfg["algo"],
            "variant": variant, "seed": cfg["seed"], "return": final.get("return"),
            "return_std": final.get("return_std"), "normalised": final.get("normalised"),
            "wall_s": round(summary["wall_s"], 2), "s_per_step": summary["s_per_step"],
            "population": summary.get("population", 1),  # members sharing s_per_step
            "evals": summary["evals"], "config": cfg, "dataset": dataset,
            "provenance": prov, "versions": versions()}


def finish_run(summary: dict[str, Any], command: str | None = None,
               variant: str | None = None, keep_checkpoint: bool = True) -> dict[str, Any]:
    """Record a finished run; write ``result.json`` (atomically) into its folder."""
    result = record(summary, command, variant)
    out = summary["config"].get("out_dir")
    if out:
        RunFolder(out).write_result(result, keep_checkpoint)
    return result


def _error_text(err: BaseException) -> str:
    text = describe_os_error(err) if isinstance(err, OSError) else str(err)
    known = isinstance(err, (ValueError, OSError, RuntimeError))
    return portable_text(text if known else f"{type(err).__name__}: {text}")


def _train_group(cfgs: list[TrainConfig]) -> list[dict[str, Any]]:
    """Train runs of equal ``population_key`` as one population; one summary per run."""
    return train_population(cfgs)


@contextlib.contextmanager
def claim_run(out_dir: str | Path) -> Iterator[None]:
    """Claim a run for this process from before training until its ``result.json`` is
    written (the trainer owns the folder only while it trains). A second claimant gets
    ``rundir.RunFolderBusy``; a claim left by a killed process is taken over."""
    with RunFolder(out_dir).claim():
        yield


def train_members(runs: list[Run], command: str | None = None,
                  keep_checkpoints: bool = False) -> list[dict[str, Any]]:
    """Claim the runs, train those not finished as one population, write each finished
    member's ``result.json`` while still claimed.

    Never raises: one outcome per run, ``{"out_dir", "status": "done" | "elsewhere" |
    "stopped" | "failed" | "busy", "result", "error"}``, where ``elsewhere`` is a run another
    process finished meanwhile and ``busy`` one that another process holds.
    """
    outcomes: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as claims:
        todo = []
        for run in runs:
            try:
                claims.enter_context(claim_run(run.out_dir))
            except Exception as err:  # noqa: BLE001 - every error of a run is recorded
                outcomes[run.out_dir] = _failure(run, err)
                continue
            try:
                res = finished_result(run)
            except ValueError as err:  # finished meanwhile, with other settings
                outcomes[run.out_dir] = _outcome(run, "failed", error=_error_text(err))
                continue
            if res is None:
                todo.append(run)
            else:
                outcomes[run.out_dir] = _outcome(run, "elsewhere", result=res)
        for outcome in _train_and_record(todo, command, keep_checkpoints):
            outcomes[outcome["out_dir"]] = outcome
    return [outcomes[r.out_dir] for r in runs]


def _train_and_record(runs: list[Run], command: str | None,
                      keep: bool) -> list[dict[str, Any]]:
    """Train ``runs`` as one population and record them. A member whose training became
    non-finite fails alone (the others continue from their checkpoints); any other error of
    a population is retried member by member, so one bad member does not sink the rest."""
    if not runs:
        return []
    try:
        summaries = _train_group([r.cfg for r in runs])
    except Exception as err:  # noqa: BLE001 - every error of a run is recorded, not raised
        bad = sorted(set(getattr(err, "members", []) or []))
        if isinstance(err, NonFiniteError) and bad:
            rest = [r for i, r in enumerate(runs) if i not in bad]
            failed = [_failure(runs[i], err) for i in bad]
            return failed + _train_and_record(rest, command, keep)
        if len(runs) > 1:
            return [o for r in runs for o in _train_and_record([r], command, keep)]
        return [_failure(runs[0], err)]
    outcomes = []
    for run, summary in zip(runs, summaries, strict=True):
        if not summary.get("finished", True):
            outcomes.append(_outcome(run, "stopped", step=summary.get("step")))
            continue
        try:
            result = finish_run(summary, command, run.variant, keep)
        except Exception as err:  # noqa: BLE001
            outcomes.append(_failure(run, err))
            continue
        outcomes.append(_outcome(run, "done", result=result))
    return outcomes


def _outcome(run: Run, status: str, **fields: Any) -> dict[str, Any]:
    return {"out_dir": run.out_dir, "status": status, "result": None, "error": None} | fields


def _failure(run: Run, err: BaseException) -> dict[str, Any]:
    """The outcome of a run that raised: ``busy`` if another process holds it, else
    ``failed`` (and its folder's ``status.json`` says so)."""
    text = _error_text(err)
    if isinstance(err, RunFolderBusy):
        return _outcome(run, "busy", error=text)
    if not isinstance(err, RunFileError):  # a damaged file: its folder is left as it is
        RunFolder(run.out_dir).mark_failed(text)
    return _outcome(run, "failed", error=text)


def plan_populations(runs: Iterable[Run], max_members: int = 16) -> list[list[Run]]:
    """Group runs by ``population_key`` (first appearance order), at most ``max_members``
    per population."""
    if not isinstance(max_members, int) or isinstance(max_members, bool) or max_members < 1:
        raise ValueError(f"max_members: must be an integer >= 1, got {max_members!r}. "
                         f"Fix: use e.g. 16 (1 trains every run alone)")
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(population_key(run.cfg), []).append(run)
    return [members[i:i + max_members] for members in groups.values()
            for i in range(0, len(members), max_members)]


# ----------------------------------------------------------------------------- running


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


def _execute(groups: list[list[Run]], client: Any, command: str | None,
             keep: bool) -> Iterable[list[dict[str, Any]]]:
    """Train each population here or as one Dask task each; yield outcomes as they come."""
    if client is None:
        for group in groups:
            yield train_members(group, command, keep)
        return
    from dask.distributed import as_completed

    futures = {client.submit(train_members, group, command, keep, pure=False): group
               for group in groups}
    for fut in as_completed(futures):
        try:
            yield fut.result()
        except Exception as err:  # noqa: BLE001 - a worker died: its members failed
            yield [_failure(run, err) for run in futures[fut]]


def _claim_free(out_dir: str) -> bool:
    """Whether no other process claims the run now."""
    try:
        with claim_run(out_dir):
            return True
    except RunFolderBusy:
        return False
    except OSError:
        return True  # let the run itself report the folder's problem


@dataclasses.dataclass
class Plan:
    """What an experiment has to do: its runs, those finished, failed (made with other
    settings) and still to do, and the populations the latter train in."""

    runs: list[Run]
    results: dict[str, dict[str, Any]]
    failures: dict[str, str]
    todo: list[Run]
    populations: list[list[Run]]
    root: Path  # the results folder

    def headline(self) -> str:
        """'N runs, F finished, T to do' (and how many were made with other settings)."""
        stale = f", {len(self.failures)} made with other settings" if self.failures else ""
        return (f"{len(self.runs)} runs, {len(self.results)} finished, "
                f"{len(self.runs) - len(self.results) - len(self.failures)} to do{stale}")


def plan_experiment(path_or_doc: str | Path | dict[str, Any], *,
                    results_dir: str | Path | None = None,
                    overrides: dict[str, Any] | None = None, max_members: int = 16,
                    max_runs: int = 0, tasks: Sequence[str] = ()) -> Plan:
    """Validate an experiment and its folders; sort its runs into finished and to do, the
    latter (the first ``max_runs`` if > 0) grouped into populations. ``tasks`` keeps only
    the runs on those tasks (a share of one grid for one machine, e.g. MuJoCo on a CPU)."""
    if isinstance(path_or_doc, dict):
        doc, where = path_or_doc, "experiment"
    else:
        doc, where = load_experiment(path_or_doc), str(path_or_doc)
    runs = _runs(doc, results_dir, overrides, where)
    if tasks:
        known = sorted({r.cfg.task for r in runs})
        unknown = sorted(set(tasks) - set(known))
        if unknown:
            raise ValueError(f"tasks: {', '.join(unknown)} not in {where}'s grid. Fix: "
                             f"choose from {', '.join(known)}")
        runs = [r for r in runs if r.cfg.task in tasks]
    root = Path(results_dir if results_dir is not None
                else doc.get("results_dir", DEFAULT_RESULTS_DIR))
    check_folder(root, "results_dir")
    for parent in sorted({str(Path(r.out_dir).parent) for r in runs}):
        check_folder(parent, "run folder")
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    todo = []
    for run in runs:
        try:
            res = finished_result(run)
        except RunFileError:
            raise  # damaged: refused before anything runs (the folder stays as it is)
        except ValueError as err:
            failures[run.out_dir] = str(err)
            continue
        if res is None:
            if Path(run.out_dir).is_dir():
                RunFolder(run.out_dir).check()  # a resume meets no damaged file mid-grid
            todo.append(run)
        else:
            results[run.out_dir] = res
    if not isinstance(max_runs, int) or max_runs < 0:
        raise ValueError(f"max_runs: must be an integer >= 0, got {max_runs!r}. Fix: use 0 "
                         f"for all runs")
    todo = todo[: max_runs or None]
    return Plan(runs, results, failures, todo, plan_populations(todo, max_members), root)


def run_experiment(path_or_doc: str | Path | dict[str, Any], *,
                   results_dir: str | Path | None = None,
                   overrides: dict[str, Any] | None = None, max_members: int = 16,
                   dask: str = "", progress: bool = False, max_runs: int = 0,
                   keep_checkpoints: bool = False, command: str | None = None,
                   poll_s: float = 2.0, tasks: Sequence[str] = (),
                   dask_security: Any = None) -> list[dict[str, Any]]:
    """Run every unfinished run of an experiment as populations; return every run's result.

    Finished runs (valid ``result.json``) are skipped; the rest are grouped by
    ``population_key`` (at most ``max_members`` per process) and trained here or, with
    ``dask`` = ``local:N`` or a scheduler address (``dask_security``: its TLS credentials),
    one population per Dask task. Runs whose
    folder another process holds are taken up again once it lets go. Every error of a run is
    recorded (its folder's ``status.json``) and the others go on; at the end an
    ``ExperimentFailed`` lists the failures. ``max_runs`` > 0 trains only that many.
    """
    if dask:
        check_dask_address(dask)
    plan = plan_experiment(path_or_doc, results_dir=results_dir, overrides=overrides,
                           max_members=max_members, max_runs=max_runs, tasks=tasks)
    if plan.todo:
        try:
            plan.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"results_dir {plan.root}: cannot be made "
                             f"({describe_os_error(err)})") from err
    runs, results, failures, todo = plan.runs, plan.results, plan.failures, plan.todo
    say: Callable[[str], None] = (lambda text: print(text, flush=True)) if progress else \
        (lambda text: None)
    say(plan.headline())
    for out, err in failures.items():
        say(f"{out}: FAILED: {err}")
    client = dask_client(dask, dask_security) if dask and todo else None
    done = 0
    try:
        while todo:
            busy: list[Run] = []
            by_dir = {r.out_dir: r for r in todo}
            for outcomes in _execute(plan_populations(todo, max_members), client, command,
                                     keep_checkpoints):
                for o in outcomes:
                    if o["status"] == "busy":
                        busy.append(by_dir[o["out_dir"]])
                        say(f"{o['out_dir']}: held by another process; coming back to it")
                        continue
                    done += 1
                    head = f"[{done}/{len(by_dir)}] {o['out_dir']}:"
                    if o["status"] in ("done", "elsewhere"):
                        results[o["out_dir"]] = r = o["result"]
                        say(f"{head} return {r.get('return')}, {r.get('wall_s')} s"
                            + (" (finished by another process)" if o["status"] == "elsewhere"
                               else ""))
                    elif o["status"] == "stopped":
                        say(f"{head} stopped at step {o.get('step')} (stop_at); run again "
                            f"to finish")
                    else:
                        failures[o["out_dir"]] = o["error"]
                        say(f"{head} FAILED: {o['error']}")
            todo = _wait_for(busy, results, failures, poll_s, say)
            done = 0
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [results[r.out_dir] for r in runs if r.out_dir in results]
    if failures:
        say(f"failed: {len(failures)} of {len(runs)} runs: " + ", ".join(failures))
        raise ExperimentFailed(failures, ordered, len(runs))
    return ordered


def _wait_for(busy: list[Run], results: dict[str, dict[str, Any]], failures: dict[str, str],
              poll_s: float, say: Callable[[str], None]) -> list[Run]:
    """Wait until runs held by other processes are finished (their results are taken) or let
    go unfinished (returned, to run here)."""
    waiting = list(busy)
    if waiting:
        say(f"waiting for {len(waiting)} run(s) held by other processes")
    again = []
    while waiting:
        still = []
        for run in waiting:
            try:
                res = finished_result(run)
            except ValueError as err:
                failures[run.out_dir] = str(err)
                continue
            if res is not None:
                results[run.out_dir] = res
                say(f"{run.out_dir}: finished by another process")
            elif _claim_free(run.out_dir):
                again.append(run)
            else:
                still.append(run)
        waiting = still
        if waiting:
            time.sleep(poll_s)
    return again

