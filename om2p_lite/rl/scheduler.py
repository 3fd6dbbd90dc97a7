"""The grid's scheduler: an experiment's runs (``rl.spec``) → finished ones skipped, the rest
grouped into populations and trained here or on Dask, each run's ``result.json`` written.

Not the spec (``rl.spec``: the TOML file and its runs), the training loop
(``rl.train``) nor the run folder's files (``rl.rundir``). Every error of a run is
recorded in its folder and the others go on; runs another process holds are waited for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from om2p_lite.rl.agents import unread_fields
from om2p_lite.rl.cluster import check_dask_address, dask_client
from om2p_lite.rl.config import TrainConfig, stored_value
from om2p_lite.rl.population import population_key
from om2p_lite.rl.rundir import (
    RESULT_FREE,
    NonFiniteError,
    RunFileError,
    RunFolderBusy,
    check_folder,
    describe_os_error,
)
from om2p_lite.rl.spec import Run, load_experiment, results_root, runs_of
from om2p_lite.rl.train import finish_run, train_population
from om2p_lite.runtime.record import portable_text


class ExperimentFailed(RuntimeError):
    """Some runs of an experiment failed; the others finished and were written.

    ``failures`` maps run folder → error text; ``results`` holds the finished runs' results.
    """

    def __init__(self, failures: dict[str, str], results: list[dict[str, Any]], total: int):
        self.failures, self.results, self.total = failures, results, total
        listed = "; ".join(f"{k}: {v}" for k, v in failures.items())
        super().__init__(f"{len(failures)} of {total} runs failed: {listed}")


# ----------------------------------------------------------------------------- where a run stands


def stale_fields(result: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Config fields (outside ``rundir.RESULT_FREE``, and read by ``cfg.algo``: not in
    ``rl.agents.unread_fields``) whose value in ``result`` differs from ``cfg``; a field the
    result predates counts as its value then (``rl.config.stored_value``: action_layout
    reads as mpe2)."""
    stored = result["config"]
    ignored = set(RESULT_FREE) | unread_fields(cfg.algo)
    return sorted(k for k, v in dataclasses.asdict(cfg).items()
                  if k not in ignored and stored_value(stored, k) != v)


def finished_result(run: Run) -> dict[str, Any] | None:
    """The run's result if it finished with this config, None if it still has to run.

    Raises a ``ValueError`` when the folder holds a finished run made with other settings
    (so an edited experiment never passes old numbers off as new ones).
    """
    res = run.folder.read_result()
    if res is None:
        return None
    changed = stale_fields(res, run.cfg)
    if changed:
        raise ValueError(f"{run.folder.result_file}: made with other settings ({changed} "
                         f"differ). Fix: move that folder away, or give this experiment "
                         f"another results_dir or variant name")
    return res


def classify(run: Run) -> tuple[str, Any]:
    """Where a run stands, read from its folder: ("finished", its result), ("todo", None),
    or ("failed", the ``ValueError``): a result made with other settings, or a damaged file
    (a ``rundir.RunFileError``, which the plan refuses and the others record)."""
    try:
        res = finished_result(run)
    except ValueError as err:
        return "failed", err
    return ("todo", None) if res is None else ("finished", res)


# ----------------------------------------------------------------------------- training


def _error_text(err: BaseException) -> str:
    text = describe_os_error(err) if isinstance(err, OSError) else str(err)
    known = isinstance(err, (ValueError, OSError, RuntimeError))
    return portable_text(text if known else f"{type(err).__name__}: {text}")


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
                claims.enter_context(run.folder.claim())
            except Exception as err:  # noqa: BLE001 - every error of a run is recorded
                outcomes[run.out_dir] = _failure(run, err)
                continue
            state, value = classify(run)
            if state == "failed":  # finished meanwhile, with other settings
                outcomes[run.out_dir] = _outcome(run, "failed", error=_error_text(value))
            elif state == "todo":
                todo.append(run)
            else:
                outcomes[run.out_dir] = _outcome(run, "elsewhere", result=value)
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
        summaries = train_population([r.cfg for r in runs])
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
        run.folder.mark_failed(text)
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


def _claim_free(run: Run) -> bool:
    """Whether no other process claims the run now."""
    try:
        with run.folder.claim():
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
                    max_runs: int = 0, tasks: Sequence[str] = (),
                    algos: Sequence[str] = (), qualities: Sequence[str] = ()) -> Plan:
    """Validate an experiment and its folders; sort its runs into finished and to do, the
    latter (the first ``max_runs`` if > 0) grouped into populations. ``tasks``, ``algos``
    and ``qualities`` keep only the runs on those tasks, of those algorithms and on data
    of those qualities (a share of one grid for one machine, e.g. MuJoCo on a CPU, CQL and
    OMAR on a GPU, or the slow algorithms on a few data sets first)."""
    if isinstance(path_or_doc, dict):
        doc, where = path_or_doc, "experiment"
    else:
        doc, where = load_experiment(path_or_doc), str(path_or_doc)
    runs = runs_of(doc, results_dir, overrides, where)
    runs = _share(runs, "task", tasks, where)
    runs = _share(runs, "algo", algos, where)
    runs = _share(runs, "quality", qualities, where)
    root = results_root(doc, results_dir)
    check_folder(root, "results_dir")
    for parent in sorted({str(Path(r.out_dir).parent) for r in runs}):
        check_folder(parent, "run folder")
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    todo = []
    for run in runs:
        state, value = classify(run)
        if state == "failed":
            if isinstance(value, RunFileError):
                raise value  # damaged: refused before anything runs (the folder stays as it is)
            failures[run.out_dir] = str(value)
        elif state == "todo":
            if Path(run.out_dir).is_dir():
                run.folder.check()  # a resume meets no damaged file mid-grid
            todo.append(run)
        else:
            results[run.out_dir] = value
    if not isinstance(max_runs, int) or max_runs < 0:
        raise ValueError(f"max_runs: must be an integer >= 0, got {max_runs!r}. Fix: use 0 "
                         f"for all runs")
    todo = todo[: max_runs or None]
    return Plan(runs, results, failures, todo, plan_populations(todo, max_members), root)


def _share(runs: list[Run], field: str, wanted: Sequence[str], where: str) -> list[Run]:
    """The runs whose config ``field`` is one of ``wanted`` (all when it is empty)."""
    if not wanted:
        return runs
    known = sorted({getattr(r.cfg, field) for r in runs})
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        plural = {"quality": "qualities"}.get(field, f"{field}s")
        raise ValueError(f"{plural}: {', '.join(unknown)} not in {where}'s grid. Fix: "
                         f"choose from {', '.join(known)}")
    return [r for r in runs if getattr(r.cfg, field) in wanted]


def run_experiment(path_or_doc: str | Path | dict[str, Any], *,
                   results_dir: str | Path | None = None,
                   overrides: dict[str, Any] | None = None, max_members: int = 16,
                   dask: str = "", progress: bool = False, max_runs: int = 0,
                   keep_checkpoints: bool = False, command: str | None = None,
                   poll_s: float = 2.0, tasks: Sequence[str] = (),
                   algos: Sequence[str] = (), qualities: Sequence[str] = (),
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
                           max_members=max_members, max_runs=max_runs, tasks=tasks,
                           algos=algos, qualities=qualities)
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
            state, value = classify(run)
            if state == "failed":
                failures[run.out_dir] = str(value)
            elif state == "finished":
                results[run.out_dir] = value
                say(f"{run.out_dir}: finished by another process")
            elif _claim_free(run):
                again.append(run)
            else:
                still.append(run)
        waiting = still
        if waiting:
            time.sleep(poll_s)
    return again
