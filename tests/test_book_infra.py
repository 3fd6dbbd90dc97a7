"""Tests for the book's own tooling: the no-outputs check and the browser check's page list.

Not tests of the library or of the chapters (nbval runs those).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def write_notebook(path: Path, outputs: list, execution_count: int | None) -> Path:
    cell = {"cell_type": "code", "metadata": {}, "source": "1 + 1",
            "outputs": outputs, "execution_count": execution_count}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_no_outputs_check_passes_a_stripped_notebook(tmp_path: Path) -> None:
    check = load_script("check_no_outputs")
    clean = write_notebook(tmp_path / "clean.ipynb", [], None)
    assert check.main(["--worktree", str(clean)]) == 0


def test_no_outputs_check_names_each_offending_notebook(tmp_path: Path, capsys) -> None:
    check = load_script("check_no_outputs")
    output = {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
              "execution_count": 3}
    dirty = write_notebook(tmp_path / "dirty.ipynb", [output], 3)
    counted = write_notebook(tmp_path / "counted.ipynb", [], 7)
    assert check.main(["--worktree", str(dirty), str(counted)]) == 1
    printed = capsys.readouterr().out
    assert "dirty.ipynb" in printed and "1 output(s)" in printed
    assert "counted.ipynb" in printed and "execution_count 7" in printed


def test_book_notebooks_carry_no_outputs() -> None:
    check = load_script("check_no_outputs")
    if not list((REPO / "book").glob("*.ipynb")):
        pytest.skip("no chapter notebooks yet")
    assert check.main([]) == 0


def test_browser_check_opens_every_page_of_the_toc() -> None:
    browser_check = load_script("browser_check")
    pages = browser_check.toc_docnames(REPO / "_toc.yml")
    assert pages[0] == "book/intro"
    assert "book/00_what_is_om2p" in pages
    assert len(pages) == len(set(pages))
    missing = [p for p in pages
               if not any((REPO / f"{p}{ext}").is_file() for ext in (".md", ".ipynb"))]
    assert not missing, f"pages in _toc.yml without a source file: {missing}"


def test_toc_parser_walks_parts_and_sections(tmp_path: Path) -> None:
    browser_check = load_script("browser_check")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n"
                   "      - file: a.ipynb\n        sections:\n          - file: a1\n"
                   "  - caption: B\n    chapters:\n      - file: b\n")
    assert browser_check.toc_docnames(toc) == ["intro", "a", "a1", "b"]


# --- one repository URL, one setup cell (scripts/sync_setup.py, om2p_lite/book/launch.py) --

def repository_files() -> list[Path]:
    """Every file git tracks or would track (untracked, not ignored) in the repository."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split("\0") if name]


def test_repository_url_is_written_by_hand_once() -> None:
    sync = load_script("sync_setup")
    url = sync.repository_url(REPO / "pyproject.toml")
    hits: dict[str, int] = {}
    for path in repository_files():
        if not path.is_file():
            continue  # deleted in the work tree but still in the index
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if url in text:
            hits[str(path.relative_to(REPO))] = text.count(url)
    assert hits.pop("pyproject.toml") == 1
    # The remaining copies are written from pyproject by scripts/sync_setup.py ...
    generated = {"_config.yml"} | {str(p.relative_to(REPO))
                                   for p in (REPO / "book").glob("[0-9][0-9]_*.ipynb")}
    assert set(hits) <= generated, f"hand-written copies of {url}: {set(hits) - generated}"
    assert all(count == 1 for count in hits.values()), hits
    # ... and agree with it (a stale copy fails here, naming the fix).
    assert sync.main(["--check"]) == 0


def test_every_chapter_calls_the_setup_in_its_first_cell() -> None:
    sync = load_script("sync_setup")
    url = sync.repository_url(REPO / "pyproject.toml")
    chapters = sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb"))
    assert chapters
    for path in chapters:
        nb = json.loads(path.read_text(encoding="utf-8"))
        block, _ = sync.split_cell("".join(sync.first_code_cell(nb, path)["source"]))
        assert block == sync.setup_block(url, path.name[:2]), path.name
        assert block.splitlines()[-1] == f'setup_chapter("{path.name[:2]}")'


def test_sync_setup_rewrites_only_the_first_code_cell(tmp_path: Path) -> None:
    sync = load_script("sync_setup")
    (tmp_path / "pyproject.toml").write_text(
        '[project.urls]\nRepository = "https://example.org/a/b"\n')
    (tmp_path / "_config.yml").write_text("title: x\nrepository:\n  url: https://old/x\n"
                                          "  branch: main\n")
    (tmp_path / "book").mkdir()
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Title"]},
             {"cell_type": "code", "metadata": {}, "source": ["import torch\n", "x = 1"],
              "outputs": [], "execution_count": None},
             {"cell_type": "code", "metadata": {}, "source": ["y = 2"], "outputs": [],
              "execution_count": None}]
    nb_path = tmp_path / "book" / "07_demo.ipynb"
    nb_path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                   "nbformat_minor": 5}))
    root = ["--root", str(tmp_path)]
    assert sync.main([*root, "--check"]) == 1
    assert sync.main(root) == 0
    assert sync.main([*root, "--check"]) == 0
    assert "url: https://example.org/a/b\n  branch: main" in (tmp_path / "_config.yml").read_text()
    nb = json.loads(nb_path.read_text())
    first = "".join(nb["cells"][1]["source"])
    assert first == sync.setup_block("https://example.org/a/b", "07") + "\n\nimport torch\nx = 1"
    assert nb["cells"][0] == cells[0] and nb["cells"][2] == cells[2]
    # a second sync keeps the chapter's own lines once
    sync.main(root)
    assert json.loads(nb_path.read_text())["cells"][1]["source"] == nb["cells"][1]["source"]


def test_chapter_extras_follow_the_chapter_number() -> None:
    from om2p_lite.book.launch import chapter_extras

    assert chapter_extras("00") == chapter_extras("03") == ()
    assert chapter_extras("04") == chapter_extras(10) == ("envs",)
    with pytest.raises(ValueError, match="chapter number"):
        chapter_extras("intro")


def test_setup_outside_colab_names_a_missing_extra(monkeypatch, capsys) -> None:
    from om2p_lite.book import launch

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    report = launch.setup_chapter("02")
    assert not report.colab and not report.installed
    assert "chapter 02 needs no extra" in capsys.readouterr().out
    monkeypatch.setitem(launch.EXTRA_PROBES, "envs", "om2p_no_such_module")
    with pytest.raises(ImportError, match=r"extra\(s\) \['envs'\].*pip install -e '\.\[envs\]'"):
        launch.setup_chapter("05")


def test_setup_on_colab_pins_torch_installs_once_and_enters_book(tmp_path, monkeypatch,
                                                                 capsys) -> None:
    from om2p_lite.book import launch

    checkout = tmp_path / "om2p-lite"
    (checkout / "book").mkdir(parents=True)
    (checkout / ".git").mkdir()
    (checkout / "pyproject.toml").write_text("")
    calls: list[tuple[list[str], str]] = []

    def fake_pip(cmd, **kwargs):
        constraints = cmd[cmd.index("-c") + 1]
        calls.append((cmd, Path(constraints).read_text()))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv(launch.CHECKOUT_ENV, str(checkout))
    monkeypatch.setattr(launch.subprocess, "run", fake_pip)
    monkeypatch.setattr(launch, "_torch_version", lambda: "9.9.9+cu999")
    monkeypatch.chdir(tmp_path)

    report = launch.setup_chapter("04")
    assert report.installed and report.colab
    (cmd, constraints), = calls
    assert cmd[-4:-2] == ["-e", f"{checkout}[envs]"] and constraints == "torch==9.9.9+cu999\n"
    assert Path.cwd() == checkout / "book"
    out = capsys.readouterr().out
    assert "installed" in out and "kept torch 9.9.9+cu999" in out
    assert not launch.setup_chapter("05").installed  # same extras: pip is not run again
    assert launch.setup_chapter("02").installed  # the base install is a different stamp
    assert len(calls) == 2 and calls[1][0][-3] == str(checkout)
    assert (checkout / ".git" / launch.STAMP).read_text().split() == ["envs", "-"]
    assert sorted(p.name for p in checkout.iterdir()) == [".git", "book", "pyproject.toml"]


def test_setup_on_colab_without_a_clone_says_how_to_fix(tmp_path, monkeypatch) -> None:
    from om2p_lite.book import launch

    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv(launch.CHECKOUT_ENV, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="OM2P_CHECKOUT.*first cell"):
        launch.setup_chapter("01")


# --- make book: execution cache per budget, no finished-looking site after a failure ----

def mini_notebook(title: str, code: str) -> dict:
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [f"# {title}"]},
                      {"cell_type": "code", "metadata": {}, "source": [code], "outputs": [],
                       "execution_count": None}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def make_book(book: Path, budget: str) -> tuple[subprocess.CompletedProcess, float]:
    """`make book` in ``book`` with this repository's virtualenv (setup not redone)."""
    venv = REPO / ".venv"
    stamp = venv / ".setup-done"
    t0 = time.perf_counter()
    done = subprocess.run(["make", "-C", str(book), "book", f"VENV={venv}", f"OM2P_BUDGET={budget}",
                           "BOOK_DATA=:", "-o", str(stamp)], capture_output=True, text=True)
    return done, time.perf_counter() - t0


@pytest.mark.slow
def test_make_book_caches_per_budget_and_leaves_no_site_when_a_chapter_fails(
        tmp_path: Path, monkeypatch) -> None:
    """The real Makefile and _config.yml on a two-chapter book that logs each execution."""
    if not (REPO / ".venv" / ".setup-done").is_file():
        pytest.skip("needs `make setup` (the repository's .venv)")
    book = tmp_path / "mini"
    (book / "book").mkdir(parents=True)
    for name in ("Makefile", "_config.yml", "pyproject.toml"):
        shutil.copy(REPO / name, book / name)
    shutil.copytree(REPO / "book" / "_ext", book / "book" / "_ext")
    shutil.copy(REPO / "book" / "references.bib", book / "book" / "references.bib")
    (book / "book" / "intro.md").write_text("# Mini book\n\nTwo chapters.\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: book/01_a\n  - file: book/02_b\n")
    log = tmp_path / "executions.log"
    monkeypatch.setenv("MINI_LOG", str(log))
    code = ('import os\nopen(os.environ["MINI_LOG"], "a").write("{name} " + '
            'os.environ["OM2P_BUDGET"] + "\\n")\n')
    for name in ("a", "b"):
        nb = mini_notebook(name, code.replace("{name}", name))
        (book / "book" / f"0{'ab'.index(name) + 1}_{name}.ipynb").write_text(json.dumps(nb))

    def executions() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    first, _ = make_book(book, "smoke")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert executions() == ["a smoke", "b smoke"]
    assert (book / "_build" / "html" / "index.html").is_file()
    assert (book / "_build" / "smoke" / "_build" / ".jupyter_cache").is_dir()

    again, seconds = make_book(book, "smoke")
    assert again.returncode == 0, again.stdout[-3000:]
    assert executions() == ["a smoke", "b smoke"], "an unchanged chapter was executed again"
    assert seconds < 60

    other, _ = make_book(book, "book")  # another budget: its own cache, so both run
    assert other.returncode == 0, other.stdout[-3000:]
    assert executions()[2:] == ["a book", "b book"]
    assert (book / "_build" / "html").resolve() == (book / "_build/book/_build/html").resolve()

    broken = mini_notebook("b", code.replace("{name}", "b") + "raise RuntimeError('broken')")
    (book / "book" / "02_b.ipynb").write_text(json.dumps(broken))
    failed, _ = make_book(book, "smoke")
    assert failed.returncode != 0
    assert executions()[4:] == ["b smoke"], "only the changed chapter runs again"
    assert "book: FAILED at OM2P_BUDGET=smoke" in failed.stdout
    assert not (book / "_build" / "html").exists(), "a site was left after a failed build"
    assert not (book / "_build" / "smoke" / "_build" / "html").exists()
    assert (book / "_build" / "smoke" / "_build" / "html-failed").is_dir()


def test_toy_fit_progress_bar_is_opt_in_and_changes_nothing(capsys, monkeypatch) -> None:
    import tqdm.auto

    from om2p_lite.book.toys import toy_joint_actions
    from om2p_lite.book.toytrain import fit_toy

    shown: list[dict] = []
    real = tqdm.auto.tqdm

    def spy(*args, **kwargs):
        shown.append(kwargs)
        return real(*args, **{**kwargs, "disable": False})

    monkeypatch.setattr(tqdm.auto, "tqdm", spy)
    data = toy_joint_actions(256, "ring", generator=torch.Generator().manual_seed(0))
    kwargs = dict(steps=5, batch=16, hidden=8, depth=1, seed=0)
    quiet = fit_toy("flow", data, **kwargs)
    assert not shown and "step" not in capsys.readouterr().err
    loud = fit_toy("flow", data, progress=True, **kwargs)
    assert len(shown) == 1 and shown[0]["leave"] is False
    assert "flow toy" in capsys.readouterr().err
    assert loud.losses == quiet.losses  # the bar draws no random numbers


def test_environment_yml_installs_what_every_chapter_needs() -> None:
    import yaml

    from om2p_lite.book.launch import chapter_extras

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    project = [line for line in pip if line.startswith("-e .[")]
    assert len(project) == 1, pip
    extras = set(project[0].removeprefix("-e .[").removesuffix("]").split(","))
    needed = {"book"} | {e for p in (REPO / "book").glob("[0-9][0-9]_*.ipynb")
                         for e in chapter_extras(p.name[:2])}
    assert needed <= extras, f"environment.yml lacks the extra(s) {needed - extras}"


def test_toy_fit_trains_on_one_thread_and_restores_the_count(monkeypatch) -> None:
    from om2p_lite.book import toytrain
    from om2p_lite.book.toys import toy_joint_actions

    seen: list[int] = []
    real = toytrain.flow_matching_loss

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(toytrain, "flow_matching_loss", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = toy_joint_actions(64, "ring", generator=torch.Generator().manual_seed(0))
        toytrain.fit_toy("flow", data, steps=3, batch=8, hidden=8, depth=1)
        assert seen == [1, 1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --- stored toy experiments (om2p_lite/book/stored.py) --------------------------------------

def test_stored_result_is_read_only_for_its_own_settings(tmp_path: Path, capsys) -> None:
    from om2p_lite.book import stored
    from om2p_lite.runtime.budget import get_budget

    book, smoke = get_budget("book"), get_budget("smoke")
    spec = {"experiment": "demo", "seed": 0, "x": [1, 2]}
    runs: list[str] = []

    def run(tag: str):
        return lambda: runs.append(tag) or {"value": tag}

    assert stored.load_or_run("demo", spec, book, run("missing"), tmp_path) == {"value": "missing"}
    assert "does not exist" in capsys.readouterr().out
    path = stored.write_stored("demo", spec, {"value": "stored"}, book, 1.0, "cpu", tmp_path)
    assert path == tmp_path / "demo-book.json"
    assert stored.load_or_run("demo", spec, book, run("again"), tmp_path) == {"value": "stored"}
    out = capsys.readouterr().out
    assert "Read from " in out and "demo-book.json, made by" in out
    assert "`python -m om2p_lite.book.stored demo`" in out
    other = {**spec, "x": [1, 3]}
    assert stored.load_or_run("demo", other, book, run("other"), tmp_path) == {"value": "other"}
    assert "is for other settings" in capsys.readouterr().out
    assert stored.load_or_run("demo", spec, smoke, run("smoke"), tmp_path) == {"value": "smoke"}
    assert runs == ["missing", "other", "smoke"]
    doc = json.loads(path.read_text())
    assert doc["provenance"]["command"] == "python -m om2p_lite.book.stored demo"


@pytest.mark.parametrize("content", ["{not json", '{"spec": {}}', "[1, 2]"])
def test_a_damaged_stored_result_names_the_remake_command(tmp_path: Path, content: str) -> None:
    from om2p_lite.book import stored
    from om2p_lite.runtime.budget import get_budget

    (tmp_path / "demo-book.json").write_text(content)
    pattern = r"demo-book\.json.*om2p_lite\.book\.stored demo"
    with pytest.raises(stored.StoredResultError, match=pattern):
        stored.load_or_run("demo", {}, get_budget("book"), dict, tmp_path)


def test_xi_comparison_trains_every_variant_and_seed() -> None:
    from om2p_lite.book import stored
    from om2p_lite.runtime.budget import get_budget

    tiny = get_budget("smoke", toy_steps=4, toy_batch=16, toy_hidden=8, toy_depth=1,
                      n_samples=32, n_seeds=2, eval_every=2)
    variants = dict(list(stored.XI_COMPARE.items())[:2])
    result = stored.xi_comparison(tiny, variants)
    assert result["steps"] == [0, 2, 4]
    assert list(result["curves"]) == list(variants)
    assert all(len(runs) == 2 and all(len(r) == 3 for r in runs)
               for runs in result["curves"].values())


def chapter_settings(notebook: str, defines: str) -> dict:
    """Run the chapter's setup-free settings cell (the one defining ``defines``)."""
    import om2p_lite

    nb = json.loads((REPO / "book" / notebook).read_text(encoding="utf-8"))
    cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
                and f"{defines} =" in "".join(c["source"]))
    namespace = {"os": __import__("os"), "om": om2p_lite}
    exec(cell, namespace)  # the settings cell only assigns constants
    return namespace


def test_shipped_xi_comparison_matches_chapter_03_at_book_budget() -> None:
    from om2p_lite.book import stored
    from om2p_lite.runtime.budget import get_budget

    book = get_budget("book")
    path = stored.store_path("xi_comparison", book)
    doc = stored.read_stored(path, "xi_comparison")
    assert doc is not None, f"{path} missing: python -m om2p_lite.book.stored xi_comparison"
    ch = chapter_settings("03_timesteps.ipynb", "XI_COMPARE")
    want = stored.xi_spec(book, ch["XI_COMPARE"], ch["RATIO"], ch["TOY"], stored.XI_SEED)
    assert doc["spec"] == json.loads(json.dumps(want)), (
        "chapter 03 would retrain at `book`: its settings differ from the stored result's. "
        "Fix: python -m om2p_lite.book.stored xi_comparison")
    steps = list(range(0, book.toy_steps + 1, book.eval_every))
    assert doc["result"]["steps"] == steps
    assert all(len(runs) == book.n_seeds for runs in doc["result"]["curves"].values())


def test_book_data_makes_only_what_is_missing_or_stale(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    from om2p_lite.book import stored

    runs: list[str] = []
    settings = {"x": 1}

    def run(budget, device):
        runs.append(budget.name)
        return {"value": settings["x"]}

    demo = stored.StoredExperiment(spec=lambda budget: {"experiment": "demo", **settings},
                                   run=run)
    monkeypatch.setattr(stored, "EXPERIMENTS", {"demo": demo})
    monkeypatch.setattr(stored, "make_datasets", lambda budget: [])
    store = ["--store", str(tmp_path)]
    assert stored.main(["--missing", *store]) == 0 and runs == ["book"]
    assert stored.main(["--missing", *store]) == 0 and runs == ["book"]  # current: kept
    settings["x"] = 2  # the chapter's settings changed: the file is out of date
    assert stored.main(["--missing", *store]) == 0 and runs == ["book", "book"]
    assert json.loads((tmp_path / "demo-book.json").read_text())["result"] == {"value": 2}
    assert stored.main(["--missing", "--budget", "smoke", *store]) == 0  # nothing stored
    assert runs == ["book", "book"] and not (tmp_path / "demo-smoke.json").exists()
    assert stored.main(["demo", *store]) == 0 and runs == ["book"] * 3  # asked for: remade
    (tmp_path / "demo-book.json").write_text("{not json")  # damaged: refused, not remade
    assert stored.main(["--missing", *store]) == 2 and runs == ["book"] * 3
    assert "demo-book.json: not readable JSON" in capsys.readouterr().err
    assert stored.main(["--missing", "--budget", "huge", *store]) == 2
    assert "unknown budget 'huge'" in capsys.readouterr().err


def test_shipped_stored_results_are_current() -> None:
    from om2p_lite.book import stored
    from om2p_lite.runtime.budget import get_budget

    stale = [name for name in stored.EXPERIMENTS
             if not stored.is_current(name, get_budget("book"))]
    fix = f"python -m om2p_lite.book.stored {' '.join(stale)}"
    assert not stale, f"out of date: {stale}. Fix: {fix}"


def test_book_data_makes_chapter_04s_missing_sets_trained_ones_where_shipped(
        tmp_path: Path, monkeypatch) -> None:
    """make_datasets: the scripted sets of every task, and the trained-behaviour sets of a
    task whose policy file is shipped; nothing already in the cache."""
    from om2p_lite.book import stored
    from om2p_lite.data import behaviour, generate
    from om2p_lite.runtime.budget import get_budget

    made: list[tuple] = []
    monkeypatch.setattr(generate, "get_dataset",
                        lambda task, q, seed, budget, reward, progress, behaviour:
                        made.append((task, q, reward, behaviour)))
    cached = {("tag", "expert")}
    monkeypatch.setattr(generate, "dataset_path", lambda task, q, *a, **k: tmp_path / (
        "cached" if (task, q) in cached and k.get("behaviour") == "scripted" else "absent"))
    (tmp_path / "cached").touch()
    shipped = {"spread": tmp_path / "cached"}
    monkeypatch.setattr(behaviour, "behaviour_file",
                        lambda task, reward: shipped.get(task, tmp_path / "absent"))
    out = stored.make_datasets(get_budget("smoke"))
    assert ("tag", "expert", "mpe2", "scripted") not in made  # already cached
    assert ("spread", "expert", "omar", "trained") in made  # its policy is shipped
    assert not any(t == "world" and b == "trained" for t, _, _, b in made)  # not shipped
    assert ("spread", "expert", "mpe2", "trained") in made  # Spread's two rewards' policies
    assert len(made) == len(out) == 4 * 4 - 1 + 2 * 4
    assert "spread/expert (trained, omar reward)" in out
