"""The configuration's one validation path: a profile (``config/schema.yaml``), a run's training settings and
every method's options are checked by one strict JSON-Schema validator, and each problem is one line that
names the key, its value and what is allowed.

Strict where JSON Schema is lenient: JSON Schema counts ``2.0`` as an integer, and NaN and infinity pass
``minimum`` and ``maximum`` (every comparison with NaN is false). Here an integer is an ``int`` (never a
float or a bool) and a number is a finite ``int`` or ``float`` (never NaN, an infinity or a bool).

Who goes through it: the workflow (``rules/common.smk`` calls :func:`check_profile` before any job),
``deblurbench train`` and ``plan`` (:func:`method_setup`, so ``--train``, ``--method-config``, a method's
``train`` overrides and the profile are checked as the one merged set of settings the run uses), and every
method's options (:meth:`benchmark.registry.Method.options`: the type of each option's default, the bounds
or choices its ``baselines/`` declaration gives under ``limits``, and, for options that are training
settings, the schema's ``train`` entry for that key). No torch is imported here.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from benchmark import registry

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
MAX_LINES = 8  # problems listed before "and N more"


class ConfigError(ValueError):
    """A configuration that does not validate. ``problems`` holds one line per problem; the message is the
    first of them (and how many more there are), so a command's one error line stays one line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)

    def report(self) -> str:
        """Every problem on its own line (at most :data:`MAX_LINES`)."""
        lines = self.problems[:MAX_LINES]
        if len(self.problems) > MAX_LINES:
            lines.append(f"... and {len(self.problems) - MAX_LINES} more")
        return "\n".join(lines)


# -- the strict validator ---------------------------------------------------------------------------------
def _is_integer(_: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(_: Any, value: Any) -> bool:
    return _is_integer(_, value) or (isinstance(value, float) and math.isfinite(value))


@functools.cache
def _validators() -> tuple[type, type]:
    """(strict validator, strict validator that also fills in the schema's defaults, as Snakemake's did)."""
    from jsonschema import Draft202012Validator, validators  # imported on first use: ~0.2 s

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    strict = validators.extend(Draft202012Validator, type_checker=checker)
    properties = strict.VALIDATORS["properties"]

    def set_defaults(validator: Any, schema_properties: Mapping, instance: Any, schema: Mapping) -> Iterable:
        if isinstance(instance, dict):
            for key, subschema in schema_properties.items():
                if isinstance(subschema, Mapping) and "default" in subschema:
                    instance.setdefault(key, copy.deepcopy(subschema["default"]))
        yield from properties(validator, schema_properties, instance, schema)

    return strict, validators.extend(strict, {"properties": set_defaults})


@functools.cache
def schema() -> dict[str, Any]:
    """``config/schema.yaml``, the schema of a profile."""
    if not SCHEMA_PATH.is_file():
        raise ConfigError([f"{SCHEMA_PATH}: the configuration schema is missing (install deblurbench from its "
                           "checkout with pip install -e .)"])
    return yaml.safe_load(SCHEMA_PATH.read_text())


def problems(instance: Any, schema_: Mapping[str, Any], where: str, *, defaults: bool = False,
             default_values: Mapping[str, Any] | None = None) -> list[str]:
    """One line per way ``instance`` breaks ``schema_``, each naming ``where`` and the key. With ``defaults``
    the schema's defaults are filled into ``instance`` on the way."""
    strict, filling = _validators()
    errors = sorted((filling if defaults else strict)(schema_).iter_errors(instance),
                    key=lambda e: [str(p) for p in e.absolute_path])
    return [_line(error, where, default_values or {}) for error in errors]


# -- one line per problem ---------------------------------------------------------------------------------
TYPE_WORDS = {"integer": "a whole number", "number": "a finite number", "boolean": "true or false",
              "string": "a string", "array": "a list", "object": "a mapping", "null": "null"}
BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def show(value: Any) -> str:
    """A value as the user wrote it (YAML / JSON spelling), cut short."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)  # 2.0, nan, inf
    text = json.dumps(value, default=str, allow_nan=True)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(s: Mapping[str, Any]) -> str:
    """What a schema allows, in words: "a whole number >= 1", "one of sum, mean", "null or ..."."""
    if "enum" in s:
        return "one of " + ", ".join(show(v) for v in s["enum"])
    if "const" in s:
        return show(s["const"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            return " or ".join(describe(option) for option in s[key])
    types = s.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    text = " or ".join(TYPE_WORDS.get(t, t) for t in types)
    bounds = [f"{op} {show(s[key])}" for key, op in BOUNDS if key in s]
    text = " ".join(filter(None, [text, " and ".join(bounds)])) or "a value"
    if s.get("not") == {"multipleOf": 2}:
        text += " that is odd"
    if "multipleOf" in s:
        text += f" that is a multiple of {show(s['multipleOf'])}"
    low, high = s.get("minItems"), s.get("maxItems")
    if low is not None and low == high:
        text += f" of exactly {low} item{'s' if low != 1 else ''}"
    elif low is not None and high is not None:
        text += f" of {low} to {high} items"
    elif low is not None:
        text += f" of at least {low} item{'s' if low != 1 else ''}"
    elif high is not None:
        text += f" of at most {high} items"
    if isinstance(s.get("items"), Mapping) and s["items"]:
        text += f", each {describe(s['items'])}"
    if s.get("uniqueItems"):
        text += ", without repeats"
    if "pattern" in s:
        text += f" matching {s['pattern']}"
    return text


def _name(where: str, path: Iterable[Any]) -> str:
    dotted = ""
    for part in path:
        dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
    return f"{where} {dotted}".strip() if dotted else where


def _line(error: Any, where: str, default_values: Mapping[str, Any]) -> str:
    path = list(error.absolute_path)
    comment = f" ({error.schema['$comment']})" if isinstance(error.schema, Mapping) and "$comment" in error.schema \
        else ""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, Mapping) else []
        names = ", ".join(_name(where, [*path, key]) for key in unknown) or _name(where, path)
        return f"{names}: unknown key (valid: {', '.join(allowed) or 'none'})"
    if error.validator == "required":
        missing = re.search(r"'(.+)' is a required property", error.message)
        key = missing.group(1) if missing else error.message
        return f"{_name(where, path) or 'the configuration'}: lacks the key {key}{comment}"
    if "propertyNames" in error.relative_schema_path:
        return f"{_name(where, path)}: key {show(error.instance)} is not allowed (valid: {describe(error.schema)})"
    default = f" (default {show(default_values[path[0]])})" if path and path[0] in default_values else ""
    return f"{_name(where, path)} = {show(error.instance)}: must be {describe(error.schema)}{comment}{default}"


# -- method options ---------------------------------------------------------------------------------------
def _kind_of(value: Any) -> dict[str, Any]:
    """The schema of values that may replace a default: the same kind (an int may stand for a float)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, Mapping):
        return {"type": "object"}
    if isinstance(value, list | tuple):
        kinds = {json.dumps(_kind_of(v)) for v in value}
        if kinds == {'{"type": "integer"}', '{"type": "number"}'}:
            kinds = {'{"type": "number"}'}
        return {"type": "array", **({"items": json.loads(kinds.pop())} if len(kinds) == 1 else {})}
    return {}  # None: the declaration's limits say what may replace it


def option_schema(defaults: Mapping[str, Any], limits: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The schema of a method's options: per option, the kind of its default, then the schema's ``train``
    entry when the option is a training setting (a trained method's lr, betas, batch size...), then the
    method's declared ``limits``."""
    train = schema()["properties"]["train"]["properties"]
    properties = {key: _merged(_kind_of(value), train.get(key, {}), limits.get(key, {}))
                  for key, value in defaults.items()}
    return {"type": "object", "properties": properties}


def _merged(*schemas: Mapping[str, Any]) -> dict[str, Any]:
    """Later schemas' keywords over earlier ones', ``items`` merged the same way (a declared ``{"items":
    {"minimum": 0}}`` keeps the element type that the default gave)."""
    out: dict[str, Any] = {}
    for s in schemas:
        for key, value in s.items():
            out[key] = _merged(out[key], value) if key == "items" and isinstance(out.get(key), Mapping) else value
    return out


def check_options(method: str, defaults: Mapping[str, Any], limits: Mapping[str, Mapping[str, Any]],
                  overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` on top, every value checked; ConfigError naming each bad option."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise ConfigError([f"method {method!r}: unknown option {', '.join(map(repr, unknown))} (valid: {valid})"])
    options = {**defaults, **overrides}
    found = problems(options, option_schema(defaults, limits), f"method {method!r}: option", default_values=defaults)
    if found:
        raise ConfigError(found)
    return options


# -- training settings ------------------------------------------------------------------------------------
# How long and how observed a run is belongs to the profile (quick and smoke shrink every method alike;
# the paper profile sets each method's own schedule under `methods:`); how a method trains (lr, betas,
# loss weights, critic steps, and its own batch size and crop, e.g. DeepDeblur's 16 / 256) belongs to the
# method's defaults. A profile whose images cannot hold a method's crop overrides it on purpose under
# `methods: {name: {train: ...}}`; run.json records, and the report shows, what each run used.
PROFILE_KEYS = frozenset({"epochs_constant", "epochs_decay", "seed", "val_every", "log_every", "checkpoint_every",
                          "perceptual_weights"})


def train_settings(train_cfg: Mapping[str, Any], method: registry.Method, overrides: Mapping[str, Any] | None) -> dict:
    """The run's settings: the profile's ``train`` section; the method's defaults on top for the keys
    that describe how it trains (not :data:`PROFILE_KEYS`); then the profile's per-method overrides."""
    merged = dict(train_cfg)
    merged.update({k: v for k, v in method.defaults.items() if k in train_cfg and k not in PROFILE_KEYS})
    merged.update(overrides or {})
    return merged


def check_train_settings(settings: Mapping[str, Any]) -> None:
    """The merged settings of a run against the schema's ``train`` section (every key it names; none need be
    present, ``deblurbench train`` checks the ones it needs): ConfigError naming each bad setting."""
    train = {k: v for k, v in schema()["properties"]["train"].items() if k != "required"}
    found = problems(dict(settings), train, "train setting")
    if found:
        raise ConfigError(found)


def method_setup(name: str, profile: Mapping[str, Any], method_cfg: Mapping[str, Any] | None,
                 train_cfg: Mapping[str, Any] | None = None) -> tuple[registry.Method, dict[str, Any], dict[str, Any]]:
    """(method, options, train settings) from the registry defaults and the configuration, all checked."""
    method = registry.get(name)
    per_method = dict(profile.get("methods", {}).get(name) or {})
    per_method.update(method_cfg or {})
    train_overrides = per_method.pop("train", {})
    if not isinstance(train_overrides, Mapping):
        raise ConfigError([f"method {name!r}: train = {show(train_overrides)}: must be a mapping of training "
                           "settings"])
    options = method.options(per_method)
    base_train = {**profile.get("train", {}), **(train_cfg or {})}
    settings = train_settings(base_train, method, train_overrides)
    check_train_settings(settings)
    return method, options, settings


# -- a whole profile --------------------------------------------------------------------------------------
def check_profile(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate a merged profile (filling the schema's defaults in place), then what the schema cannot
    know: every ``methods:`` entry names a registered method with valid options and training settings, and
    Fig. 5 sweeps a trained method that has a ``k``. ConfigError listing every problem."""
    found = problems(cfg, schema(), "config key", defaults=True)
    if found:
        raise ConfigError(found)
    known = {m.name: m for m in registry.available()}
    for name in sorted(set(cfg["methods"]) - set(known)):
        found.append(f"config key methods.{name}: not a registered method (registered: {', '.join(sorted(known))})")
    for name, method in known.items():
        if method.kind == "classical" and "train" in (cfg["methods"].get(name) or {}):
            found.append(f"config key methods.{name}.train: {name} is a classical method; it has no training")
            continue
        try:
            if method.kind == "trained":
                method_setup(name, cfg, None)
            elif name in cfg["methods"]:
                method.options(cfg["methods"][name])
        except ConfigError as err:
            found += [f"config key methods.{name}: {line.removeprefix(f'method {name!r}: ')}" for line in err.problems]
    from benchmark import runs

    try:
        runs.sweep_method(cfg)
    except ValueError as err:
        found.append(str(err))
    if found:
        raise ConfigError(found)
    return cfg
