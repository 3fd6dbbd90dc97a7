"""The settings of one training run (``TrainConfig``) and its validation.

Not the training loop (``train``) nor the agents: both read their settings from here; nor
the budget presets (``runtime.budget.PRESETS``), which ``budget_config`` starts from.
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from om2p_lite.data.behaviour import (
    BEHAVIOURS,
    LEGACY_BEHAVIOUR,
    QUALITIES,
    default_behaviour_of,
)
from om2p_lite.data.npy_io import IMPORTED
from om2p_lite.envs import (
    ACTION_LAYOUTS,
    DEFAULT_ACTION_LAYOUT,
    LEGACY_ACTION_LAYOUT,
    check_task,
)
from om2p_lite.flows.meanflow import (  # the Δr rules live with the estimator they serve
    COMPUTE_DTYPE,
    DEFAULT_DR,
    check_meanflow_settings,
)
from om2p_lite.runtime.budget import train_preset
from om2p_lite.runtime.checks import SettingError, check_range

# the algorithms' names, one agent class each (rl.agents.AGENTS checks it holds these);
# which fields each reads is the agent's own ``reads`` (rl.agents.field_readers)
ALGORITHMS = ("om2p", "om2p-official", "bc", "td3bc", "td3", "cql", "omar", "flowq",
              "diffusionq")


@dataclass
class TrainConfig:
    """Every knob of one training run; defaults follow OM2P's public code (lizr16/OM2P
    agents/fql_meanfield.py:703-710: γ, τ, batch 256, Adam 3e-4) scaled for a CPU."""

    algo: str = "om2p"  # om2p | om2p-official | bc | td3bc | td3 | cql | omar | flowq | diffusionq
    task: str = "spread"  # spread | tag | world | halfcheetah | spreadN (Spread, N agents)
    quality: str = "expert"  # random | medium-replay | medium | expert | imported (a file)
    seed: int = 0  # training seed: initial weights, noise, batch order
    data_seed: int = 0  # seed of the dataset (one dataset serves every training seed)
    data_budget: str = "smoke"  # dataset size preset: smoke | book | full
    dataset: str = ""  # path to a dataset .npz; "" = generated/cached from the fields above
    reward_variant: str = "mpe2"  # Spread reward: mpe2 | omar
    # MPE's action per agent: force-xy (the paper's 2-d force) | mpe2 (mpe2's 5-d action, the
    # data sets of every result stored before this field). A recorded config without it was
    # made with mpe2 (``STORED_DEFAULTS``, ``from_stored``); it has a factory, not a plain
    # default, so that nothing reading "absent = the default" takes such a run for force-xy.
    action_layout: str = field(default_factory=lambda: DEFAULT_ACTION_LAYOUT)
    # MPE behaviour of generated data: trained (TD3 files, D4RL-style) | scripted (the data
    # of the results stored before trained became the default: ``STORED_DEFAULTS`` reads a
    # record without it as scripted). "" = the data set's default, set on construction by a
    # fixed rule (``behaviour.default_behaviour_of``: trained on spread, tag, world with
    # force-xy; scripted on spreadN and mpe2, where no policy ships), never by a file's
    # presence; HalfCheetah's is always trained.
    behaviour: str = ""
    steps: int = 1000  # gradient steps
    batch_size: int = 256  # transitions per step (same rows for every agent)
    lr: float = 3e-4  # Adam learning rate, actor and critic
    hidden: int = 256  # actor hidden width (paper: 512)
    depth: int = 3  # actor hidden layers (paper: 4)
    critic_hidden: int = 256  # critic hidden width (LayerNorm MLP)
    critic_depth: int = 3  # critic hidden layers
    n_q: int = 2  # critics per agent in the ensemble
    gamma: float = 0.99  # discount γ
    tau: float = 0.005  # Polyak rate τ of the target networks
    eta: float = 1.0  # weight η of the normalised Q term (0 = behaviour cloning)
    estimator: str = "fd"  # du/dr estimator: jvp | fd | zero | jacobian
    dr: float = DEFAULT_DR  # finite-difference step Δr (fd); < ~6e-8 warns: float32 can't see it
    # time sampler: uniform | beta55 | logit_normal | "a,b,c,d". Default uniform, chosen by
    # measurement on World expert: at η = 0 no ξ or pairing did better than another beyond
    # seed noise (data/results/fig2_xi, chapter 06), but with the Q term on, uniform ξ beat
    # the paper's beta55 beyond it (data/results/fig4_ablations, chapter 08): sorted beta55
    # pairs almost never train the (0, 1) jump that the one-step a_π of the Q term uses.
    # beta55 (the paper's ξ = [5,5,0,0]) stays available by name.
    xi: str = "uniform"
    ratio: float = 0.25  # fraction of (r, t) pairs with r ≠ t
    pairing: str = "sorted"  # (r, t) from two draws: sorted (r = min) | independent (public code)
    q_norm: bool = True  # divide the Q term by sg(mean |Q|) (False: the ablation without it)
    adaptive_p: float = 0.0  # MeanFlow adaptive-weight power p (0 = plain L2)
    sample_steps: int = 1  # OM2P sampling steps (1 = one-step policy)
    flow_steps: int = 10  # Euler steps K of the Flow+Q baseline
    diffusion_steps: int = 5  # denoising steps T of the Diffusion+Q baseline (Diffusion-QL: 5)
    alpha: float = 2.5  # TD3+BC's α: λ = α / mean|Q| (paper: 2.5)
    policy_noise: float = 0.2  # TD3 target-smoothing std; CQL's policy-proposal std (0.2)
    noise_clip: float = 0.5  # TD3 target-smoothing noise clip
    cql_alpha: float = 1.0  # weight of the CQL(H) conservative term (cql, omar)
    cql_samples: int = 10  # CQL(H): uniform and policy proposals, each (OMAR's code: 10)
    # OMAR (Pan et al. 2022), defaults of its published MPE code: the published code sets c
    # per data set (Spread 1.0; Tag 0.9/0.9/0.7/0.9 and World 1.0/0.7/0.1/0.9 for random/
    # medium-replay/medium/expert; HalfCheetah 1.0/0.9/0.7/0.5); 0.7 is our one default.
    omar_coef: float = 0.7  # c: L = (1 - c)(-Q) + c · mean over action dims of (π - â)²
    omar_iters: int = 3  # search iterations (published MPE code: 3)
    omar_samples: int = 10  # candidate actions per iteration (published MPE code: 10)
    omar_elites: int = 0  # candidates in the softmax(Q)-weighted mean: 0 = all (MPE code)
    omar_sigma: float = 2.0  # initial search std around μ = 0, a global search (code: 2.0)
    eval_every: int = 500  # steps between evaluations (also at 0 and the end); 0 = end only
    eval_episodes: int = 10  # episodes per evaluation, one vector of envs (0 = no evaluation)
    eval_max_steps: int = 0  # cap on steps per evaluation episode (0 = the task's own length)
    log_every: int = 100  # steps between training-loss log rows
    checkpoint_every: int = 0  # steps between checkpoints (0 = only at the end / stop_at)
    stop_at: int = 0  # stop after this step with a checkpoint, to resume later (0 = run on)
    out_dir: str = ""  # run folder for logs, checkpoint, result.json ("" = keep in memory)
    device: str = ""  # cpu | cuda | cuda:N ("" = CUDA if available)
    progress: bool = True  # show a tqdm progress bar
    threads: int = 0  # torch CPU threads (0 = adapt to the load: the cores left idle)
    compile: bool = False  # torch.compile the stacked networks (see bench/population.py)

    def __post_init__(self) -> None:
        """Give ``behaviour`` "" its data set's default (the records then name it)."""
        if self.behaviour == "" and isinstance(self.task, str) \
                and isinstance(self.action_layout, str):
            self.behaviour = default_behaviour_of(self.task, self.action_layout)

    @classmethod
    def from_stored(cls, values: Mapping[str, Any]) -> TrainConfig:
        """From a recorded config (a run's config.json, result.json or checkpoint): a field
        the record predates takes the value runs had then (``STORED_DEFAULTS``)."""
        if isinstance(values, Mapping):
            values = {**{k: v for k, v in STORED_DEFAULTS.items() if k not in values},
                      **values}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. TOML or CLI flags), rejecting unknown keys by name and
        values of the wrong type (field, expected type and value in the message)."""
        if not isinstance(values, Mapping):
            raise ValueError(f"a config must be a table of field = value, got "
                             f"{type(values).__name__}. Fix: write [config] with one "
                             f"'field = value' per line")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        types = field_types()
        for name, value in values.items():
            check_type(name, value, types[name])
        # plain Python values: an int given for a float field is stored as a float
        return cls(**{k: _coerce(v, types[k]) for k, v in values.items()})

    def check_types(self) -> TrainConfig:
        """Raise a ``ValueError`` for the first field whose value has the wrong type."""
        types = field_types()
        for f in dataclasses.fields(self):
            check_type(f.name, getattr(self, f.name), types[f.name])
        return self

    def validate(self) -> TrainConfig:
        """Raise a ``SettingError`` (a ``ValueError``) naming the first bad field and its fix.

        The rules other entry points share are called, not copied: ``check_range`` for
        numbers, ``check_meanflow_settings`` for estimator, Δr, ξ, ratio and pairing (the
        rules ``fit_toy`` and the ``toy`` command obey). It also warns (``PrecisionWarning``,
        not an error: chapter 6 sweeps such values) when Δr is below float32's resolution
        for most r in [0, 1] and the estimator is fd.
        """
        try:
            self._check_fields()
        except SettingError as err:
            raise err.relabel(f"config field '{err.field}'") from None
        return self

    def _check_fields(self) -> None:
        """``validate``'s rules, in order (``_RULES`` around the mean-flow ones); each
        failure is a ``SettingError`` on its field."""
        self.check_types()
        _check_rules(self, _RULES)
        check_meanflow_settings(self.estimator, self.dr, self.xi, self.ratio, self.pairing,
                                COMPUTE_DTYPE)  # called here: its warning's stacklevel counts
        _check_rules(self, _RULES_AFTER_MEANFLOW)


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


# The value of each field added after results were stored, in a record that predates it:
# what those runs used (TrainConfig.from_stored; rl.scheduler.stale_fields and a resumed
# checkpoint's check should read an absent field with ``stored_value``).
STORED_DEFAULTS: dict[str, Any] = {"action_layout": LEGACY_ACTION_LAYOUT,
                                   "behaviour": LEGACY_BEHAVIOUR}


def field_default(name: str) -> Any:
    """Field ``name``'s default for a new config (its default or its factory's value)."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def stored_value(stored: Mapping[str, Any], name: str) -> Any:
    """Field ``name`` of a recorded config: its value, else the value of the runs that
    predate the field (``STORED_DEFAULTS``), else the field's default."""
    if name in stored:
        return stored[name]
    return STORED_DEFAULTS[name] if name in STORED_DEFAULTS else field_default(name)


def field_types() -> dict[str, type]:
    """Each ``TrainConfig`` field's type (int, float, str or bool)."""
    return typing.get_type_hints(TrainConfig)


def check_type(name: str, value: Any, want: type) -> bool:
    """True if ``value`` fits field ``name`` of type ``want``, else a ``ValueError`` whose
    message names the field, the expected type and the value.

    int fields take integers only (bools are not integers), float fields integers or
    floats, str fields text, bool fields true/false.
    """
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif want is str:
        ok = isinstance(value, str)
    else:  # a field of another type: nothing here knows how to check it
        return True
    if ok:
        return True
    default = field_default(name)
    example = {bool: str(default).lower(), str: f'"{default}"'}.get(want, repr(default))
    how = {int: "a whole number without quotes or a decimal point",
           float: "a number without quotes", str: "text in quotes",
           bool: "true or false without quotes"}[want]
    raise ValueError(f"config field '{name}': expected {_TYPE_WORDS[want]}, got {value!r} "
                     f"({type(value).__name__}). Fix: write {how}, e.g. {name} = {example}")


def _coerce(value: Any, want: type) -> Any:
    """Plain Python int/float for numeric fields (numpy scalars, ints for float fields)."""
    if want is float:
        return float(value)
    if want is int:
        return int(value)
    return value


# ----------------------------------------------------------------------------- validate's rules
# A rule is a row (field, rule, fix), checked in order: ``rule`` is either the bounds of
# ``check_range`` (a dict) or a function of the config that gives the problem with the field
# (None: it is fine; the task rule raises its own error, whose message has its own fix).
Rule = tuple[str, dict[str, Any] | Callable[[TrainConfig], str | None], str]

_POSITIVE = ("steps", "batch_size", "hidden", "depth", "critic_hidden", "critic_depth", "n_q",
             "sample_steps", "flow_steps", "diffusion_steps", "log_every", "cql_samples",
             "omar_samples", "omar_iters", "omar_sigma")
_NON_NEGATIVE = ("eval_every", "eval_episodes", "eval_max_steps", "checkpoint_every",
                 "stop_at", "threads", "seed", "data_seed", "cql_alpha", "adaptive_p", "alpha",
                 "policy_noise", "noise_clip")


def _out_of_range(name: str, value: Any, low: float | None = None, high: float | None = None,
                  **options: Any) -> str | None:
    """``check_range``'s problem with ``value`` (None when it is in range)."""
    try:
        check_range(name, value, low, high, **options)
    except SettingError as err:
        return err.problem
    return None


def _check_rules(cfg: TrainConfig, rules: tuple[Rule, ...]) -> None:
    """Raise a ``SettingError`` (field, problem, fix) for the first rule ``cfg`` fails."""
    for name, rule, fix in rules:
        problem = rule(cfg) if callable(rule) else _out_of_range(name, getattr(cfg, name),
                                                                 **rule)
        if problem:
            raise SettingError(name, problem, fix)


def _task_rule(cfg: TrainConfig) -> None:
    try:
        check_task(cfg.task)
    except ValueError as err:  # its message already says how to fix it
        raise ValueError(f"config field 'task': {err}") from err


_TYPES = field_types()
_RULES: tuple[Rule, ...] = (
    ("lr", dict(low=0.0, low_open=True), "use e.g. lr = 3e-4 (Adam, the paper's rate) or 1e-3 "
     "for tiny nets"),
    *((name, {}, f"use a finite value, e.g. {name} = {field_default(name)}")
      for name, kind in _TYPES.items() if kind is float),
    ("algo", lambda c: None if c.algo in ALGORITHMS else f"unknown algorithm {c.algo!r}",
     f"use one of {ALGORITHMS}"),
    ("task", _task_rule, ""),
    ("behaviour", lambda c: None if c.behaviour in BEHAVIOURS else
     f"unknown data behaviour {c.behaviour!r}", f"use one of {list(BEHAVIOURS)}"),
    ("action_layout", lambda c: None if c.action_layout in ACTION_LAYOUTS else
     f"unknown MPE action layout {c.action_layout!r}", f"use one of {list(ACTION_LAYOUTS)} "
     f"(force-xy: the paper's 2-d force; mpe2: the 5-d action of the stored results)"),
    ("quality", lambda c: f"{IMPORTED!r} labels a data set brought in with `data import`; it "
     f"cannot be generated" if c.quality == IMPORTED and not c.dataset else None,
     f"set dataset to the imported .npz file, or use one of {QUALITIES}"),
    ("quality", lambda c: None if c.quality in (*QUALITIES, IMPORTED) else
     f"unknown quality {c.quality!r}",
     f"use one of {QUALITIES} (or {IMPORTED!r} with an imported dataset)"),
    ("eta", dict(low=0.0), "use η = 0 for behaviour cloning or η > 0 for Q supervision"),
)
_RULES_AFTER_MEANFLOW: tuple[Rule, ...] = (
    *((name, dict(low=0, low_open=True, integer=_TYPES[name] is int), "use a positive value")
      for name in _POSITIVE),
    *((name, dict(low=0, integer=_TYPES[name] is int), "use 0 or more")
      for name in _NON_NEGATIVE),
    ("policy_noise", lambda c: f"CQL(H) weighs its policy proposals by their Gaussian "
     f"density, which needs a std > 0, got {c.policy_noise}"
     if c.algo in ("cql", "omar") and not c.policy_noise > 0 else None,
     "use policy_noise = 0.2 (OMAR's code)"),
    ("gamma", dict(low=0.0, high=1.0, high_open=True), "use γ = 0.99"),
    ("tau", dict(low=0.0, high=1.0, low_open=True), "use τ = 0.005"),
    ("omar_coef", dict(low=0.0, high=1.0), "use omar_coef = 0.7"),
    ("omar_elites", lambda c: _out_of_range("omar_elites", c.omar_elites, 0, c.omar_samples,
                                            integer=True),
     "use omar_elites = 0 (all candidates) or at most omar_samples"),
    ("stop_at", lambda c: f"{c.stop_at} is not before the last step {c.steps}"
     if c.stop_at and c.stop_at >= c.steps else None,
     "use 0 to run to the end, or a step below `steps`"),
)


def budget_config(budget: str | None = None, **overrides: Any) -> TrainConfig:
    """The preset of ``budget`` (``runtime.budget.PRESETS``; default ``$OM2P_BUDGET``, else
    book) with ``overrides``."""
    return TrainConfig.from_dict(train_preset(budget) | overrides).validate()
