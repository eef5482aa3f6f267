"""Property-based tests (hypothesis) of config parsing, selection and the samplers (data schedules, rank shards).

Every property is checked on generated inputs against a slow, obvious reference or a stated invariant: configs dumped
and read again, ``--set`` values, mutated keys and wrong types; scores with ties, budgets and exclude masks for every
selection mode; random per-sample losses for the data schedules, resumed from any point; rank shards of any batch.
Derandomized and without an example database, so every run (and CI) checks the same examples.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import math
import string
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from thresher.config import build_config, fingerprint, semantic_dict, valid_keys
from thresher.data.loader import subset_indices
from thresher.errors import ThresherError
from thresher.pretrain.run import manifest_indices
from thresher.selection import parse_budget, select
from thresher.train.config import TrainConfig
from thresher.train.data_schedule import build_schedule, schedule_params
from thresher.train.loop import epoch_order, plan, rank_batches
from thresher.train.lr_schedules import LR_SCHEDULES
from thresher.train.objective import OBJECTIVES, objective_params
from thresher.train.trainable import PARAMETER_SETS


def props(max_examples: int = 60):
    """Modest, deterministic hypothesis settings: the same examples every run, no database written."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


def finite(lo: float, hi: float, **kw) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, **kw)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


SEEDS = st.integers(0, 2**32 - 1)


# ================================================================================================================
# config
# ================================================================================================================
KEYS = valid_keys(TrainConfig)
VALID = set(KEYS)
SECTIONS = {k for k in KEYS if any(o.startswith(k + ".") for o in KEYS)}
LEAVES = VALID - SECTIONS
BASE = {"data": {"spec": "x:y"}}

#: every semantic leaf of TrainConfig with a strategy of valid values (the two parameter dicts are drawn per name)
SEMANTIC = {
    "data.spec": st.text(min_size=1, max_size=16),
    "data.subset": optional(st.integers(1, 10**9)),
    "data.subset_seed": st.integers(-(2**40), 2**40),
    "backbone": st.text(min_size=1, max_size=16),
    "init_head": st.booleans(),
    "objective": st.sampled_from(sorted(OBJECTIVES)),
    "schedule": st.sampled_from(["full", "drop-and-pick", "random-drop"]),
    "train": st.sampled_from(sorted(PARAMETER_SETS)),
    "resolution": st.integers(8, 1024),
    "epochs": st.integers(1, 10**6),
    "steps": optional(st.integers(0, 10**6)),
    "images": optional(st.integers(0, 10**9)),  # dropped when steps is drawn (one budget at a time)
    "keep_at": st.lists(st.integers(0, 10**6), max_size=3),
    "recalibrate_bn": st.booleans(),
    "batch_size": st.integers(2, 10**6),
    "optim.name": st.sampled_from(["sgd", "adamw"]),
    "optim.lr": finite(0, 1e6, exclude_min=True),
    "optim.momentum": finite(0, 1, exclude_max=True),
    "optim.weight_decay": finite(0, 1e3),
    "optim.nesterov": st.booleans(),
    "lr_schedule.name": st.sampled_from(sorted(LR_SCHEDULES)),
    "lr_schedule.warmup_epochs": finite(0, 1e3),
    "lr_schedule.min_factor": finite(0, 1),
    "lr_schedule.milestones": optional(st.lists(st.integers(0, 10**4), max_size=4)),
    "lr_schedule.gamma": finite(0, 1, exclude_min=True),
    "lr_schedule.warmup_fraction": optional(finite(0, 1)),
    # dropped when milestones is drawn (one way at a time)
    "lr_schedule.milestone_fractions": optional(st.lists(finite(0, 1, exclude_min=True, exclude_max=True), max_size=3)),
    "transform": optional(st.text(max_size=12)),
    "crop_scale": optional(st.tuples(finite(0, 1), finite(0, 1))),
    "seed": st.integers(-(2**40), 2**40),
}
#: fields that change how a run executes, not its result: never part of the fingerprint
RUNTIME = {
    "data.data_root": optional(st.text(max_size=12)),
    "data.strict": st.booleans(),
    "init": optional(st.text(max_size=12)),
    "manifest": optional(st.text(max_size=12)),
    "checkpoint_every": st.integers(0, 10**6),
    "checkpoint_minutes": finite(0, 1e4, exclude_min=True),
    "log_every": st.integers(1, 10**6),
    "runtime.device": st.text(max_size=8),
    "runtime.num_workers": st.integers(0, 64),
    "runtime.threads": optional(st.integers(1, 256)),
    "runtime.progress": st.booleans(),
    "runtime.engine": st.sampled_from(["local", "ray"]),
    "runtime.ray_address": optional(st.text(max_size=12)),
    "runtime.ray_actors": optional(st.integers(1, 64)),
}
#: dict-valued fields whose keys are the parameters of a registry name held by another field
PARAMS = {"objective_params": ("objective", objective_params), "schedule_params": ("schedule", schedule_params)}
PARAM_VALUES = st.none() | st.booleans() | st.integers(-1000, 1000) | finite(-1e3, 1e3) | st.text(max_size=8)


def params_for(accepted: list[str]) -> st.SearchStrategy[dict]:
    """Dicts of some of the ``accepted`` parameter names (in any order) with any YAML-able values."""
    if not accepted:
        return st.just({})
    names = st.lists(st.sampled_from(accepted), unique=True)
    return names.flatmap(lambda ns: st.fixed_dictionaries({n: PARAM_VALUES for n in ns}))


#: pairs of keys of which a config may set one only (the run's length; the step schedule's milestones)
ONE_WAY = (("steps", "images"), ("lr_schedule.milestones", "lr_schedule.milestone_fractions"))


@st.composite
def train_configs(draw) -> dict:
    """A valid TrainConfig as flat dotted keys -> values, every leaf set."""
    flat = {k: draw(s) for k, s in {**SEMANTIC, **RUNTIME}.items()}
    for first, second in ONE_WAY:
        if flat[first] is not None:
            flat[second] = None
    for key, (owner, accepted) in PARAMS.items():
        flat[key] = draw(params_for(accepted(flat[owner])))
    return flat


def nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *head, last = key.split(".")
        node = out
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def merged(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_key(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def shuffled(d, rnd):
    """The same nested dict with every mapping's keys in a random order."""
    if not isinstance(d, dict):
        return d
    keys = list(d)
    rnd.shuffle(keys)
    return {k: shuffled(d[k], rnd) for k in keys}


def flatten_sections(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = prefix + k
        out.update(flatten_sections(v, key + ".") if key in SECTIONS else {key: v})
    return out


def test_every_field_is_classified_semantic_or_runtime():
    """The tables above cover the schema, and the fingerprinted part is exactly the semantic fields."""
    assert LEAVES == set(SEMANTIC) | set(RUNTIME) | set(PARAMS)
    cfg = build_config(TrainConfig, values=BASE)
    assert set(flatten_sections(semantic_dict(cfg))) == set(SEMANTIC) | set(PARAMS)


@props(60)
@given(flat=train_configs(), as_run_folder=st.booleans())
def test_config_dumped_and_read_again_is_equal(flat, as_run_folder):
    """Any valid config, written as YAML (bare or as a run folder's config.yaml) and read back: equal, same
    fingerprint; and every value given is the value read."""
    cfg = build_config(TrainConfig, values=nested(flat))
    for key, value in flat.items():
        assert read_key(cfg, key) == value, key
    dumped = cfg.model_dump(mode="json")
    doc = (
        {"thresher": {"kind": "pretrain", "fingerprint": fingerprint(cfg)}, "config": dumped}
        if as_run_folder
        else dumped
    )
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "config.yaml"
        f.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        again = build_config(TrainConfig, file=f)
    assert again == cfg
    assert again.model_dump(mode="json") == dumped
    assert fingerprint(again) == fingerprint(cfg)


def quoted(s: str) -> str:
    """``s`` as a YAML double-quoted scalar (how a user passes text that would otherwise read as a number, ...)."""
    return yaml.safe_dump(s, default_style='"', width=10**9).rstrip("\n")


def reads_as_itself(s: str) -> bool:
    """Plain text that YAML reads as the same string (text YAML cannot parse at all is kept as typed)."""
    try:
        return yaml.safe_load(s) == s
    except yaml.YAMLError:
        return True


PLAIN = st.text(alphabet=string.ascii_letters + string.digits + ":=/._-+", min_size=1, max_size=20)
WITH_EQUALS = st.tuples(PLAIN, PLAIN).map("=".join)  # the value of --set key=a=b is a=b
BOOL_SPELLINGS = [
    lambda v: str(v).lower(),
    str,
    lambda v: str(v).upper(),
    lambda v: "yes" if v else "no",
    lambda v: "on" if v else "off",
]
#: (key, valid values, ways to write a value after ``--set key=``)
SET_CASES = [
    ("epochs", st.integers(1, 10**12), [str]),
    ("seed", st.integers(-(2**62), 2**62), [str]),
    ("data.subset", optional(st.integers(1, 10**9)), [lambda v: "null" if v is None else str(v)]),
    ("optim.lr", finite(0, 1e300, exclude_min=True), [repr, lambda v: format(v, ".17g")]),
    ("lr_schedule.warmup_epochs", finite(0, 1e6), [repr, lambda v: format(v, ".17e")]),
    ("optim.nesterov", st.booleans(), BOOL_SPELLINGS),
    ("runtime.progress", st.booleans(), BOOL_SPELLINGS),
    ("data.spec", st.text(min_size=1, max_size=24), [quoted]),
    ("backbone", (PLAIN | WITH_EQUALS).filter(reads_as_itself), [str]),
    ("data.spec", WITH_EQUALS, [quoted]),
    ("transform", optional(st.text(max_size=16)), [lambda v: "~" if v is None else quoted(v)]),
    (
        "lr_schedule.milestones",
        st.lists(st.integers(0, 10**6), max_size=5),
        [json.dumps, lambda v: f"[{','.join(map(str, v))}]"],
    ),
    ("crop_scale", st.tuples(finite(0, 1), finite(0, 1)), [lambda v: f"[{v[0]!r}, {v[1]!r}]"]),
]


@props(150)
@given(data=st.data())
def test_set_value_reads_back(data):
    """``--set key=value`` (after another ``--set`` of the same key) reads back the value, for ints, floats, bools,
    strings, null and lists; and the ``values`` dict given to build_config is never modified."""
    key, strategy, formats = data.draw(st.sampled_from(SET_CASES))
    first, value = data.draw(strategy), data.draw(strategy)
    fmt = data.draw(st.sampled_from(formats))
    values = {"data": {"spec": "x:y", "subset": 5}, "epochs": 2, "optim": {"lr": 0.5}}
    before = copy.deepcopy(values)
    cfg = build_config(TrainConfig, values=values, overrides=[f"{key}={fmt(first)}", f" {key} ={fmt(value)}"])
    assert read_key(cfg, key) == value
    assert values == before


def mutate(segment: str, draw) -> tuple[str, str]:
    op = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
    chars = string.ascii_lowercase + string.digits + "_"
    i = draw(st.integers(0, len(segment) - (0 if op == "insert" else 1)))
    if op == "insert":
        return op, segment[:i] + draw(st.sampled_from(chars)) + segment[i:]
    if op == "delete":
        return op, segment[:i] + segment[i + 1 :]
    if op == "replace":
        return op, segment[:i] + draw(st.sampled_from(chars)) + segment[i + 1 :]
    j = min(i + 1, len(segment) - 1)
    return op, segment[:i] + segment[j] + segment[i + 1 : j] + segment[i] + segment[j + 1 :]


@st.composite
def mutated_keys(draw) -> tuple[str, bool]:
    """A real dotted key with 1-3 character edits in one of its parts -> (key, whether it was one plain edit)."""
    parts = draw(st.sampled_from(KEYS)).split(".")
    i = draw(st.integers(0, len(parts) - 1))
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        op, parts[i] = mutate(parts[i], draw)
        ops.append(op)
        assume(parts[i])
    return ".".join(parts), len(ops) == 1 and ops[0] != "swap"


@props(150)
@given(mutated=mutated_keys(), via=st.sampled_from(["set", "values", "file"]))
def test_unknown_key_is_rejected_in_one_line_with_a_real_suggestion(mutated, via):
    """A key not in the schema (a real key with typos), given by --set, by value or in a YAML file: a one-line
    ThresherError naming the first unknown part; after a single-character typo it suggests a key that exists."""
    key, single_edit = mutated
    assume(key not in VALID)
    parts = key.split(".")
    prefixes = [".".join(parts[: j + 1]) for j in range(len(parts))]
    first = next(p for p in prefixes if p not in VALID)
    assume(all(p in SECTIONS for p in prefixes[: prefixes.index(first)]))  # (not a key under a plain value)
    if via == "set":
        kwargs: dict = {"values": BASE, "overrides": [f"{key}=1"]}
    elif via == "values":
        kwargs = {"values": merged(BASE, nested({key: 1}))}
    with tempfile.TemporaryDirectory() as tmp:
        if via == "file":
            f = Path(tmp) / "c.yaml"
            f.write_text(yaml.safe_dump(merged(BASE, nested({key: 1}))))
            kwargs = {"file": f}
        with pytest.raises(ThresherError) as exc:
            build_config(TrainConfig, **kwargs)
    msg = one_line(exc)
    assert msg.startswith(f"unknown config key {first!r}")
    if single_edit:
        assert "; did you mean " in msg
        assert ast.literal_eval(msg.split("; did you mean ")[1].removesuffix("?")) in VALID


@props(60)
@given(data=st.data())
def test_unknown_objective_or_schedule_parameter_is_rejected(data):
    """A typo in a parameter name of the objective or data schedule: one line naming it and the accepted names."""
    field, (owner, accepted_of) = data.draw(st.sampled_from(sorted(PARAMS.items())))
    names = sorted(OBJECTIVES) if owner == "objective" else ["drop-and-pick", "random-drop"]
    owner_name = data.draw(st.sampled_from(names))
    accepted = accepted_of(owner_name)
    _, typo = mutate(data.draw(st.sampled_from(accepted)), data.draw)
    assume(typo and typo not in accepted)
    with pytest.raises(ThresherError) as exc:
        build_config(TrainConfig, values=BASE, overrides=[f"{owner}={owner_name}", f"{field}.{typo}=1"])
    msg = one_line(exc)
    assert f"has no parameter {typo}" in msg and all(a in msg for a in accepted)


NUMBER_WORDS = {"inf", "infinity", "nan"}
BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0"}
WORDS = st.text(alphabet=string.ascii_letters + " -", min_size=1, max_size=10).filter(
    lambda s: s.strip().lstrip("+-").lower() not in NUMBER_WORDS | BOOL_WORDS and s.strip()
)
CONTAINERS = st.lists(st.integers(), min_size=1, max_size=3) | st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=4), st.integers(), min_size=1, max_size=2
)
FRACTIONAL = finite(-1e6, 1e6).filter(lambda x: not float(x).is_integer())
WRONG = {
    "int": WORDS | CONTAINERS | st.booleans() | FRACTIONAL,
    "float": WORDS | CONTAINERS | st.booleans(),
    "bool": WORDS | CONTAINERS | st.integers().filter(lambda v: v not in (0, 1)) | FRACTIONAL,
    "str": st.integers() | finite(-1e6, 1e6) | st.booleans() | CONTAINERS,
    "list": WORDS | st.integers() | finite(-1e6, 1e6) | st.booleans() | st.lists(WORDS, min_size=1, max_size=2),
    "pair": WORDS | st.integers() | st.lists(finite(0, 1), max_size=4).filter(lambda v: len(v) != 2),
    "dict": WORDS | st.integers() | st.booleans() | st.lists(st.integers(), max_size=2),
    "section": WORDS | st.integers() | st.booleans() | st.lists(st.integers(), max_size=2),
}
KINDS = {
    "int": ["resolution", "epochs", "batch_size", "seed", "data.subset_seed", "data.subset", "checkpoint_every",
            "log_every", "runtime.num_workers", "runtime.threads", "runtime.ray_actors", "steps", "images"],
    "float": ["optim.lr", "optim.momentum", "optim.weight_decay", "lr_schedule.warmup_epochs",
              "lr_schedule.min_factor", "lr_schedule.gamma", "checkpoint_minutes", "lr_schedule.warmup_fraction"],
    "bool": ["init_head", "optim.nesterov", "data.strict", "runtime.progress", "recalibrate_bn"],
    "str": ["data.spec", "backbone", "transform", "runtime.device", "init", "manifest", "data.data_root",
            "runtime.ray_address"],
    "list": ["lr_schedule.milestones", "lr_schedule.milestone_fractions", "keep_at"],
    "pair": ["crop_scale"],
    "dict": ["objective_params", "schedule_params"],
    "section": ["data", "optim", "lr_schedule", "runtime"],
}  # fmt: skip
REGISTRY_NAMES = {
    "objective": OBJECTIVES,
    "schedule": ["full", "drop-and-pick", "random-drop"],
    "train": PARAMETER_SETS,
    "lr_schedule.name": LR_SCHEDULES,
    "optim.name": ["sgd", "adamw"],
    "runtime.engine": ["local", "ray"],
}


def test_wrong_type_tables_cover_the_schema():
    assert {k for ks in KINDS.values() for k in ks} | set(REGISTRY_NAMES) == VALID


@props(200)
@given(data=st.data(), via=st.sampled_from(["values", "set"]))
def test_wrong_type_is_rejected_in_one_line_naming_the_key(data, via):
    """A value of the wrong type for any key (text for numbers, booleans for numbers, numbers for text, fractions
    for integers, scalars for lists and sections, ...) is a one-line ThresherError that names the key."""
    kind = data.draw(st.sampled_from(sorted(KINDS)))
    key = data.draw(st.sampled_from(KINDS[kind]))
    value = data.draw(WRONG[kind])
    if via == "set":
        text = json.dumps(value)
        read = yaml.safe_load(text)
        assume(read == value and type(read) is type(value))  # (YAML 1.1 reads 1e-06 as text: not this value)
        kwargs = {"values": BASE, "overrides": [f"{key}={text}"]}
    else:
        kwargs = {"values": merged(BASE, nested({key: value}))}
    with pytest.raises(ThresherError) as exc:
        build_config(TrainConfig, **kwargs)
    assert f"config key '{key}" in one_line(exc)


@props(60)
@given(key=st.sampled_from(sorted(REGISTRY_NAMES)), name=st.text(max_size=12))
def test_unknown_registry_name_is_rejected_in_one_line(key, name):
    """A name no registry knows (objective, schedule, trainable set, LR schedule, optimizer): one line, quoting it."""
    assume(name not in REGISTRY_NAMES[key])
    with pytest.raises(ThresherError) as exc:
        build_config(TrainConfig, values=merged(BASE, nested({key: name})))
    assert repr(name) in one_line(exc)


@props(60)
@given(flat=train_configs(), rnd=st.randoms(use_true_random=False))
def test_fingerprint_ignores_key_order(flat, rnd):
    """The same config given with every mapping (sections and parameter dicts) in another key order, and the same
    inputs in another order: same semantic dict and fingerprint."""
    a = build_config(TrainConfig, values=nested(flat))
    b = build_config(TrainConfig, values=shuffled(nested(flat), rnd))
    inputs = {f"input{i}": f"{i:064x}" for i in range(5)}
    assert semantic_dict(a) == semantic_dict(b)
    assert fingerprint(a, inputs) == fingerprint(b, shuffled(inputs, rnd))
    assert fingerprint(a, inputs) != fingerprint(a, {**inputs, "input0": "0" * 63 + "f"})


@props(100)
@given(flat=train_configs(), data=st.data())
def test_fingerprint_ignores_runtime_fields_but_not_semantic_ones(flat, data):
    """Changing any runtime-only field keeps the fingerprint; changing any semantic field changes it."""
    cfg = build_config(TrainConfig, values=nested(flat))
    key = data.draw(st.sampled_from(sorted(RUNTIME)))
    other = build_config(TrainConfig, values=nested({**flat, key: data.draw(RUNTIME[key])}))
    assert fingerprint(other) == fingerprint(cfg)

    key = data.draw(st.sampled_from(sorted(set(SEMANTIC) | set(PARAMS))))
    changed = dict(flat)
    if key in PARAMS:
        owner, accepted = PARAMS[key]
        changed[key] = data.draw(params_for(accepted(flat[owner])))
    else:
        changed[key] = data.draw(SEMANTIC[key])
        for field, (owner, _) in PARAMS.items():
            if key == owner:
                changed[field] = {}  # another objective / schedule: its own (default) parameters
        for pair in ONE_WAY:  # one way at a time, as train_configs draws them
            if key in pair and changed[key] is not None:
                changed[pair[1 - pair.index(key)]] = None
    assume(changed[key] != flat[key])
    assert fingerprint(build_config(TrainConfig, values=nested(changed))) != fingerprint(cfg)


# ================================================================================================================
# selection
# ================================================================================================================
@st.composite
def scored(draw, max_n: int = 40, labels: bool = False) -> dict:
    """Scores (heavily tied, spread out, or non-negative), an exclude mask and optionally labels (-1 = none)."""
    n = draw(st.integers(1, max_n))
    regime = draw(st.sampled_from(["ties", "spread", "nonneg"]))
    if regime == "spread":
        values = st.floats(-1e9, 1e9, allow_nan=False)
    else:
        lo = 0.0 if regime == "nonneg" else -1e6
        palette = draw(st.lists(finite(lo, 1e6), min_size=1, max_size=4)) + ([0.0] if regime == "nonneg" else [])
        values = st.sampled_from(palette)
    out = {
        "scores": np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64),
        "exclude": np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool),
    }
    if labels:
        out["labels"] = np.array(draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n)), dtype=np.int64)
    return out


def fraction_counts(f: float, m: int) -> set[int]:
    """What a fraction ``f`` of ``m`` rounds to, half up; both neighbours when f * m is within 1e-9 of a half."""
    x = Fraction(f) * m
    lower = math.floor(x)
    if abs(x - lower - Fraction(1, 2)) < Fraction(1, 10**9):
        return {lower, lower + 1}
    return {math.floor(x + Fraction(1, 2))}


@st.composite
def budgets(draw, m: int, over: int = 0) -> tuple[object, set[int]]:
    """A budget for a pool of ``m`` in any accepted form -> (budget, the counts it may resolve to; 0 = error)."""
    kind = draw(st.sampled_from(["fraction", "percent", "int", "numpy", "text", "float"]))
    if kind == "fraction":
        f = draw(st.floats(0, 1, exclude_min=True))
        return f, fraction_counts(f, m)
    if kind == "percent":
        p = draw(st.integers(1, 100))
        return f"{p}%", fraction_counts(p / 100, m)
    k = draw(st.integers(1, m + over))
    if kind == "float":
        assume(k > 1)  # 1.0 is the fraction "the whole pool"
        return float(k), {k}
    return {"int": k, "numpy": np.int64(k), "text": f" {k} "}[kind], {k}


def check_determinism(sel, again) -> None:
    assert np.array_equal(sel.positions, again.positions) and np.array_equal(sel.counts, again.counts)
    assert np.array_equal(sel.weights, again.weights)


@props(200)
@given(pool=scored(), data=st.data(), seed=SEEDS)
def test_top_selects_the_highest_eligible_scores(pool, data, seed):
    """Top mode: the budget (fractions of the non-excluded pool round half up) of distinct, non-excluded rows whose
    scores are the highest eligible ones (ties at the cut in any order); the same seed gives the same rows."""
    scores, exclude = pool["scores"], pool["exclude"]
    eligible = np.flatnonzero(~exclude)
    assume(len(eligible))
    budget, allowed = data.draw(budgets(len(eligible)))
    try:
        sel = select(scores, budget=budget, mode="top", exclude=exclude, seed=seed)
    except ThresherError:
        assert 0 in allowed
        return
    pos, k = sel.positions, len(sel.positions)
    assert k in allowed and sel.resolved_budget == k == sel.total_count
    assert len(set(pos.tolist())) == k and not exclude[pos].any()
    assert sorted(scores[pos], reverse=True) == sorted(scores[eligible], reverse=True)[:k]
    assert np.all(sel.counts == 1) and math.isclose(sel.weights.sum(), 1.0)
    check_determinism(sel, select(scores, budget=budget, mode="top", exclude=exclude, seed=seed))


def reference_weights(s: np.ndarray, transform: str) -> tuple[np.ndarray | None, str, bool]:
    """Slow reference of the documented transforms on the pool's scores -> (weights or None, name, valid)."""
    if transform == "auto":
        transform = "identity" if len(s) and (s >= 0).all() and s.sum() > 0 else "rank"
    if transform == "identity":
        w = s.copy() if (s >= 0).all() else None
    elif transform == "rank":
        w = stats.rankdata(s, method="average")
    elif transform == "shift":
        w = s - s.min()
    else:
        return None, transform, True  # softmax: checked through its monotonicity
    return w, transform, w is not None and w.sum() > 0


@props(200)
@given(
    pool=scored(),
    data=st.data(),
    seed=SEEDS,
    transform=st.sampled_from(["auto", "rank", "shift", "softmax", "identity"]),
)
def test_weighted_draws_only_positive_weights_and_exactly_the_budget(pool, data, seed, transform):
    """Weighted mode: counts sum to the budget (any count: with replacement), rows are distinct, non-excluded and of
    positive weight, reported probabilities are the transform's weights normalised; same seed, same draw."""
    scores, exclude = pool["scores"], pool["exclude"]
    eligible = np.flatnonzero(~exclude)
    assume(len(eligible))
    budget, allowed = data.draw(budgets(len(eligible), over=2 * len(eligible)))
    w, used, valid = reference_weights(scores[eligible], transform)
    try:
        sel = select(scores, budget=budget, mode="weighted", exclude=exclude, seed=seed, transform=transform)
    except ThresherError:
        assert 0 in allowed or not valid
        return
    assert valid and sel.info["transform_used"] == used
    pos = sel.positions
    assert sel.total_count == sel.resolved_budget and sel.resolved_budget in allowed
    assert np.all(np.diff(pos) > 0) and np.all(sel.counts >= 1) and not exclude[pos].any()
    if w is not None:
        full = np.zeros(len(scores))
        full[eligible] = w / w.sum()
        assert np.all(full[pos] > 0)
        np.testing.assert_allclose(sel.weights, full[pos], rtol=1e-9, atol=1e-15)
    else:  # softmax: positive, and ordered as the scores
        assert np.all(sel.weights > 0)
        s, p = scores[pos], sel.weights
        assert np.all((s[:, None] < s[None, :]) <= (p[:, None] <= p[None, :]))
        assert np.all((s[:, None] == s[None, :]) <= (p[:, None] == p[None, :]))
    again = select(scores, budget=budget, mode="weighted", exclude=exclude, seed=seed, transform=transform)
    check_determinism(sel, again)


@props(150)
@given(pool=scored(labels=True), data=st.data(), seed=SEEDS, transform=st.sampled_from(["auto", "rank", "shift"]))
def test_elastic_takes_the_best_of_positive_weight_classes(pool, data, seed, transform):
    """Elastic mode: exactly the budget, distinct, non-excluded, labeled rows of classes with positive weight, the
    highest scores of each class first; a budget beyond those rows (or the pool) is a one-line error."""
    scores, exclude, labels = pool["scores"], pool["exclude"], pool["labels"]
    eligible = np.flatnonzero(~exclude)
    assume(len(eligible))
    k = data.draw(st.integers(1, len(eligible) + 2))
    w, _, valid = reference_weights(scores[eligible], transform)
    y = labels[eligible]
    class_weight = {c: w[y == c].sum() for c in set(y[y >= 0].tolist())} if valid else {}
    ok_rows = eligible[np.isin(y, [c for c, cw in class_weight.items() if cw > 0])]
    expect_error = not (y >= 0).any() or k > len(eligible) or not valid or k > len(ok_rows)
    kwargs = dict(budget=k, mode="elastic", labels=labels, exclude=exclude, seed=seed, transform=transform)
    if expect_error:
        with pytest.raises(ThresherError) as exc:
            select(scores, **kwargs)
        one_line(exc)
        return
    sel = select(scores, **kwargs)
    pos = sel.positions
    assert len(pos) == k == sel.resolved_budget and len(set(pos.tolist())) == k
    assert set(pos.tolist()) <= set(ok_rows.tolist())
    for c in set(labels[pos].tolist()):
        members = ok_rows[labels[ok_rows] == c]
        taken = np.isin(members, pos)
        if not taken.all():
            assert scores[members[taken]].min() >= scores[members[~taken]].max()
    assert sum(c["taken"] for c in sel.info["classes"]) == k
    check_determinism(sel, select(scores, **kwargs))


@props(100)
@given(pool=scored(labels=True), data=st.data(), seed=SEEDS)
def test_classes_mode_selects_only_the_chosen_classes(pool, data, seed):
    """Classes mode: only non-excluded rows of the chosen classes; all of them without a budget, else a random
    subset of min(budget, available) (the budget resolved against the whole non-excluded pool)."""
    labels, exclude = pool["labels"], pool["exclude"]
    eligible = np.flatnonzero(~exclude)
    assume(len(eligible))
    chosen = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
    budget = data.draw(optional(st.integers(1, len(eligible) + 2)))
    candidates = eligible[np.isin(labels[eligible], chosen)]
    kwargs = dict(budget=budget, mode="classes", labels=labels, exclude=exclude, seed=seed, classes=chosen)
    if not (labels[eligible] >= 0).any() or not len(candidates) or (budget or 0) > len(eligible):
        with pytest.raises(ThresherError) as exc:
            select(None, **kwargs)
        one_line(exc)
        return
    sel = select(None, **kwargs)
    pos = sel.positions
    assert np.all(np.diff(pos) > 0) and set(pos.tolist()) <= set(candidates.tolist())
    assert len(pos) == (len(candidates) if budget is None else min(budget, len(candidates)))
    check_determinism(sel, select(None, **kwargs))


MODES = {
    "top": {},
    "weighted": {"transform": "rank"},
    "elastic": {"transform": "rank"},
    "classes": {"classes": [0, 2]},
}


@props(150)
@given(pool=scored(labels=True), mode=st.sampled_from(sorted(MODES)), data=st.data(), seed=SEEDS)
def test_excluding_rows_is_selecting_from_the_rest(pool, mode, data, seed):
    """Selecting with an exclude mask = selecting from the non-excluded rows alone (same seed), mapped back; NaN or
    infinite scores on excluded rows change nothing."""
    scores, exclude, labels = pool["scores"].copy(), pool["exclude"], pool["labels"]
    keep = np.flatnonzero(~exclude)
    assume(len(keep))
    budget = data.draw(st.integers(1, len(keep)) | st.floats(0.5, 1.0))
    scores[exclude] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    kw = dict(budget=budget, mode=mode, seed=seed, **MODES[mode])
    try:
        sub = select(scores[keep], labels=labels[keep], **kw)
    except ThresherError:
        with pytest.raises(ThresherError):
            select(scores, labels=labels, exclude=exclude, **kw)
        return
    full = select(scores, labels=labels, exclude=exclude, **kw)
    assert np.array_equal(full.positions, keep[sub.positions])
    assert np.array_equal(full.counts, sub.counts) and np.array_equal(full.weights, sub.weights)
    assert full.resolved_budget == sub.resolved_budget and full.n_excluded == int(exclude.sum())


@props(100)
@given(pool=scored(), data=st.data(), seed=SEEDS, mode=st.sampled_from(["top", "weighted"]))
def test_selection_is_invariant_to_increasing_transforms_of_the_scores(pool, data, seed, mode):
    """Top (and weighted with rank weights) depend on the scores' order only: a strictly increasing map of the scores
    (a random remapping of the distinct values, or a power-of-two scale) selects the very same rows."""
    scores, exclude = pool["scores"], pool["exclude"]
    assume((~exclude).any())
    distinct = np.unique(scores)
    if data.draw(st.booleans()):
        new = data.draw(st.lists(finite(-1e6, 1e6), min_size=len(distinct), max_size=len(distinct), unique=True))
        mapped = np.sort(np.array(new))[np.searchsorted(distinct, scores)]
    else:
        mapped = scores * 2.0 ** data.draw(st.integers(0, 20))
    budget = data.draw(st.integers(1, int((~exclude).sum())))
    kw = dict(
        budget=budget, mode=mode, exclude=exclude, seed=seed, **({"transform": "rank"} if mode == "weighted" else {})
    )
    a, b = select(scores, **kw), select(mapped, **kw)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.counts, b.counts)


@props(60)
@given(pool=scored(labels=True), data=st.data(), seed=SEEDS, mode=st.sampled_from(["top", "elastic", "classes"]))
def test_budget_beyond_the_eligible_rows_is_a_one_line_error(pool, data, seed, mode):
    """A count above the non-excluded pool is refused by the modes that pick each row at most once."""
    scores, exclude, labels = pool["scores"], pool["exclude"], pool["labels"]
    m = int((~exclude).sum())
    k = data.draw(st.integers(m + 1, len(scores) + 5))
    with pytest.raises(ThresherError) as exc:
        select(scores, budget=k, mode=mode, labels=labels, exclude=exclude, seed=seed, **MODES[mode])
    msg = one_line(exc)
    if mode == "top":
        assert f"budget {k} is more than the {m} examples" in msg if m else "the pool is empty" in msg


@props(60)
@given(pool=scored(), data=st.data(), seed=SEEDS, mode=st.sampled_from(["top", "weighted"]))
def test_nan_or_inf_scores_of_eligible_rows_are_a_one_line_error(pool, data, seed, mode):
    scores, exclude = pool["scores"].copy(), pool["exclude"]
    eligible = np.flatnonzero(~exclude)
    assume(len(eligible))
    bad = data.draw(st.sampled_from(eligible.tolist()))
    scores[bad] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(ThresherError) as exc:
        select(scores, budget=1, mode=mode, exclude=exclude, seed=seed)
    assert f"first at position {int(eligible[~np.isfinite(scores[eligible])][0])}" in one_line(exc)


@props(40)
@given(pool=scored(labels=True), data=st.data(), seed=SEEDS, mode=st.sampled_from(["top", "weighted", "elastic"]))
def test_manifest_of_a_selection_is_its_training_multiset(pool, data, seed, mode):
    """Selection -> manifest -> written and read -> training indices: each selected row exactly ``count`` times,
    with its own id, label and score; the total is the resolved budget."""
    scores, exclude, labels = pool["scores"], pool["exclude"], pool["labels"]
    labels = np.where(labels < 0, 0, labels)  # every row labeled, so elastic has classes
    assume((~exclude).any())
    k = data.draw(st.integers(1, int((~exclude).sum())))
    try:
        sel = select(scores, budget=k, mode=mode, labels=labels, exclude=exclude, seed=seed, **MODES[mode])
    except ThresherError:
        return  # (elastic: rank weights are positive, so only ever a class-weight corner case)
    ids = np.array([f"img-{i:04d}" for i in range(len(scores))], dtype=object)
    manifest = sel.to_manifest(ids, labels=labels, scores=scores, meta={"source": "x:y"})
    with tempfile.TemporaryDirectory() as tmp:
        manifest.write(tmp)
        indices = manifest_indices(tmp, SimpleNamespace(ids=ids), np.arange(len(ids)))
    assert Counter(indices.tolist()) == dict(zip(sel.positions.tolist(), sel.counts.tolist(), strict=True))
    assert len(indices) == sel.resolved_budget == manifest.total_count
    assert list(manifest.ids) == list(ids[sel.positions])
    assert np.array_equal(manifest.labels, labels[sel.positions]) and np.array_equal(
        manifest.scores, scores[sel.positions]
    )


@props(100)
@given(k=st.integers(1, 10**12), f=st.floats(0, 1, exclude_min=True), p=st.integers(1, 100))
def test_budget_forms_parse_to_counts_and_fractions(k, f, p):
    """Integers (any integer type or text) are counts, floats in (0, 1] fractions, integral floats > 1 counts,
    'p%' the fraction p / 100."""
    for form in (k, np.int64(k), str(k), f" {k}\n"):
        assert parse_budget(form) == ("count", float(k))
    if k > 1:
        assert parse_budget(float(k)) == ("count", float(k))
    assert parse_budget(f) == ("fraction", f) and parse_budget(repr(f)) == ("fraction", f)
    assert parse_budget(f"{p}%") == ("fraction", p / 100)


@props(100)
@given(
    bad=st.integers(-(10**6), 0)
    | finite(-1e6, 0)
    | finite(1, 1e6).filter(lambda x: not x.is_integer())
    | st.booleans()
    | st.sampled_from([math.nan, math.inf, -math.inf, "nan", "101%", "0%", "", "ten", None, [3], "1.5.2"])
    | WORDS
)
def test_bad_budgets_are_one_line_errors(bad):
    with pytest.raises(ThresherError) as exc:
        parse_budget(bad)
    one_line(exc)


# ================================================================================================================
# samplers: data schedules, epoch order, rank shards, subsets
# ================================================================================================================
@st.composite
def schedule_settings(draw, names=("full", "drop-and-pick", "random-drop")) -> tuple[str, dict, dict]:
    """-> (schedule name, user params, run context); params explicit or left to their run-derived defaults."""
    name = draw(st.sampled_from(names))
    n, epochs = draw(st.integers(1, 30)), draw(st.integers(1, 14))
    decay = draw(optional(st.lists(st.integers(1, epochs), min_size=1, max_size=2)))
    params: dict = {}
    if name != "full" and draw(st.booleans()):
        params = {
            "warmup": draw(st.integers(0, 4)),
            "interval": draw(st.integers(1, 3)),
            "keep": draw(st.integers(1, 100)) / 100,
            "active": draw(optional(st.integers(1, 5))),
            "pick": draw(st.lists(st.integers(1, epochs), max_size=3)),
        }
    context = {"num_examples": n, "epochs": epochs, "decay_epochs": decay, "seed": draw(SEEDS)}
    return name, params, context


def losses_and_measured(seed: int, epochs: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch losses (often tied) and which examples' losses are measured (the loop drops a partial batch)."""
    rng = np.random.default_rng(seed)
    losses = rng.integers(0, 4, (epochs, n)).astype(float) if seed % 2 else rng.normal(size=(epochs, n))
    return losses, rng.random((epochs, n)) < 0.8


def run_epoch(sched, e: int, losses: np.ndarray, measured: np.ndarray) -> np.ndarray:
    active = sched.active(e).copy()
    rec = active[measured[e][active]]
    sched.record(rec, losses[e][rec])
    sched.end_epoch(e)
    return active


def run_all(sched, epochs: int, losses: np.ndarray, measured: np.ndarray) -> list[np.ndarray]:
    return [run_epoch(sched, e, losses, measured) for e in range(epochs)]


@props(150)
@given(setting=schedule_settings(), seed=SEEDS)
def test_every_epoch_is_a_subset_of_its_planned_size_and_computation_adds_up(setting, seed):
    """Each epoch's examples: sorted, distinct positions into the data, as many as planned in advance; computation
    is the examples processed over the full schedule's (1 for full, in (0, 1] for the others)."""
    name, params, ctx = setting
    n, epochs = ctx["num_examples"], ctx["epochs"]
    sched = build_schedule(name, params, **ctx)
    planned = sched.planned_sizes()
    actives = run_all(sched, epochs, *losses_and_measured(seed, epochs, n))
    for active, size in zip(actives, planned, strict=True):
        assert len(active) == size and np.all(np.diff(active) > 0) and 0 <= active.min() and active.max() < n
    processed = sum(len(a) for a in actives)
    assert math.isclose(sched.computation(), processed / (n * epochs))
    assert 0 < sched.computation() <= 1 and (name != "full" or processed == n * epochs)


@props(150)
@given(setting=schedule_settings(names=("drop-and-pick",)), seed=SEEDS)
def test_drop_keeps_exactly_the_highest_loss_fraction(setting, seed):
    """Drop-and-pick: after a drop the active set is the ceil(keep x size) (at least 1) examples of the previous one
    with the highest latest measured loss (never measured = +inf; ties to the lower position); otherwise it is
    unchanged or, at a pick, all the data. Checked against a numpy reference of the latest losses."""
    name, params, ctx = setting
    n, epochs = ctx["num_examples"], ctx["epochs"]
    sched = build_schedule(name, params, **ctx)
    keep = Fraction(str(sched.keep))
    losses, measured = losses_and_measured(seed, epochs, n)
    latest = np.full(n, np.inf)
    active = sched.active(0).copy()
    assert np.array_equal(active, np.arange(n))
    for e in range(epochs - 1):
        assert np.array_equal(run_epoch(sched, e, losses, measured), active)
        rec = active[measured[e][active]]
        latest[rec] = losses[e][rec]
        nxt = sched.active(e + 1)
        if len(nxt) < len(active):
            k = max(1, math.ceil(keep * len(active)))
            ranked = sorted(active.tolist(), key=lambda i: (-latest[i], i))
            assert nxt.tolist() == sorted(ranked[:k])
        elif len(nxt) > len(active):
            assert np.array_equal(nxt, np.arange(n))
        else:
            assert np.array_equal(nxt, active)
        active = nxt.copy()


@props(100)
@given(setting=schedule_settings(names=("random-drop",)), seed=SEEDS, other=SEEDS)
def test_random_drop_has_drop_and_picks_sizes_and_ignores_the_losses(setting, seed, other):
    """Random-drop: the same planned sizes as drop-and-pick with the same settings, and the same examples whatever
    losses it is shown (a seeded draw, not hard-example mining)."""
    _, params, ctx = setting
    epochs, n = ctx["epochs"], ctx["num_examples"]
    a, b = build_schedule("random-drop", params, **ctx), build_schedule("random-drop", params, **ctx)
    assert a.planned_sizes() == build_schedule("drop-and-pick", params, **ctx).planned_sizes()
    run_a = run_all(a, epochs, *losses_and_measured(seed, epochs, n))
    run_b = run_all(b, epochs, *losses_and_measured(other, epochs, n))
    assert all(np.array_equal(x, y) for x, y in zip(run_a, run_b, strict=True))


@props(150)
@given(setting=schedule_settings(), seed=SEEDS, data=st.data())
def test_state_dict_resume_continues_identically(setting, seed, data):
    """Interrupted at any epoch, part-way through recording its losses: state_dict -> torch.save -> torch.load
    (weights_only) -> a new schedule -> load_state_dict continues exactly as the uninterrupted schedule."""
    name, params, ctx = setting
    n, epochs = ctx["num_examples"], ctx["epochs"]
    losses, measured = losses_and_measured(seed, epochs, n)
    reference = build_schedule(name, params, **ctx)
    expected = run_all(reference, epochs, losses, measured)

    t = data.draw(st.integers(0, epochs - 1))
    sched = build_schedule(name, params, **ctx)
    got = [run_epoch(sched, e, losses, measured) for e in range(t)]
    active = sched.active(t).copy()
    rec = active[measured[t][active]]
    cut = data.draw(st.integers(0, len(rec)))
    sched.record(rec[:cut], losses[t][rec[:cut]])
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    resumed = build_schedule(name, params, **ctx)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert np.array_equal(resumed.active(t), active)
    resumed.record(rec[cut:], losses[t][rec[cut:]])
    resumed.end_epoch(t)
    got.append(active)
    got += [run_epoch(resumed, e, losses, measured) for e in range(t + 1, epochs)]
    assert all(np.array_equal(x, y) for x, y in zip(got, expected, strict=True))
    assert np.array_equal(resumed.last_loss, reference.last_loss)


@props(100)
@given(setting=schedule_settings(), seed=SEEDS, world=st.integers(1, 4))
def test_ranks_that_sum_their_losses_agree_with_one_process(setting, seed, world):
    """Under torchrun each rank records its share of the losses and end_epoch sums them over ranks: every rank then
    holds the same examples as a single process shown all the losses."""
    name, params, ctx = setting
    n, epochs = ctx["num_examples"], ctx["epochs"]
    losses, measured = losses_and_measured(seed, epochs, n)
    single = build_schedule(name, params, **ctx)
    ranks = [build_schedule(name, params, **ctx) for _ in range(world)]
    for e in range(epochs):
        active = single.active(e).copy()
        assert all(np.array_equal(r.active(e), active) for r in ranks)
        rec = active[measured[e][active]]
        for i, r in enumerate(ranks):
            r.record(rec[i::world], losses[e][rec[i::world]])
        sums = [sum(r.epoch_loss_sum for r in ranks), sum(r.epoch_loss_count for r in ranks)]
        for r in ranks:
            replies = iter([a.copy() for a in sums])
            r.end_epoch(e, all_reduce=lambda _, replies=replies: next(replies))
        run_epoch(single, e, losses, measured)
    assert all(np.array_equal(r.last_loss, single.last_loss) for r in ranks)


@props(150)
@given(
    n=st.integers(1, 200),
    batch=st.integers(1, 64),
    world=st.integers(1, 8),
    seed=SEEDS,
    epoch=st.integers(0, 99),
    data=st.data(),
)
def test_rank_shards_cover_every_batch_exactly_once(n, batch, world, seed, epoch, data):
    """An epoch's order is a permutation (a pure function of seed and epoch); split into global batches and over
    ranks, every rank takes the same number of batches, their shards (sizes within 1) cover each global batch exactly
    once, the examples used are all but fewer than one batch, and resuming at any batch continues the same shards."""
    order = epoch_order(seed, epoch, n)
    assert sorted(order.tolist()) == list(range(n)) and np.array_equal(order, epoch_order(seed, epoch, n))
    bs = min(batch, n)
    steps = n // bs
    start = data.draw(st.integers(0, steps))
    shards = [rank_batches(order, bs, start, steps, r, world) for r in range(world)]
    assert all(len(s) == steps - start for s in shards)
    for b in range(steps - start):
        parts = [shards[r][b] for r in range(world)]
        assert sorted(np.concatenate(parts).tolist()) == sorted(order[(start + b) * bs : (start + b + 1) * bs].tolist())
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    used = np.concatenate([np.zeros(0, np.int64)] + [np.concatenate(s) for s in shards if s])
    assert sorted(used.tolist()) == sorted(order[start * bs : steps * bs].tolist()) and n - steps * bs < bs
    for r in range(world):
        whole = rank_batches(order, bs, 0, steps, r, world)
        split = rank_batches(order, bs, 0, start, r, world) + shards[r]
        assert all(np.array_equal(x, y) for x, y in zip(whole, split, strict=True)) and len(whole) == len(split)


@props(60)
@given(setting=schedule_settings(), batch=st.integers(2, 64), lr=st.sampled_from(["cosine", "step"]))
def test_plan_steps_use_all_but_a_partial_batch_of_each_epoch(setting, batch, lr):
    """The run's plan: each epoch's steps are whole batches of its planned examples, leaving fewer than one batch
    (none for an epoch of fewer than 2 examples); the total is their sum."""
    name, params, ctx = setting
    n = max(2, ctx["num_examples"])
    values = {"data": {"spec": "x:y"}, "epochs": ctx["epochs"], "batch_size": batch, "schedule": name}
    cfg = build_config(TrainConfig, values={**values, "schedule_params": params, "lr_schedule": {"name": lr}})
    p = plan(cfg, n)
    assert p.batch_size == min(batch, n) and p.total_steps == sum(p.steps)
    for size, steps in zip(p.schedule.planned_sizes(), p.steps, strict=True):
        bs = min(p.batch_size, size)
        assert steps == 0 if size < 2 else steps * bs <= size < (steps + 1) * bs


@props(100)
@given(n=st.integers(1, 500), subset=optional(st.integers(1, 600)), seed=SEEDS)
def test_subset_indices_are_a_sorted_seeded_subset(n, subset, seed):
    """The data subset: sorted distinct indices into the data, ``subset`` of them (all without one), the same for the
    same seed; more than the data holds is a one-line error."""
    if subset is not None and subset > n:
        with pytest.raises(ThresherError) as exc:
            subset_indices(n, subset, seed)
        one_line(exc)
        return
    idx = subset_indices(n, subset, seed)
    assert len(idx) == (n if subset is None else subset) and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < n and np.array_equal(idx, subset_indices(n, subset, seed))
