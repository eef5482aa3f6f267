"""Issue 21's text pieces: template captions from class names and their synonyms, the word vocabulary, the text
tower, and CLIP's symmetric InfoNCE against a slow NumPy version of METHODS.md's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thresher.pretrain.objectives.clip import INIT_LOGIT_SCALE, clip_loss
from thresher.text.templates import TEMPLATES, check_templates, class_prompts, synonyms, template_caption
from thresher.text.tokenizer import PAD, UNK, WordVocab, words
from thresher.text.tower import TextTower


def numpy_clip_loss(u: np.ndarray, v: np.ndarray, scale: float) -> float:
    """(CE(L, diag) + CE(L^T, diag)) / 2 with L = U V^T * scale, U and V row-normalised, written out with loops."""
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    n = len(u)
    logits = np.array([[scale * float(u[i] @ v[j]) for j in range(n)] for i in range(n)])

    def ce(m: np.ndarray) -> float:
        total = 0.0
        for i in range(n):
            top = m[i].max()
            total += -(m[i, i] - top - math.log(sum(math.exp(x - top) for x in m[i])))
        return total / n

    return 0.5 * (ce(logits) + ce(logits.T))


@pytest.mark.parametrize("log_scale", [INIT_LOGIT_SCALE, 0.0, math.log(500.0)])
def test_clip_loss_equals_the_formula(log_scale):
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    per = clip_loss(torch.tensor(u), torch.tensor(v), torch.tensor(log_scale))
    scale = min(math.exp(log_scale), 100.0)  # the scale is clipped at 100
    assert per.shape == (6,)
    assert float(per.mean()) == pytest.approx(numpy_clip_loss(u, v, scale), rel=1e-5)


def test_clip_loss_knows_its_extremes_and_trains_the_temperature():
    """Perfectly matched orthogonal pairs at scale 100 cost ~0; N identical embeddings cost log N either way."""
    eye = torch.eye(4)
    assert float(clip_loss(eye, eye, torch.tensor(math.log(100.0))).max()) < 1e-6
    same = torch.ones(4, 3)
    assert clip_loss(same, same, torch.tensor(2.0)).tolist() == pytest.approx([math.log(4)] * 4, rel=1e-6)
    scale = torch.tensor(INIT_LOGIT_SCALE, requires_grad=True)
    clip_loss(eye + 0.1, eye, scale).mean().backward()
    assert scale.grad is not None and float(scale.grad) < 0  # matched pairs: a sharper softmax lowers the loss
    with pytest.raises(ValueError, match="must both be"):
        clip_loss(torch.ones(3, 2), torch.ones(4, 2), scale)


def test_template_captions_draw_a_synonym_and_a_template_per_image_deterministically():
    assert synonyms("goldfish, Carassius auratus") == ["goldfish", "Carassius auratus"]
    assert synonyms("cat") == ["cat"] and synonyms("a, a, b") == ["a", "b"]
    names = synonyms("goldfish, Carassius auratus")
    caps = [template_caption(names, TEMPLATES, key=f"img{i}", seed=0) for i in range(200)]
    assert caps == [template_caption(names, TEMPLATES, key=f"img{i}", seed=0) for i in range(200)]
    assert {c for c in caps} <= {t.format(n) for t in TEMPLATES for n in names}
    assert len(set(caps)) == len(TEMPLATES) * 2  # every pairing occurs over 200 draws
    assert caps != [template_caption(names, TEMPLATES, key=f"img{i}", seed=1) for i in range(200)]
    assert class_prompts("cat, kitty", ["a {}.", "the {}!"]) == ["a cat.", "the cat!", "a kitty.", "the kitty!"]
    with pytest.raises(ValueError, match="exactly one"):
        check_templates(["a photo.", "a {} and a {}."])


def test_word_vocabulary_keeps_the_most_frequent_words_and_round_trips():
    vocab = WordVocab.build(["A photo of a cat.", "a photo of a dog", "a cat"], size=5)
    assert words("A photo-of a CAT!") == ["a", "photo", "of", "a", "cat"]
    assert vocab.words == ["a", "cat", "of"] and len(vocab) == 5  # a:5, then cat, of, photo 2 each (alphabetical)
    ids = vocab.encode(["a cat", "a dog photo of a cat"], length=4)
    assert ids.tolist() == [[2, 3, PAD, PAD], [2, UNK, UNK, 4]]
    assert vocab.knows("A cat") and not vocab.knows("a dog")
    assert WordVocab.from_dict(vocab.to_dict()).words == vocab.words
    with pytest.raises(ValueError, match="no words"):
        WordVocab.build(["...", ""])


@pytest.mark.parametrize("layers", [0, 2])
def test_text_tower_ignores_padding_and_embeds_to_its_dimension(layers):
    torch.manual_seed(0)
    tower = TextTower(vocab_size=10, dim=6, width=16, layers=layers, heads=4, length=5).eval()
    a = torch.tensor([[2, 3, 4, PAD, PAD]])
    b = torch.tensor([[2, 3, 4, PAD, PAD, PAD, PAD]])  # longer padding, cut at the tower's length
    out = tower(a)
    assert out.shape == (1, 6) and torch.allclose(out, tower(b), atol=1e-6)
    assert torch.isfinite(tower(torch.zeros(2, 5, dtype=torch.int64))).all()  # a caption of padding alone
    assert not torch.allclose(out, tower(torch.tensor([[2, 3, 5, PAD, PAD]])))


# ----------------------------------------------------------------------------------------------------------
# the clip objective through the one training loop


def _npz_with_captions(path, n: int = 48, captions: bool = True):
    from conftest import make_npz

    make_npz(path, n=n, size=12, classes=4)
    with np.load(path) as f:
        arrays = dict(f)
    (path.parent / "classes.txt").write_text("n01\tgoldfish, carp\nn02\tcat\nn03\tdog, hound\nn04\ttruck\n")
    if captions:
        names = ["red fish", "grey cat", "brown dog", "blue truck"]
        arrays["captions"] = np.array([f"a small {names[c]} here" for c in arrays["labels"]])
    np.savez(path, **arrays)
    return path


def _clip_config(spec: str, **kw):
    from thresher.config import build_config
    from thresher.train.config import TrainConfig

    values = {"data": {"spec": spec}, "backbone": "small-cnn", "objective": "clip", "resolution": 12, "epochs": 3,
              "batch_size": 16, "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
              "runtime": {"progress": False},
              "objective_params": {"dim": 16, "width": 16, "layers": 1, "heads": 2, "length": 8}, **kw}  # fmt: skip
    return build_config(TrainConfig, values=values)


@pytest.mark.parametrize("own_captions", [True, False])
def test_clip_trains_on_a_dataset_s_captions_or_on_templates_of_its_class_names(tmp_path, own_captions):
    """Issue 21: with an npz ``captions`` array the batches carry it; without, captions are templated from
    classes.txt's synonyms. Either way the loss falls and the vocabulary (of those words) travels in the checkpoint."""
    from thresher.models.checkpoint import read_checkpoint
    from thresher.pretrain.run import pretrain

    data = _npz_with_captions(tmp_path / "d" / "train.npz", captions=own_captions)
    s = pretrain(_clip_config(f"npz:{data}", epochs=6), tmp_path / "run", log=lambda *_: None)
    assert s["epoch_loss"][-1] < s["epoch_loss"][0], s["epoch_loss"]
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    vocab = state["_extra_state"]["vocabulary"]["words"]
    if own_captions:
        assert {"small", "fish", "truck", "here"} <= set(vocab) and "photo" not in vocab
    else:
        assert {"goldfish", "carp", "hound", "truck", "photo"} <= set(vocab) and "here" not in vocab
    assert float(state["logit_scale"]) != pytest.approx(INIT_LOGIT_SCALE)  # the temperature is learnt


def test_clip_on_unlabelled_images_without_captions_is_a_clear_error(tmp_path):
    from thresher.errors import ThresherError
    from thresher.models import create_backbone
    from thresher.train.objective import build_objective

    with pytest.raises(ThresherError, match="clip needs captions .* or class names"):
        build_objective("clip", create_backbone("small-cnn"), {}, num_classes=1)
    model = build_objective("clip", create_backbone("small-cnn"), {"dim": 8, "width": 8, "heads": 2},
                            class_names=["cat"])  # fmt: skip
    batch = {"images": torch.randn(2, 3, 12, 12), "labels": torch.tensor([0, -1]), "index": torch.tensor([0, 1])}
    with pytest.raises(ValueError, match="neither a caption nor a class name"):
        model(batch)
    batch["captions"] = ["a cat", "a photo"]
    out = model(batch)
    assert out["per_sample_loss"].shape == (2,) and float(out["loss"]) == pytest.approx(
        float(out["per_sample_loss"].mean())
    )


def test_zeroshot_classifies_by_the_class_names_a_clip_model_learnt(tmp_path):
    """Issue 21: a clip model trained on templated captions of four colour classes names them zero-shot on held-out
    images of the same classes far above chance (1/4); the result lists the class names the vocabulary knows; a
    model that is not image-text is a one-line error."""
    from thresher.config import build_config
    from thresher.errors import ThresherError
    from thresher.evaluate.config import EvalConfig
    from thresher.evaluate.run import evaluate
    from thresher.pretrain.run import pretrain

    from conftest import make_npz

    train = _npz_with_captions(tmp_path / "d" / "train.npz", n=128, captions=False)
    test = make_npz(tmp_path / "t" / "test.npz", n=64, size=12, classes=4, seed=1)
    (test.parent / "classes.txt").write_text((train.parent / "classes.txt").read_text())
    pretrain(_clip_config(f"npz:{train}", epochs=12), tmp_path / "clip", log=lambda *_: None)
    values = {"checkpoint": str(tmp_path / "clip"), "train": {"spec": f"npz:{train}"}, "test": {"spec": f"npz:{test}"},
              "protocol": "zeroshot", "seeds": 3, "resolution": 12, "runtime": {"progress": False}}  # fmt: skip
    doc = evaluate(build_config(EvalConfig, values=values), tmp_path / "zs", log=lambda *_: None)
    assert len(doc["seeds"]) == 1  # deterministic: evaluated once whatever --seeds says
    seed = doc["seeds"][0]
    assert doc["summary"]["top1"]["mean"] >= 0.6, seed
    assert seed["hparams"]["known_classes"] == ["goldfish, carp", "cat", "dog, hound", "truck"]
    assert set(seed["hparams"]["per_class_accuracy"]) == {"goldfish, carp", "cat", "dog, hound", "truck"}
    pretrain(_clip_config(f"npz:{train}", epochs=1, objective="supervised", objective_params={}),
             tmp_path / "sup", log=lambda *_: None)  # fmt: skip
    with pytest.raises(ThresherError, match="trained with objective 'supervised'; an image-text model is needed"):
        evaluate(build_config(EvalConfig, values={**values, "checkpoint": str(tmp_path / "sup")}), tmp_path / "zs2",
                 log=lambda *_: None)  # fmt: skip


def test_clip_trains_with_its_own_optimiser_where_the_config_leaves_it_unset():
    """CLIP's AdamW (lr 1e-3, weight decay 0.05) fills what a config does not set; a set value wins, another
    optimiser named drops CLIP's settings; the SGD objectives keep OptimConfig's defaults."""
    from thresher.config import build_config
    from thresher.train.config import TrainConfig

    def optim(**values):
        o = build_config(TrainConfig, values={"data": {"spec": "npz:x.npz"}, **values}).optim
        return o.name, o.lr, o.weight_decay

    assert optim(objective="clip") == ("adamw", 1e-3, 0.05)
    assert optim(objective="clip", optim={"lr": 3e-4}) == ("adamw", 3e-4, 0.05)
    assert optim(objective="clip", optim={"name": "sgd"}) == ("sgd", 0.1, 5e-4)
    assert optim(objective="simclr") == optim() == ("sgd", 0.1, 5e-4)


def test_the_flops_of_a_clip_training_image_count_its_text_tower():
    """Compute matching (bench/clip) reads an objective's training FLOPs per image: CLIP's are the image tower's plus
    a caption's through the text tower, the same at any image size; SimCLR's are two views'."""
    from thresher.scoring.cost import train_flops_per_image

    def flops(objective: str, size: int) -> float:
        return train_flops_per_image("small-cnn", size, objective, 10)

    text = [flops("clip", size) - flops("supervised", size) for size in (16, 32)]
    assert text[0] > 1e6 and text[0] == pytest.approx(text[1], rel=0.01), text
    assert flops("simclr", 16) == pytest.approx(2 * flops("supervised", 16), rel=0.02)
