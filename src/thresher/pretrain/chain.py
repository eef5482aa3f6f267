"""Hierarchical pre-training chains (001, HPT): base -> source -> target, each stage starting from the previous one.

A chain config names an optional ``base`` checkpoint (torchvision, timm, MoCo-style or thresher), ``defaults``
shared by every stage (any training-config keys) and the ``stages`` in order, each a name plus its own training-config
keys (data, objective, epochs, ``train: bn`` ...). Stage ``k`` is a normal pre-training run in ``OUT/0k-NAME``,
initialised from stage ``k-1``'s checkpoint (the first from ``base``), so a killed chain resumes stage by stage.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from .. import atomic
from ..config import Section, build_config, merge, runtime
from ..errors import ThresherError
from ..models.checkpoint import checkpoint_path
from ..runs import RunFolder, file_digest
from ..train.config import TrainConfig

SUMMARY = "chain.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ChainConfig(Section):
    """``thresher pretrain --chain FILE``: stages trained one after the other, each from the previous checkpoint."""

    base: str | None = runtime(None, description="checkpoint the first stage starts from (fingerprinted by content)")
    defaults: dict[str, Any] = Field(default_factory=dict, description="training-config keys shared by every stage")
    stages: list[dict[str, Any]] = Field(min_length=1, description="[{name: source, data: {spec: ...}, ...}, ...]")

    @field_validator("stages")
    @classmethod
    def _named(cls, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = []
        for k, stage in enumerate(stages):
            name = stage.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"stage {k + 1} needs a name of letters, digits, '-', '_' or '.' (got {name!r})")
            if "init" in stage and k > 0:
                raise ValueError(f"stage {name!r} sets init; every stage after the first starts from the previous one")
            names.append(name)
        if len(set(names)) != len(names):
            raise ValueError("two stages have the same name")
        return stages

    def stage_configs(self, out: Path, runtime_values: dict | None = None) -> list[tuple[str, Path, TrainConfig]]:
        """(name, run folder, validated training config) per stage; stage k's init is stage k-1's checkpoint."""
        result = []
        previous = self.base
        for k, stage in enumerate(self.stages):
            values = merge(copy.deepcopy(self.defaults), {key: v for key, v in stage.items() if key != "name"})
            if runtime_values:
                values = merge(values, copy.deepcopy(runtime_values))
            if k > 0 or "init" not in values:
                values["init"] = previous
            folder = Path(out) / f"{k + 1:02d}-{stage['name']}"
            try:
                cfg = build_config(TrainConfig, values=values)
            except ThresherError as exc:
                raise ThresherError(f"chain stage {stage['name']!r}: {exc}") from None
            result.append((stage["name"], folder, cfg))
            previous = str(checkpoint_path(folder))
        return result


def run_chain(
    cfg: ChainConfig, out: str | Path, *, force: bool = False, log=print, runtime_values: dict | None = None
) -> dict:
    """Run (or resume) every stage in order into ``out``; returns the per-stage summaries and the total cost."""
    from .run import pretrain

    out = Path(out)
    stages = cfg.stage_configs(out, runtime_values)  # every stage validated before anything runs
    inputs = {"base_sha256": file_digest(cfg.base)} if cfg.base else {}
    with RunFolder(out, "chain", cfg, force=force, inputs=inputs) as run:
        summaries = {}
        for k, (name, folder, tcfg) in enumerate(stages):
            log(f"chain stage {k + 1}/{len(stages)}: {name} ({tcfg.objective} on {tcfg.data.spec}) -> {folder}")
            summaries[name] = pretrain(tcfg, folder, force=force, log=log)
        total = {key: sum(s["cost"][key] for s in summaries.values()) for key in ("images", "seconds", "flops")}
        result = {"stages": summaries, "cost": total, "checkpoint": str(checkpoint_path(stages[-1][1]))}
        atomic.write_json(run.file(SUMMARY), result)
        return result
