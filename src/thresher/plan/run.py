"""``thresher plan``: given a target, a pool and a budget, pilot cheaply and recommend what to pre-train on (issue 19).

The plan scores the pool with the shared proxy models, selects every method x fraction (random always in), runs short
pilot pre-trainings of every candidate at ``levels`` compute levels and ``pilot_seeds`` seeds, each followed by the
validation linear probe (``pilots.Runs.measure``), within ``share`` of the budget; fits accuracy against compute per
candidate (``curves``) and recommends (``recommend``). ``check_plan`` runs the recommendation with what the budget
leaves and the whole pool with all of it, and writes predicted against measured: it alone reads the test split.
Everything is in FLOPs as the training loop counts them; C is the whole pool for ``epochs`` at the largest resolution.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from .. import atomic
from ..compute_match import ComputeUnit
from ..config import build_config
from ..data.loader import open_data
from ..errors import ThresherError
from ..runs import CONFIG_FILE, RunFolder
from ..scoring.cost import forward_flops_per_image
from ..scoring.table import ScoreTable, method_cost
from ..study import Stage, stage_key
from ..train.config import TrainConfig
from .config import PlanConfig
from .curves import Points
from .grid import Candidate, minimum_budget, pilot_grid
from .pilots import WHOLE_POOL, Runs
from .recommend import Piloted, recommend

PLAN = "plan.json"
CHECK = "check.json"


def candidates(cfg: PlanConfig) -> list[Candidate]:
    """Every method (random first) at every fraction, and the whole pool, at every resolution."""
    out = [Candidate(m, f, r) for r in cfg.resolutions for m in ["random", *cfg.methods] for f in cfg.fractions]
    return out + [Candidate(WHOLE_POOL, 1.0, r) for r in cfg.resolutions]


def _unit(cfg: PlanConfig, n_pool: int, num_classes: int) -> ComputeUnit:
    """C: the whole pool for ``epochs`` at the largest resolution, its FLOPs with the pool's own supervised head."""
    return ComputeUnit(cfg.backbone, max(cfg.resolutions), cfg.objective, cfg.epochs, n_pool, num_classes)


def _scoring_estimate(runs: Runs, score_values: dict) -> float:
    """The score run's estimated FLOPs (shared models once), before it runs: for the early refusal."""
    from ..scoring.estimate import estimate
    from ..scoring.pipeline import ScoreConfig, build_scorers

    scfg = build_config(ScoreConfig, values={**score_values, "runtime": runs.cfg.runtime.model_dump()})
    return float(estimate(scfg, build_scorers(scfg))["total"]["flops"])


def _grid(cfg: PlanConfig, cands: list[Candidate], budget: float, overhead: float, unit: ComputeUnit, n_pool: int,
          n_target: int, runs: Runs, in_units) -> tuple:  # fmt: skip
    """The pilot grid (levels in C), its measurement estimate and smallest pilot; a one-line refusal below the minimum
    budget, in C and in the budget's own unit."""
    per_measurement = n_target * forward_flops_per_image(cfg.backbone, max(cfg.resolutions)) / unit.flops
    smallest = max(cfg.min_steps * runs.batch(c, n_pool) * unit.per_image(c.resolution, cfg.objective)
                   for c in cands) / unit.flops  # fmt: skip
    # the overhead holds the probe of the backbone without pre-training too (the plan's reference point)
    kw = dict(scoring=overhead + per_measurement, per_measurement=per_measurement, smallest=smallest,
              levels=cfg.levels, ratio=cfg.ratio, share=cfg.share, seeds=cfg.pilot_seeds)  # fmt: skip
    try:
        return pilot_grid(cands, budget, **kw)
    except ThresherError as exc:
        need = minimum_budget(len(cands), **kw)
        raise ThresherError(f"{exc}{in_units(need)}") from None


def run_plan(cfg: PlanConfig, out: str | Path, *, force: bool = False, log=print) -> dict:
    """Score, select, pilot, fit and recommend into ``out`` (resumable); write plan.json / .md / .html."""
    from .write import write_plan

    t0 = time.perf_counter()
    (src_ds, src_idx), (_, tgt_idx) = open_data(cfg.source), open_data(cfg.target)
    n_pool, n_target = len(src_idx), len(tgt_idx)
    if n_target == 0:
        raise ThresherError(f"the target {cfg.target.spec} is empty")
    unit = _unit(cfg, n_pool, max(1, src_ds.num_classes))
    cands = candidates(cfg)
    budget = cfg.parsed_budget
    with RunFolder(out, "plan", cfg, force=force, keep=("stages",)) as run:
        runs = Runs(cfg, run.path.resolve() / "stages", unit, log)
        overhead = {}
        speed = None
        if budget.unit == "hours":  # this machine's speed, measured: the budget's FLOPs
            cal = runs.calibration()
            log(f"calibration: {cfg.calibration_steps} steps on the pool to measure this machine's speed")
            runs.run(cal)
            overhead["calibration"] = runs.cost(cal)
            speed = overhead["calibration"]["images"] / max(overhead["calibration"]["seconds"], 1e-9)
        b = budget.in_c(unit, speed)

        def in_units(need_c: float) -> str:
            if budget.unit == "C":
                return ""
            factor = budget.value / b
            return f" (= {need_c * factor:.3g} {budget.unit}{' on this machine' if budget.unit == 'hours' else ''})"

        log(f"{unit.describe()}; budget {budget} = {b:.3g} C")
        score = runs.score()
        cal_c = overhead.get("calibration", {}).get("flops", 0.0) / unit.flops
        est = _scoring_estimate(runs, runs.run_values(score)) / unit.flops
        _grid(cfg, cands, b, cal_c + est, unit, n_pool, n_target, runs, in_units)  # refuse before any work
        log(f"scoring the pool (estimated {est:.3g} C)")
        runs.run(score)
        report = ScoreTable.read_report(runs.folder(score))
        overhead["scoring"] = {k: float(report["cost"]["total"].get(k, 0.0)) for k in ("images", "flops", "seconds")}
        scored_c = overhead["scoring"]["flops"] / unit.flops
        grid = _grid(cfg, cands, b, cal_c + scored_c, unit, n_pool, n_target, runs, in_units)
        log(f"pilots: {len(cands)} candidates x {cfg.levels} levels ({', '.join(f'{c:.3g}' for c in grid.levels)} C) "
            f"x {cfg.pilot_seeds} seeds")  # fmt: skip
        selections = {}
        for c in cands:
            if c.method != WHOLE_POOL and (c.method, c.fraction) not in selections:
                selections[(c.method, c.fraction)] = runs.select(score, c.method, c.fraction)
                runs.run(selections[(c.method, c.fraction)])
        scratch = runs.measure(None)
        pilots, k = [], 0
        for c in cands:
            sel = selections.get((c.method, c.fraction))
            for level in grid.levels:
                images = unit.images(level * unit.flops, c.resolution, cfg.objective)
                for s in range(cfg.pilot_seeds):
                    k += 1
                    st = runs.pretrain(f"pilot-{_cand_slug(c)}-c{level:.4g}-s{s}", c, images, cfg.seed + s, n_pool, sel)
                    runs.run(st)
                    got = runs.measure(st)
                    cost = runs.cost(st)
                    pilots.append({"candidate": c.name, "level": level, "seed": cfg.seed + s, "images": images,
                                   "compute_C": cost["flops"] / unit.flops, "accuracy": got["accuracy"],
                                   "cost": cost, "measurement": got["cost"], "folder": st.folder})  # fmt: skip
                    log(f"[pilot {k}/{len(cands) * cfg.levels * cfg.pilot_seeds}] {c.name} at {level:.3g} C, seed "
                        f"{cfg.seed + s}: validation top-1 {got['accuracy']:.4f}")  # fmt: skip
        overhead["pilots"] = _sum([p["cost"] for p in pilots])
        overhead["measurements"] = _sum([p["measurement"] for p in pilots] + [scratch["cost"]])
        spent = sum(v["flops"] for v in overhead.values()) / unit.flops
        piloted = {}
        for c in cands:
            mine = [p for p in pilots if p["candidate"] == c.name]
            paid = 0.0 if c.method in (WHOLE_POOL, "random") else method_cost(report, c.method)["flops"] / unit.flops
            points = Points.of([p["compute_C"] for p in mine], [p["accuracy"] for p in mine])
            piloted[c.name] = Piloted(c, paid, points)
        whole = next(c for c in cands if c.method == WHOLE_POOL and c.resolution == max(cfg.resolutions))
        answer = recommend(piloted, b, spent, whole_pool=whole.name, seed=cfg.seed)
        chosen = next(c for c in cands if c.name == answer["recommended"])
        final = {
            "recommended": _final(
                runs, cfg, unit, chosen, answer["left_C"], selections, n_pool, run.path, "recommended"
            ),
            "whole_pool": _final(runs, cfg, unit, whole, b, selections, n_pool, run.path, "whole-pool"),
        }
        doc = {
            "budget": {"given": str(budget), "C": b, "images_per_second": speed},
            "unit": {
                "flops": unit.flops,
                "what": unit.describe(),
                "n_pool": n_pool,
                "n_target": n_target,
                "num_classes": unit.num_classes,
            },
            "overhead": overhead,
            "spent_C": spent,
            "share_spent": spent / b,
            "share_allowed": cfg.share,
            "levels_C": list(grid.levels),
            "no_pretraining": scratch["accuracy"],
            "pilots": pilots,
            "score_folder": str(runs.folder(score)),
            "final": final,
            **answer,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        atomic.write_json(run.file(PLAN), doc)
        write_plan(run.path, doc, cfg, log=log)
        return doc


def _cand_slug(c: Candidate) -> str:
    what = "whole" if c.method == WHOLE_POOL else f"{c.method}-{c.fraction:g}"
    return f"{what}-{c.resolution}px".replace(".", "p")


def _final(runs: Runs, cfg: PlanConfig, unit: ComputeUnit, c: Candidate, compute: float, selections: dict,
           n_pool: int, root: Path, name: str) -> dict:  # fmt: skip
    """A full-budget run: its stage (``--check`` runs it), and the config file behind the plan's commands."""
    images = unit.images(compute * unit.flops, c.resolution, cfg.objective)
    sel = selections.get((c.method, c.fraction))
    st = runs.pretrain(f"final-{_cand_slug(c)}", c, images, cfg.seed, n_pool, sel)
    config_file = root / f"{name}-pretrain.yaml"
    values = runs.run_values(st)
    values.pop("runtime", None)
    atomic.write_text(config_file, yaml.safe_dump(values, sort_keys=False))
    n = n_pool if sel is None else max(1, round(c.fraction * n_pool))
    return {"candidate": c.name, "compute_C": compute, "images": images, "epochs": images / n, "subset_size": n,
            "batch_size": runs.batch(c, n_pool), "lr": build_config(TrainConfig, values=values).optim.lr,
            "name": st.name, "key": st.key, "config": str(config_file),
            "selection": str(runs.folder(sel)) if sel else None}  # fmt: skip


def _sum(costs: list[dict]) -> dict[str, float]:
    return {k: float(sum(c.get(k, 0.0) for c in costs)) for k in ("images", "flops", "seconds")}


def load_plan(folder: str | Path) -> tuple[PlanConfig, dict]:
    """A finished plan's config and plan.json."""
    folder = Path(folder)
    if not (folder / PLAN).is_file():
        raise ThresherError(f"{folder} holds no {PLAN}: run `thresher plan --source ... --out {folder}` first")
    cfg = build_config(PlanConfig, file=folder / CONFIG_FILE)
    return cfg, atomic.read_json(folder / PLAN, fix="run the plan again")


def check_plan(folder: str | Path, *, target_test: str | None = None, log=print) -> dict:
    """Run the recommendation (with what the plan left) and the whole pool (with the whole budget), measure both as
    the pilots were measured, predicted against measured, and their test top-1: the only reader of the test split."""
    from ..evaluate.config import EvalConfig
    from ..evaluate.run import evaluate
    from ..pretrain.run import pretrain
    from ..train.config import TrainConfig
    from .write import write_plan

    cfg, doc = load_plan(folder)
    test = cfg.target_test.model_dump() if cfg.target_test else None
    if target_test:
        test = {**(test or {}), "spec": target_test}
    if test is None:
        raise ThresherError("--check needs the target's test split: give --target-test SPEC")
    unit = _unit(cfg, doc["unit"]["n_pool"], doc["unit"]["num_classes"])
    with RunFolder(folder, "plan", cfg) as run:
        runs = Runs(cfg, run.path.resolve() / "stages", unit, log)
        rows = {}
        for role, predicted in (("recommended", doc["candidates"][doc["recommended"]]["prediction"]),
                                ("whole_pool", doc["whole_pool_at_budget"])):  # fmt: skip
            f = doc["final"][role]
            st = Stage("pretrain", f["name"], {})
            st.key = f["key"]
            log(f"--check: {role.replace('_', ' ')}: {f['candidate']}, {f['images']:,} images ({f['compute_C']:.3g} C)")
            # the plan's own config file, the one its commands name: what --check runs is what a user would run
            tcfg = build_config(TrainConfig, file=f["config"], values={"runtime": cfg.runtime.model_dump()})
            pretrain(tcfg, runs.folder(st), log=log)
            got = runs.measure(st)
            ev = build_config(EvalConfig, values={
                **runs.probe_config(runs.folder(st)).model_dump(), "test": test, "seeds": 1})  # fmt: skip
            # a folder per test split: another --target-test is another evaluation, not a refusal
            tested = evaluate(ev, runs.root / f"evaluate-{st.folder}-{stage_key(test, [])}", log=log)
            cost = runs.cost(st)
            total = cost["flops"] / unit.flops + (doc["spent_C"] if role == "recommended" else 0.0)
            rows[role] = {
                "candidate": f["candidate"],
                "predicted": predicted,
                "measured": got["accuracy"],
                "in_interval": predicted["low"] <= got["accuracy"] <= predicted["high"],
                "test_top1": tested["summary"][tested["primary"]]["mean"],
                "pretraining": cost,
                "total_C": total,
                "within_budget": total <= doc["budget"]["C"] * (1 + 1e-6),
            }
        check = {"test": test["spec"], "rows": rows}
        atomic.write_json(run.file(CHECK), check)
        write_plan(run.path, doc, cfg, check=check, log=log)
        return check
