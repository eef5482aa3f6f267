"""Typed, validated configs: YAML file + command-line values + dotted overrides; unknown keys are errors.

Every run folder gets the resolved config; its fingerprint (runtime-only fields excluded) decides whether a folder
can be resumed or must be refused.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from .atomic import jsonable
from .errors import ThresherError

C = TypeVar("C", bound="Section")


def runtime(default: Any = None, **kw: Any) -> Any:
    """A field that changes how a run executes but not its result (device, workers, progress): not fingerprinted."""
    return Field(default, json_schema_extra={"runtime": True}, **kw)


def added(default: Any, **kw: Any) -> Any:
    """A field added to a config after runs were made with it: fingerprinted only when set to something else than
    its default, so a run folder (or a study's stage) made before the field existed still resumes."""
    return Field(default, json_schema_extra={"added": True}, **kw)


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes a boolean (``bool``, ``Any``, a union or Literal holding one)."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_admits_bool(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return False


class Section(BaseModel):
    """Base of every config section: typed, immutable after validation, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``epochs: yes`` is a typo, not 1 epoch: pydantic would read a boolean as the number 0 or 1."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and not _admits_bool(field.annotation):
            raise ValueError("a boolean (true/false, yes/no, on/off in YAML) is not valid here")
        return value


class RuntimeConfig(Section):
    """How to execute (not what to compute): excluded from fingerprints."""

    device: str = runtime("auto", description="auto, cpu, cuda or cuda:N")
    num_workers: int = runtime(0, ge=0, description="data-loading worker processes")
    threads: int | None = runtime(None, ge=1, description="torch CPU threads (default: all cores)")
    progress: bool = runtime(True, description="show a progress bar on a terminal")
    engine: Literal["local", "ray"] = runtime("local", description="embedding forward passes: local or Ray Data")
    ray_address: str | None = runtime(None, description="Ray cluster to join (default: a local Ray)")
    ray_actors: int | None = runtime(None, ge=1, description="Ray actors (default: one per GPU, else per core)")


class DataConfig(Section):
    """Which examples of which dataset."""

    spec: str = Field(description="dataset spec string, e.g. builtin:cifar10:train")
    data_root: str | None = runtime(None, description="folder searched first for built-in datasets")
    strict: bool = runtime(False, description="stop at the first unreadable image instead of skipping it")
    subset: int | None = Field(None, ge=1, description="use a random subset of this many examples")
    subset_seed: int = Field(0, description="seed of the subset draw")

    @model_validator(mode="before")
    @classmethod
    def _several_sources(cls, data: Any) -> Any:
        """A list of ``{name, spec, ...}`` is a pool of several sources (``data.sources``): one spec string."""
        if isinstance(data, list):
            from .data.sources import sources_spec

            try:
                return {"spec": sources_spec(data)}
            except ThresherError as exc:
                raise ValueError(str(exc)) from None
        return data


class PartialSection(Section):
    """A study's view of a stage's config (see ``partial_section``): every key typed and checked as the stage checks
    it, only the keys given passed on, so the stage's own defaults stay the only defaults."""

    __stage_defaults__: typing.ClassVar[dict[str, Any]] = {}

    def values(self) -> dict[str, Any]:
        """The keys set in the study file (nested sections too), over the few defaults the study sets itself."""
        return merge(copy.deepcopy(self.__stage_defaults__), self.model_dump(mode="json", exclude_unset=True))


def partial_section(
    cls: type[BaseModel], name: str, *, exclude: set[str], defaults: dict[str, Any] | None = None, doc: str = ""
) -> type[PartialSection]:
    """A section holding ``cls``'s fields but ``exclude`` (those the study fills in), each with its type, bounds and
    default, so that a misspelt key or a value of the wrong type or out of bounds in a study file fails at
    ``--dry-run`` with the study's key; ``defaults`` are the study's own (e.g. fine-tuning rather than the linear
    probe), passed to the stage unless the file sets them. ``cls``'s own validators (registry names, checks across
    keys) are not copied: the study builds every stage's full config before it runs any (``study.stage_configs``)."""
    missing = exclude - set(cls.model_fields)
    if missing:
        raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(missing))}")
    fields = {}
    for key, info in cls.model_fields.items():
        if key in exclude:
            continue
        field = copy.copy(info)
        if key in (defaults or {}):
            field.default, field.default_factory = copy.deepcopy(defaults[key]), None
        elif field.is_required():
            field.default = None
        fields[key] = (info.annotation | None if field.default is None else info.annotation, field)
    model = create_model(name, __base__=PartialSection, __doc__=doc or cls.__doc__, **fields)
    model.__stage_defaults__ = dict(defaults or {})
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The Section class inside an annotation (``X``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            m = _model_of(arg)
            if m is not None:
                return m
    return None


def valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key a config class accepts."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        sub = _model_of(field.annotation)
        if sub is not None:
            keys.extend(valid_keys(sub, prefix + name + "."))
    return keys


def _check_unknown(model: type[BaseModel], data: Any, root: type[BaseModel], prefix: str = "") -> None:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        field = model.model_fields.get(key)
        dotted = prefix + str(key)
        if field is None:
            replaced = getattr(model, "__replaced_keys__", {}).get(key)
            if replaced:  # a key an older version took: say what replaced it
                raise ThresherError(f"config key {dotted!r} was replaced: {replaced}")
            close = difflib.get_close_matches(dotted, valid_keys(root), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ThresherError(f"unknown config key {dotted!r}{hint}")
        sub = _model_of(field.annotation)
        if sub is not None:
            _check_unknown(sub, value, root, dotted + ".")


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """``data['a']['b'] = value`` for ``'a.b'``, creating sections as needed."""
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ThresherError(f"config key {dotted!r}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` with the value read as YAML (so 0.1 is a number, [1,2] a list, null is None)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ThresherError(f"override {text!r} must look like key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (nested dicts merge, other values replace); neither is changed."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with the safe loader; errors name the file."""
    p = Path(path)
    if p.is_dir():
        raise ThresherError(f"config file {p} is a folder; give a YAML file")
    if not p.is_file():
        raise ThresherError(f"config file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ThresherError(f"cannot read config file {p}: {reason}; check its permissions and encoding") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ThresherError(f"config file {p} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ThresherError(f"config file {p} must hold a mapping of keys to values")
    return data


def build_config(
    cls: type[C], *, file: str | Path | None = None, values: dict | None = None, overrides: list[str] | None = None
) -> C:
    """Defaults <- YAML file <- command-line values <- ``key.sub=value`` overrides, validated into ``cls``."""
    data: dict = load_yaml(file) if file else {}
    if "config" in data and isinstance(data.get("thresher"), dict):
        data = data["config"]  # a resolved config.yaml from a run folder is accepted as input
    if values:
        data = merge(data, copy.deepcopy(values))  # overrides below edit nested sections: never the caller's dict
    for ov in overrides or []:
        key, value = parse_override(ov)
        set_dotted(data, key, value)
    _check_unknown(cls, data, cls)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            raise ThresherError(
                f"config key {loc!r} is required; give it on the command line, in --config, or as --set {loc}=..."
            ) from None
        where = f"config key {loc!r}: " if loc else ""  # a check across keys (model validator) names them itself
        raise ThresherError(f"{where}{msg}{got_s}") from None


def _strip_runtime(model: BaseModel) -> dict:
    out = {}
    for name, field in type(model).model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("runtime"):
            continue
        value = getattr(model, name)
        if extra.get("added") and value == field.get_default(call_default_factory=True):
            continue
        out[name] = _semantic(value)
    return out


def _semantic(value: Any) -> Any:
    """A field's value for the fingerprint: sections (also inside lists, e.g. a study's targets) by their own
    semantic fields, everything else as JSON."""
    if isinstance(value, BaseModel):
        return _strip_runtime(value)
    if isinstance(value, list | tuple) and any(isinstance(v, BaseModel) for v in value):
        return [_semantic(v) for v in value]
    return jsonable(value)


def semantic_dict(cfg: BaseModel) -> dict:
    """The part of a config that determines results (runtime fields removed)."""
    return _strip_runtime(cfg)


def fingerprint(cfg: BaseModel, inputs: dict | None = None) -> str:
    """sha256 over the semantic config and input hashes: equal fingerprints mean resumable, identical results."""
    payload = {"config": semantic_dict(cfg), "inputs": inputs or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys.extend(diff_keys(va, vb, f"{prefix}{k}."))
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys
