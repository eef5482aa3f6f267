"""Config: typed validation, YAML + overrides, unknown keys with a suggestion, fingerprints."""

from __future__ import annotations

import pytest
import yaml

from thresher.config import build_config, diff_keys, fingerprint, parse_override, valid_keys
from thresher.embed import EmbedConfig
from thresher.errors import ThresherError
from thresher.train.config import TrainConfig


def test_yaml_then_values_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"data": {"spec": "npz:a.npz"}, "epochs": 3, "optim": {"lr": 0.5}}))
    cfg = build_config(TrainConfig, file=f, values={"epochs": 5}, overrides=["optim.lr=0.05", "optim.name=adamw"])
    assert cfg.epochs == 5 and cfg.optim.lr == 0.05 and cfg.optim.name == "adamw"
    assert cfg.data.spec == "npz:a.npz" and cfg.batch_size == 128  # defaults stand


def test_unknown_key_suggests_nearest(tmp_path):
    with pytest.raises(ThresherError, match=r"unknown config key 'optim.lrr'; did you mean 'optim.lr'\?"):
        build_config(TrainConfig, values={"data": {"spec": "x:y"}}, overrides=["optim.lrr=0.1"])
    f = tmp_path / "c.yaml"
    f.write_text("data: {spec: 'x:y'}\nepoch: 3\n")
    with pytest.raises(ThresherError, match=r"'epoch'; did you mean 'epochs'"):
        build_config(TrainConfig, file=f)


def test_wrong_type_is_one_line():
    with pytest.raises(ThresherError) as exc:
        build_config(TrainConfig, values={"data": {"spec": "x:y"}}, overrides=["optim.lr=fast"])
    msg = str(exc.value)
    assert "optim.lr" in msg and "fast" in msg and "\n" not in msg
    with pytest.raises(ThresherError, match="'epochs'"):
        build_config(TrainConfig, values={"data": {"spec": "x:y"}, "epochs": 0})
    with pytest.raises(ThresherError, match="lr_schedule.name"):
        build_config(TrainConfig, values={"data": {"spec": "x:y"}}, overrides=["lr_schedule.name=cosin"])


def test_missing_required_key():
    with pytest.raises(ThresherError, match="data"):
        build_config(EmbedConfig, values={})


def test_bad_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ThresherError, match="not valid YAML"):
        build_config(TrainConfig, file=bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ThresherError, match="mapping"):
        build_config(TrainConfig, file=lst)


def test_override_parsing():
    assert parse_override("a.b=0.1") == ("a.b", 0.1)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=hello") == ("a", "hello")
    with pytest.raises(ThresherError):
        parse_override("novalue")


def test_fingerprint_ignores_runtime_fields_only():
    base = build_config(EmbedConfig, values={"data": {"spec": "x:y"}})
    other_device = build_config(
        EmbedConfig,
        values={"data": {"spec": "x:y", "data_root": "/elsewhere"}, "runtime": {"device": "cpu", "num_workers": 3}},
    )
    other_res = build_config(EmbedConfig, values={"data": {"spec": "x:y"}, "resolution": 64})
    assert fingerprint(base) == fingerprint(other_device)
    assert fingerprint(base) != fingerprint(other_res)
    assert fingerprint(base, {"checkpoint_sha256": "a"}) != fingerprint(base, {"checkpoint_sha256": "b"})


def test_valid_keys_and_diff():
    keys = valid_keys(TrainConfig)
    assert "optim.lr" in keys and "data.spec" in keys and "runtime.device" in keys
    assert diff_keys({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}}) == ["b.c"]


def test_resolved_config_round_trips_from_run_folder(tmp_path):
    from thresher.runs import RunFolder

    cfg = build_config(TrainConfig, values={"data": {"spec": "x:y"}, "epochs": 7})
    with RunFolder(tmp_path / "run", "pretrain", cfg):
        pass
    again = build_config(TrainConfig, file=tmp_path / "run" / "config.yaml")
    assert again == cfg


def test_a_field_added_later_keeps_the_fingerprints_of_runs_made_before_it():
    """Configs written before a field existed resume after it is added (at its default); set, it is a new config."""
    from thresher.config import Section, added, fingerprint

    class Before(Section):
        lr: float = 0.1

    class Inner(Section):
        rois: int = 32

    class After(Section):
        lr: float = 0.1
        dense: Inner = added(Inner())
        note: str | None = added(None)

    assert fingerprint(After()) == fingerprint(Before())
    assert fingerprint(After(dense=Inner(rois=8))) != fingerprint(Before())
    assert fingerprint(After(note="x")) != fingerprint(After())


def test_sections_inside_lists_are_fingerprinted_by_their_semantic_fields():
    """A study's targets are a list of sections: where a target's data was found (a runtime field) is not part of
    the study's identity, what it is (its spec) is."""
    from thresher.config import fingerprint
    from thresher.study import StudyConfig

    def study(root: str | None, spec: str = "npz:t.npz") -> StudyConfig:
        target = {"name": "t", "train": {"spec": spec, "data_root": root}, "test": {"spec": spec, "data_root": root}}
        return build_config(StudyConfig, values={"source": {"spec": "npz:s.npz"}, "targets": [target],
                                                 "methods": ["knn"], "budgets": [0.1]})  # fmt: skip

    assert fingerprint(study("/a")) == fingerprint(study("/b"))
    assert fingerprint(study("/a")) != fingerprint(study("/a", spec="npz:u.npz"))
