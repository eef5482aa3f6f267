"""``thresher compare RUN_A RUN_B``: are two evaluated models different on the same test set, and how?

Reads two ``thresher evaluate`` folders: the paired bootstrap of their per-example correctness (averaged over seeds),
the IoU of their misclassified test examples and the RV2 similarity of their frozen features on the test images
(001 appendix C.7), with top-1 of each.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .. import atomic
from ..analysis.similarity import error_iou, layer_activations, rv2
from ..config import DataConfig
from ..data.loader import data_identity, open_data
from ..errors import ThresherError
from ..models import build_backbone
from . import metrics as M
from .run import METRICS, PREDICTIONS

COMPARISON = "comparison.json"


def _load(run: Path) -> tuple[dict, dict]:
    run = Path(run)
    if not (run / METRICS).is_file() or not (run / PREDICTIONS).is_file():
        raise ThresherError(f"{run} is not a finished thresher evaluate folder (no {METRICS} / {PREDICTIONS})")
    try:
        with np.load(run / PREDICTIONS, allow_pickle=False) as z:
            pred = {k: z[k] for k in z.files}
        metrics = json.loads((run / METRICS).read_text())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ThresherError(
            f"cannot read the results in {run} ({type(exc).__name__}); re-run the same thresher evaluate command"
        ) from None
    missing = [k for k in ("ids", "labels", "probs") if k not in pred]
    if not isinstance(metrics, dict) or "test_identity" not in metrics or missing:
        raise ThresherError(f"{run} does not hold thresher evaluate results; re-run the same thresher evaluate command")
    return metrics, pred


def compare(
    run_a: str | Path,
    run_b: str | Path,
    *,
    test: str | None = None,
    rv2_examples: int = 5000,
    layer: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict:
    """Paired bootstrap, error IoU and (with ``test``, the test split's spec) RV2 of two evaluated models' activations
    at ``layer`` (a module name such as ``layer3``; default the pooled features); written to ``out/comparison.json``
    when ``out`` is given."""
    (ma, pa), (mb, pb) = _load(run_a), _load(run_b)
    if ma["test_identity"]["ids_sha256"] != mb["test_identity"]["ids_sha256"] or not np.array_equal(
        pa["ids"], pb["ids"]
    ):
        raise ThresherError(f"{run_a} and {run_b} were evaluated on different test sets; compare on the same one")
    labels = pa["labels"]
    if labels.ndim != 1:
        raise ThresherError("compare works on single-label targets; for multi-label ones compare the AUROC in metrics")
    prob_a, prob_b = pa["probs"].mean(0), pb["probs"].mean(0)  # seed-averaged predictions
    right_a = (pa["probs"].argmax(2) == labels).mean(0)  # per-example fraction of seeds that got it right
    right_b = (pb["probs"].argmax(2) == labels).mean(0)
    result = {
        "a": {"run": str(run_a), "top1": ma["summary"]["top1"], "model": ma["model"]},
        "b": {"run": str(run_b), "top1": mb["summary"]["top1"], "model": mb["model"]},
        "paired_bootstrap": M.paired_bootstrap(right_a, right_b, seed=seed),
        "error_iou": error_iou(prob_a.argmax(1) != labels, prob_b.argmax(1) != labels),
    }
    if test:
        result["rv2"] = _features_rv2(ma, mb, test, rv2_examples, layer, seed)
        result["rv2_layer"] = layer or "pooled features"
    if out is not None:
        atomic.write_json(Path(out) / COMPARISON, result)
    return result


def _features_rv2(ma: dict, mb: dict, test: str, limit: int, layer: str | None, seed: int) -> float:
    """RV2 of the two models' activations (pooled features, or the module ``layer``) on up to ``limit`` test images."""
    ds, idx = open_data(DataConfig(spec=test))
    if data_identity(ds, idx)["ids_sha256"] != ma["test_identity"]["ids_sha256"]:
        raise ThresherError(f"--test {test} is not the test split both runs were evaluated on")
    rows = np.sort(np.random.default_rng(seed).permutation(len(idx))[:limit])
    acts = []
    for m in (ma, mb):
        model = m["model"]
        images, ok = ds.load_batch(idx[rows], int(model.get("resolution", 32)))
        if not ok.all():
            raise ThresherError(f"{int((~ok).sum())} test images cannot be read; RV2 needs the same images for both")
        net = build_backbone(model["backbone"], model["checkpoint"], int(model.get("seed", 0)))
        acts.append(layer_activations(net, layer, images))
    return rv2(acts[0], acts[1])
