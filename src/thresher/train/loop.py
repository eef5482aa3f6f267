"""The one training loop: any objective, any data schedule, any dataset, resumable to identical weights on CPU.

The examples of an epoch come from the data schedule (full, drop-and-pick), their order is a function of
(seed, epoch) and augmentation of (seed, step); the learning rate is a function of the progress in epochs. Model,
optimizer, data schedule, RNG state, position and cost are checkpointed atomically, so a killed run re-started on its
folder continues exactly where the last checkpoint left it. The loop never asks which objective it runs: it reads
``loss`` and ``per_sample_loss`` (fed to the data schedule) from the objective's output.
"""

from __future__ import annotations

import copy
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from .. import distributed as dist_utils
from ..data.base import BadImageLog, ImageDataset
from ..data.loader import iterate_batches
from ..data.transforms import build_transform, step_generator
from ..device import autocast, memory_format
from ..errors import ThresherError
from ..models.checkpoint import checkpoint_path, kept_checkpoint_path, read_checkpoint, write_checkpoint
from ..progress import progress_bar
from .config import TrainConfig
from .data_schedule import DataSchedule, build_schedule
from .lr_schedules import LR_SCHEDULES, default_milestones
from .trainable import trainable_parameters

LOG = "log.jsonl"
SUMMARY = "summary.json"


@dataclass
class TrainState:
    """Everything besides weights that a resumed run needs to continue identically."""

    step: int = 0
    epoch: int = 0  # the epoch being trained (from 0)
    pos: int = 0  # batches of it already done
    images: int = 0
    seconds: float = 0.0
    flops_per_image: float = 0.0
    epoch_loss_sum: float = 0.0
    epoch_correct: float = 0.0
    epoch_count: int = 0
    done: bool = False
    bn_images: int = 0  # images through the batch-norm recalibration pass (forward only)
    bn_flops: float = 0.0


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of positions for ``epoch``: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x7EED]).permutation(n)


def rank_batches(order: np.ndarray, batch_size: int, start: int, steps: int, rank: int = 0, world: int = 1) -> list:
    """One process's share of global batches ``start .. steps - 1`` of an epoch: batch ``b`` is
    ``order[b * batch_size : (b + 1) * batch_size]`` and rank ``r`` of ``world`` takes its rows ``r::world``, so the
    ranks together see each row of every global batch exactly once; rows after the last whole batch are not used."""
    return [order[b * batch_size : (b + 1) * batch_size][rank::world] for b in range(start, steps)]


@dataclass
class Plan:
    """What a run will do, known before it starts: its data schedule, batch size, the steps it takes in each epoch
    (the last one cut where a step or image budget ends), each epoch's full length in steps (the learning rate's
    clock), and the run's length in epochs for the learning-rate schedule (fractional under a budget)."""

    schedule: DataSchedule
    batch_size: int
    steps: list[int]
    epoch_steps: list[int]
    lr_epochs: float
    milestones: list[float] | None = None

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    @property
    def epochs(self) -> int:
        return len(self.steps)


def plan(cfg: TrainConfig, n: int) -> Plan:
    """The data schedule of a run on ``n`` examples and its steps (the last partial batch of an epoch is dropped).

    The run's length is ``epochs``, or a budget of ``steps`` or ``images`` (001 trains for 50 / 500 / 5k steps): then
    the run takes the fewest epochs whose steps reach the budget and stops there, and the learning rate follows
    progress through the budget, so a budget of whole epochs gives exactly the run of that many epochs.
    """
    if n < 2:
        raise ThresherError(f"training needs at least 2 examples (batch norm), got {n}")
    batch = min(cfg.batch_size, n)

    def build(epochs: int, lr_epochs: float) -> tuple[DataSchedule, list[int], list[int], list[float] | None]:
        decay = _milestones(cfg, lr_epochs)
        schedule = build_schedule(cfg.schedule, cfg.schedule_params, num_examples=n, epochs=epochs,
                                  decay_epochs=decay, seed=cfg.seed)  # fmt: skip
        planned = schedule.planned_sizes()
        sizes = [min(batch, size) for size in planned]  # an epoch smaller than a batch: one step of all of it
        steps = [size // b if size >= 2 else 0 for size, b in zip(planned, sizes, strict=True)]
        return schedule, steps, sizes, decay

    if cfg.steps is None and cfg.images is None:
        schedule, steps, _, decay = build(cfg.epochs, cfg.epochs)
        return Plan(schedule, batch, steps, list(steps), float(cfg.epochs), decay)
    # a budget in steps, or in images (each epoch's steps times its batch: a data schedule's short epochs count less)
    budget, unit = (cfg.steps, None) if cfg.steps is not None else (cfg.images // batch * batch, "images")
    if budget == 0:  # no step at all (001's "Base": batch-norm statistics recomputed, no gradient step)
        schedule, _, _, decay = build(1, 0.0)
        return Plan(schedule, batch, [], [], 0.0, decay)

    def spent(steps: list[int], sizes: list[int]) -> int:
        return sum(st * (b if unit else 1) for st, b in zip(steps, sizes, strict=True))

    first = max(1, -(-budget // (max(1, n // batch) * (batch if unit else 1))))
    epochs = first
    while True:  # a data schedule that drops examples takes fewer steps per epoch: more epochs reach the budget
        _, steps, sizes, _ = build(epochs, epochs)
        if spent(steps, sizes) >= budget:
            break
        if epochs >= 4 * first + 16:
            raise ThresherError(
                f"data schedule {cfg.schedule} spends only {spent(steps, sizes)} of a budget of {budget} "
                f"{unit or 'steps'} in {epochs} epochs (it keeps too little data); give a smaller budget or keep more"
            )
        epochs += 1
    full = list(steps)
    over = spent(steps, sizes) - budget  # cut the last epoch where the budget ends (whole batches: within one)
    steps[-1] -= over // (sizes[-1] if unit else 1)
    lr_epochs = epochs - 1 + steps[-1] / max(1, full[-1])
    schedule, _, _, decay = build(epochs, lr_epochs)
    return Plan(schedule, batch, steps, full, lr_epochs, decay)


def _milestones(cfg: TrainConfig, lr_epochs: float) -> list[float] | None:
    """The step schedule's decay points in epochs: given, as fractions of the run, or a third and two thirds."""
    lr = cfg.lr_schedule
    if lr.name != "step":
        return None
    if lr.milestone_fractions is not None:
        return [f * lr_epochs for f in lr.milestone_fractions]
    return list(lr.milestones) if lr.milestones is not None else default_milestones(lr_epochs)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory: allocated CUDA memory on a GPU (reset when a run starts), else the process's peak resident set
    size, which cannot be reset: on the CPU it is the high-water mark of everything the process ran before too."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov and o.momentum > 0
        )
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def count_flops_per_image(objective: nn.Module, batch: dict) -> float:
    """Forward + backward FLOPs per image, counted by torch on a copy (BN statistics of the real model untouched)."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(objective)
    rng = torch.get_rng_state()
    try:
        with FlopCounterMode(display=False) as counter:
            out = probe(batch)
            out["loss"].backward()
        n = len(batch["labels"]) if "labels" in batch else batch["images"].shape[0]
        return counter.get_total_flops() / max(1, n)
    except Exception:  # some third-party modules cannot be traced; cost then reports images and seconds only
        return 0.0
    finally:
        torch.set_rng_state(rng)


class Trainer:
    """Trains ``objective`` on ``dataset[indices]`` following ``cfg`` into the run folder ``root``.

    ``indices`` may repeat an example (a manifest's counts); ``weights`` are optional per-position loss weights.
    """

    def __init__(
        self,
        objective: nn.Module,
        dataset: ImageDataset,
        indices: np.ndarray,
        cfg: TrainConfig,
        root: Path,
        device: torch.device,
        *,
        log=print,
        weights: np.ndarray | None = None,
    ):
        self.objective = objective.to(device).to(memory_format=memory_format(device))
        self.ds, self.indices, self.cfg, self.root, self.device, self.log = dataset, indices, cfg, root, device, log
        self.dist = dist_utils.info()
        n = len(indices)
        self.plan = plan(cfg, n)
        if self.dist.active and self.plan.batch_size % self.dist.world:
            raise ThresherError(
                f"batch size {self.plan.batch_size} does not split evenly over {self.dist.world} processes; "
                f"use a multiple of {self.dist.world}"
            )
        self.schedule = self.plan.schedule
        self.batch_size = self.plan.batch_size
        self.total_steps = self.plan.total_steps
        beyond = [k for k in cfg.keep_at if k > self.total_steps]
        if beyond:
            raise ThresherError(
                f"keep_at step {beyond[0]} is beyond the run's {self.total_steps} steps; keep steps up to the budget"
            )
        self.keep_at = set(cfg.keep_at)
        params = trainable_parameters(self.objective, cfg.train)
        # DistributedDataParallel all-reduces gradients under torchrun; the objective itself stays the saved module
        self.model: nn.Module = self.objective
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.model = DistributedDataParallel(self.objective, device_ids=ids)
        self.optimizer = build_optimizer(params, cfg)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        ls = cfg.lr_schedule
        length = self.plan.lr_epochs
        warmup = ls.warmup_fraction * length if ls.warmup_fraction is not None else min(ls.warmup_epochs, length)
        self.lr_factor = LR_SCHEDULES.create(
            ls.name,
            epochs=length,
            warmup_epochs=warmup,
            min_factor=ls.min_factor,
            milestones=self.plan.milestones,
            gamma=ls.gamma,
        )
        overrides = {"scale": tuple(cfg.crop_scale)} if cfg.crop_scale else {}
        kind = cfg.transform or getattr(objective, "transform", "train")
        self.transform = build_transform(kind, cfg.resolution, **overrides)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
        self.reads_targets = bool(getattr(objective, "reads_targets", False))
        self.state = TrainState()
        self.skipped = BadImageLog()
        labels = dataset.labels[indices]
        self.labels = torch.from_numpy(labels)
        if weights is not None:  # per-example loss weights (class balance), aligned with indices
            weights = np.asarray(weights, dtype=np.float32)
            if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
                raise ThresherError(f"example weights must be {n} finite non-negative numbers")
        self.weights = None if weights is None else torch.from_numpy(weights)
        if getattr(objective, "needs_labels", False) and (labels < 0).any():
            raise ThresherError(
                f"{cfg.objective} pre-training needs labels, but {int((labels < 0).sum())} of the "
                f"{n} examples of {dataset.spec} have none"
            )

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, path: Path | None = None) -> None:
        """Write the checkpoint atomically (rank 0); weights that went non-finite never replace the last good one.
        ``path``: elsewhere than the run's checkpoint (the weights kept after a step, ``keep_at``).

        Under torchrun every rank calls it (the weights are checked everywhere, so all ranks stop together, and the
        data schedule's partial per-sample losses are summed over the ranks into the saved state).
        """
        for name, t in self.objective.state_dict().items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
                raise ThresherError(
                    f"weights became non-finite ({name}) by step {self.state.step}; {self._kept()}; lower the "
                    "learning rate (--lr or --set optim.lr=...) and re-run"
                )
        schedule_state = self.schedule.state_dict()
        if self.dist.active:  # rank 0 saves the whole epoch-so-far; on resume only rank 0 keeps it
            for key in ("epoch_loss_sum", "epoch_loss_count"):
                local = getattr(self.schedule, key)
                schedule_state[key] = torch.from_numpy(dist_utils.all_reduce_sum(local).copy())
        if not self.dist.main:
            return
        write_checkpoint(
            path or checkpoint_path(self.root),
            backbone=self.cfg.backbone,
            model=self.objective.state_dict(),
            optimizer=self.optimizer.state_dict(),
            data_schedule=schedule_state,
            scaler=self.scaler.state_dict() if self.scaler else None,
            rng={
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            state=dict(self.state.__dict__),
            skipped={"count": self.skipped.count, "first": self.skipped.first},
            objective=self.cfg.objective,
            classes=self.ds.classes,
            config=self.cfg.model_dump(mode="json"),
        )

    def _nothing_read(self) -> str:
        """The error when a whole first epoch trained on no image (every one unreadable)."""
        bad = self.skipped
        first = f" (first: {', '.join(bad.first)})" if bad.first else ""
        return (
            f"no image of {self.ds.spec} could be trained on: {bad.count} of {len(self.indices)} are unreadable"
            f"{first}; fix or remove the broken files, or check the dataset spec"
        )

    def _kept(self) -> str:
        """What a divergence leaves behind: the last good checkpoint, or none (training stopped before the first)."""
        path = checkpoint_path(self.root)
        if path.is_file():
            return f"the last good checkpoint ({path}) is kept"
        return "no checkpoint had been written yet"

    def try_resume(self) -> bool:
        path = checkpoint_path(self.root)
        if not path.is_file():
            return False
        try:
            ckpt = read_checkpoint(path)
        except ThresherError as exc:
            raise ThresherError(f"cannot resume from {path}: {exc}; move it away to restart the run") from None
        self.objective.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if "data_schedule" in ckpt:
            self.schedule.load_state_dict(ckpt["data_schedule"])
            if self.dist.active and not self.dist.main:  # the saved partial sums are all ranks' already
                self.schedule.epoch_loss_sum[:] = 0.0
                self.schedule.epoch_loss_count[:] = 0.0
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        state = dict(ckpt["state"])
        if "epoch" not in state:  # a checkpoint from before data schedules: the full schedule's position
            state["epoch"], state["pos"] = divmod(state["step"], max(1, self.plan.steps[0]))
        self.state.__dict__.update(TrainState(**state).__dict__)  # in place: callers may hold it
        self.skipped = BadImageLog(count=ckpt["skipped"]["count"], first=list(ckpt["skipped"]["first"]))
        if self.dist.main:
            self._truncate_log(self.state.step)
        return True

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint, so a resumed log equals an uninterrupted one."""
        f = self.root / LOG
        if not f.is_file():
            return
        keep = []
        for ln in f.read_text().splitlines():
            try:
                if json.loads(ln)["step"] <= step:
                    keep.append(ln)
            except (ValueError, KeyError, TypeError):  # a line cut by the kill
                continue
        atomic.write_text(f, "".join(k + "\n" for k in keep))

    def _append_log(self, record: dict) -> None:
        if not self.dist.main:
            return
        with open(self.root / LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # --- the loop -----------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        resumed = self.try_resume()
        st = self.state
        if resumed:
            if st.done:  # killed after the last checkpoint, maybe before summary.json: finish the bookkeeping
                self.log(f"{self.root}: already complete ({st.step} steps), nothing to do")
                return self._finish()
            self.log(f"{self.root}: resuming at step {st.step} of {self.total_steps}")
        self.objective.train()
        bar = progress_bar(
            self.total_steps, "train", enabled=cfg.runtime.progress and self.dist.main, initial=st.step, unit="step"
        )
        last_ckpt = tick = time.perf_counter()
        if st.step == 0 and 0 in self.keep_at:  # the starting weights
            self.save(kept_checkpoint_path(self.root, 0))
        while st.epoch < self.plan.epochs:
            epoch = st.epoch
            active = self.schedule.active(epoch)
            order = active[epoch_order(cfg.seed, epoch, len(active))]
            bs = min(self.batch_size, len(order))
            steps = self.plan.steps[epoch]
            rank, world = self.dist.rank, self.dist.world  # each process takes its share of every global batch
            batches = rank_batches(order, bs, st.pos, steps, rank, world)
            data = iterate_batches(
                self.ds,
                [self.indices[b] for b in batches],
                cfg.resolution,
                num_workers=cfg.runtime.num_workers,
                strict=cfg.data.strict,
                pin_memory=self.device.type == "cuda",
            )
            for b, (idx, x, ok) in zip(batches, data, strict=True):
                if epoch == 0:  # every example is seen in the first epoch: count unreadable ones once
                    self.skipped.add(self.ds.ids[idx[~ok]])
                progress = epoch + (st.pos + 1) / max(1, self.plan.epoch_steps[epoch])
                # dense targets and captions ride along for an objective that reads them (the others see
                # images and labels)
                extra = self.ds.batch_targets(idx[ok], cfg.resolution) if self.reads_targets else None
                loss, acc, n = self._step(x, b[ok], progress, extra)
                st.step += 1
                st.pos += 1
                if n:
                    st.images += n
                    st.epoch_loss_sum += loss * n
                    st.epoch_correct += (0.0 if math.isnan(acc) else acc) * n
                    st.epoch_count += n
                if st.step in self.keep_at:  # a point of the convergence curve (RUN@STEP), with its cost so far
                    self.save(kept_checkpoint_path(self.root, st.step))
                now = time.perf_counter()  # wall time per step, data loading included
                st.seconds += now - tick
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{n / max(1e-9, now - tick):.0f}")
                tick = now
                if st.step % cfg.log_every == 0 and n:
                    self._append_log(
                        {
                            "step": st.step,
                            "epoch": epoch,
                            "loss": round(loss, 6),
                            "acc": round(acc, 4),
                            "lr": self.optimizer.param_groups[0]["lr"],
                        }
                    )
                due = cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0
                timed = time.perf_counter() - last_ckpt > cfg.checkpoint_minutes * 60
                save_now = bool(due or timed) and st.pos < steps
                if self.dist.active:  # one decision for all ranks: saving is a collective
                    save_now = dist_utils.any_rank(save_now)
                if save_now:
                    self.save()
                    last_ckpt = time.perf_counter()
            # every image of the first epoch unreadable: stop instead of saving an untrained model (a batch left with
            # a single readable image is skipped by design, so "nothing trained" alone is not an error)
            if epoch == 0 and st.images == 0 and self.skipped.count >= steps * bs:
                raise ThresherError(self._nothing_read())
            self.schedule.end_epoch(epoch, dist_utils.all_reduce_sum if self.dist.active else None)
            self._append_log(
                {
                    "step": st.step,
                    "epoch": epoch,
                    "epoch_end": True,
                    "loss": st.epoch_loss_sum / max(1, st.epoch_count),
                    "acc": st.epoch_correct / max(1, st.epoch_count),
                    "examples": len(active),
                    "images": st.images,
                }
            )
            st.epoch_loss_sum = st.epoch_correct = 0.0
            st.epoch_count = 0
            st.epoch, st.pos = epoch + 1, 0
            st.done = st.epoch >= self.plan.epochs and not cfg.recalibrate_bn  # else done after recalibrating
            self.save()
            last_ckpt = time.perf_counter()
        bar.close()
        if cfg.recalibrate_bn and not st.bn_images:
            self.recalibrate_bn()
        if not st.done:  # a budget of no step: the run is its starting weights (after recalibration, if asked)
            st.done = True
            self.save()
        return self._finish()

    @torch.no_grad()
    def recalibrate_bn(self) -> None:
        """001's "Base" variant of hierarchical pre-training: the backbone's batch-norm running statistics recomputed
        as the plain average over every training image (seen once, evaluation transform), no weight changed."""
        from ..embed import forward_flops_per_image

        backbone = self.objective.backbone
        norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            raise ThresherError(f"recalibrate_bn: backbone {self.cfg.backbone} has no batch-norm layer")
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
        backbone.train()
        transform = build_transform("eval", self.cfg.resolution)
        started, seen = time.perf_counter(), 0
        chunks = [self.indices[s : s + self.batch_size] for s in range(0, len(self.indices), self.batch_size)]
        data = iterate_batches(self.ds, chunks, self.cfg.resolution,
                               num_workers=self.cfg.runtime.num_workers, strict=self.cfg.data.strict,
                               pin_memory=self.device.type == "cuda")  # fmt: skip
        for _, x, _ in data:
            if len(x) < 2:
                continue
            images = transform(x.to(self.device, non_blocking=True))
            backbone.forward_features(images.contiguous(memory_format=memory_format(self.device)))
            seen += len(x)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        st = self.state
        st.bn_images = seen
        st.bn_flops = seen * forward_flops_per_image(backbone.eval(), self.cfg.resolution)
        self.objective.train()
        st.seconds += time.perf_counter() - started
        self.log(f"{self.root}: batch-norm statistics recomputed on {seen} images")

    def _finish(self) -> dict:
        if self.skipped.count:
            self.log(f"warning: {self.skipped.summary()}")
        dist_utils.barrier()  # rank 0's last log lines are written
        summary = self.summary()
        if self.dist.main:
            atomic.write_json(self.root / SUMMARY, summary)
        return summary

    def _step(
        self, x: torch.Tensor, pos: np.ndarray, progress: float, extra: dict[str, list] | None = None
    ) -> tuple[float, float, int]:
        """One optimisation step on images ``x`` of the examples at positions ``pos`` of ``indices``.

        ``progress``: epochs done after this step (the learning rate's clock); ``extra``: what the batch carries
        besides labels (``ImageDataset.batch_targets``), transformed with the images and added to the batch.
        """
        factor = self.lr_factor(progress)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        too_few = len(x) < 2  # unreadable images left (almost) nothing: no update, but the schedule moves on
        if self.dist.active:  # every rank skips together or none does (DDP's gradient all-reduce needs all)
            too_few = dist_utils.all_reduce_sum(np.array([float(too_few)]))[0] > 0
        if too_few:
            return math.nan, math.nan, 0
        dev = self.device
        gen = step_generator(self.cfg.seed, self.state.step, dev, stream=self.dist.rank)
        if extra is None:
            images = self.transform(x.to(dev, non_blocking=True), gen)
        else:
            images, extra = self.transform.with_targets(x.to(dev, non_blocking=True), gen, extra)
            extra = {k: [t.to(dev) if isinstance(t, torch.Tensor) else t for t in v] for k, v in extra.items()}
        if isinstance(images, tuple):
            images = tuple(v.contiguous(memory_format=memory_format(dev)) for v in images)
        else:
            images = images.contiguous(memory_format=memory_format(dev))
        pos_t = torch.from_numpy(pos)
        batch = {"images": images, "labels": self.labels[pos_t].to(dev), "index": pos_t.to(dev), **(extra or {})}
        if self.weights is not None:
            batch["weights"] = self.weights[pos_t].to(dev)
        if self.state.flops_per_image == 0.0:  # once per run (on a copy: no side effects); -1 = not countable
            self.state.flops_per_image = count_flops_per_image(self.objective, batch) or -1.0
        with autocast(dev):
            out = self.model(batch)
        loss = out["loss"]
        n = len(x)
        loss_value = float(loss.detach())
        acc = float(out["accuracy"]) if "accuracy" in out else math.nan
        if self.dist.active:  # the global batch's numbers, identical on every rank
            total = dist_utils.all_reduce_sum(np.array([loss_value * n, acc * n, n], np.float64))
            loss_value, acc, n = total[0] / total[2], total[1] / total[2], int(total[2])
        if not math.isfinite(loss_value):
            raise ThresherError(
                f"loss became {loss_value} at step {self.state.step}; {self._kept()}; lower the learning rate "
                "(--lr or --set optim.lr=...) and re-run"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.schedule.record(pos, out["per_sample_loss"].detach().float().cpu().numpy())
        return loss_value, acc, n

    def summary(self) -> dict:
        st = self.state
        log_file = self.root / LOG
        log = [json.loads(ln) for ln in log_file.read_text().splitlines()] if log_file.is_file() else []
        epochs = [r for r in log if r.get("epoch_end")]
        # the full schedule's images under the same batching (the last partial batch of an epoch is dropped)
        full = self.plan.lr_epochs * (len(self.indices) // self.batch_size) * self.batch_size
        return {
            "steps": st.step,
            "epochs": self.plan.lr_epochs,
            "kept_at": sorted(self.keep_at),
            "recalibrated_bn_images": st.bn_images,
            "examples": len(self.indices),
            "schedule": {"name": self.cfg.schedule, **self.schedule.report()},
            "epoch_loss": [round(r["loss"], 6) for r in epochs],
            "epoch_acc": [round(r["acc"], 6) for r in epochs],
            "skipped": {"count": self.skipped.count, "first": self.skipped.first},
            "cost": {
                "images": st.images,
                "seconds": round(st.seconds, 3),
                "flops": max(0.0, st.flops_per_image) * st.images + st.bn_flops,
                "flops_per_image": max(0.0, st.flops_per_image),
                "peak_memory_bytes": peak_memory_bytes(self.device),
                # examples processed over the full schedule's (003); unreadable images are not processed
                "computation": round(st.images / max(1, full), 6),
            },
        }
