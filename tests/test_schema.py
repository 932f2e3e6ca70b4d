"""The config schema: every preset and experiment composes into its dataclass with the values it
states (the rest the schema's defaults), and no Python dict repeats a preset's defaults."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from segexp.config import CONF_DIR, SCHEMAS, typed
from segexp.config.schema import preset_schema
from segexp.config.schema.run import TopConf

GROUPS = ("model", "dataset", "optimizer", "augmentation", "loss", "trainer", "tracking")
PRESETS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
PACKAGE = Path(__file__).resolve().parents[1] / "segexp"
# Keys a composed config needs before it resolves (dataset presets read from disk).
PATHS = ("root", "images", "masks")


def _fill_paths(cfg) -> None:
    for key in PATHS:
        if key in cfg.dataset.keys() and OmegaConf.is_missing(cfg.dataset, key):  # noqa: SIM118
            cfg.dataset[key] = "/data"


def _check_group(cfg, group: str, schema: type) -> None:
    """``cfg[group]`` is typed by ``schema`` and its resolved values pass the schema's types."""
    node = cfg[group]
    assert OmegaConf.get_type(node) is schema, (group, OmegaConf.get_type(node), schema)
    assert list(node.keys()) == [f.name for f in dataclasses.fields(schema)]
    typed(node, schema, group)  # resolved values of the right types (raises ConfigError)


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}={n}" for g, n in PRESETS])
def test_every_preset_composes_into_its_schema_with_its_own_values(compose, group, name):
    written = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))
    schema = preset_schema(group, written)
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))
    cfg = compose([f"{group}={name}"])
    got = OmegaConf.to_container(cfg[group], resolve=False)
    for key, value in got.items():
        expected = written.get(key, defaults[key])
        if isinstance(value, dict) and isinstance(expected, dict) and key in written:
            value = {k: v for k, v in value.items() if k in expected}  # a block: see below
        assert value == expected, (group, name, key, value, expected)
    _fill_paths(cfg)
    _check_group(cfg, group, schema)


def test_nested_sections_take_the_schema_defaults(compose):
    cfg = compose(["augmentation=unet_paper"])
    # written: {rotation_range: 10, ...}; not written: the affine block's defaults
    assert cfg.augmentation.affine.rotation_range == 10.0
    assert cfg.augmentation.affine.horizontal_flip is False
    assert cfg.augmentation.affine.p == 1.0
    assert cfg.augmentation.color.clip is True
    assert cfg.trainer.early_stopping.patience == 5 and cfg.trainer.checkpoint.format == "keras"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates_against_the_schema(compose, name):
    cfg = compose([f"experiment={name}"])
    _fill_paths(cfg)
    for group in GROUPS:
        choice = str(cfg[group].get("name", "")) if group not in ("trainer", "tracking") else ""
        options = SCHEMAS[group]
        schema = OmegaConf.get_type(cfg[group])
        assert schema in options.values(), (group, schema)
        if choice and group != "model":
            assert options.get(choice) in (schema, None), (group, choice, schema)
        _check_group(cfg, group, schema)
    top = {f.name: cfg[f.name] for f in dataclasses.fields(TopConf)}
    typed(top, TopConf, "train")


def test_a_value_of_the_wrong_type_is_refused_when_composed(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="model.depth"):
        compose(["model.depth=deep"])
    with pytest.raises(ConfigCompositionException, match="augmentation.sigma"):
        compose(["augmentation=elastic", "augmentation.sigma=wide"])
    assert compose(["model.depth=5"]).model.depth == 5


def _module_dicts(path: Path) -> list[tuple[str, int, dict]]:
    """Module-level ``NAME = {...}`` dicts of constants: (name, line, {key: value})."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        value = getattr(node, "value", None)
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if names and isinstance(value, ast.Dict):
            try:
                literal = ast.literal_eval(value)
            except ValueError:
                literal = {}
            found.append((names[0], node.lineno, literal))
    return found


def _preset_items() -> dict[tuple[str, str], set]:
    items: dict[tuple[str, str], set] = {}
    for group, name in PRESETS:
        data = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))
        schema = preset_schema(group, data)
        data = {**OmegaConf.to_container(OmegaConf.structured(schema)), **data}
        items[(group, name)] = {
            (k, repr(v)) for k, v in data.items() if k not in ("name", "defaults")
        }
    return items


def _offenders(package: Path) -> list[str]:
    presets = _preset_items()
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if "schema" in path.relative_to(package).parts:
            continue  # the schema itself
        for name, line, literal in _module_dicts(path):
            where = f"{path.relative_to(package.parent)}:{line} {name}"
            if name.upper().endswith(("DEFAULTS", "DEFAULT")):
                offenders.append(f"{where}: a defaults dict")
                continue
            pairs = {(str(k), repr(v)) for k, v in literal.items()}
            for (group, preset), items in presets.items():
                if len(pairs & items) >= 3:
                    offenders.append(f"{where}: repeats {group}={preset} {sorted(pairs & items)}")
    return offenders


def test_no_module_keeps_a_dict_of_defaults_beside_the_schema():
    assert not _offenders(PACKAGE)


def test_the_scan_finds_defaults_dicts_by_name_and_by_content(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        'X_DEFAULTS = {"depth": 4}\n'
        'Y = {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 0.1}\n'
        'Z = {"adam": "Adam", "sgd": "SGD"}\n'
    )
    found = _offenders(package)
    assert found[0] == "pkg/m.py:1 X_DEFAULTS: a defaults dict"
    assert all(line.startswith("pkg/m.py:2 Y: repeats ") for line in found[1:]) and found[1:]
    assert "augmentation=affine" in " ".join(found)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"affine": {"rotaton_range": 10}},
            "augmentation.affine.rotaton_range: unknown key (did you mean 'rotation_range'?)",
        ),
        (
            {"affine": {"rotation_range": "x"}},
            "augmentation.affine.rotation_range='x': expected a number",
        ),
        ({"flip": 3}, "augmentation.flip=3: expected a mapping of horizontal, vertical, p or null"),
    ],
)
def test_typed_names_the_nested_key_in_one_line(cfg, message):
    from segexp.config.schema.augment import UNetPaperConf
    from segexp.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        typed(cfg, UNetPaperConf, "augmentation(unet_paper)")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert typed({"flip": {"p": 1}}, UNetPaperConf, "augmentation").flip.p == 1.0


def _schema_fields() -> set[str]:
    """Field names of every dataclass in segexp/config/schema/, nested ones included."""
    names: set[str] = set()
    seen: set[type] = set()

    def visit(cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        names.update(f.name for f in dataclasses.fields(cls))
        for hint in typing.get_type_hints(cls).values():
            for arg in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(arg):
                    visit(arg)

    for path in sorted((PACKAGE / "config" / "schema").glob("*.py")):
        module = importlib.import_module(
            f"segexp.config.schema.{path.stem}".replace(".__init__", "")
        )
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value):
                visit(value)
    return names


# (file under segexp/, key) -> why a literal fallback there is no config default.
FALLBACK_ALLOWED: dict[tuple[str, str], str] = {
    ("compare/claims.py", "source"): "an experiment's claim section, which has no schema",
    (
        "predict/contract.py",
        "task",
    ): "a saved model's metadata, which older or external models lack",
}


def _literal(node: ast.AST | None) -> bool:
    """``node`` is a literal other than None (a constant, or a list/tuple/dict of them)."""
    if node is None:
        return False
    try:
        return ast.literal_eval(node) is not None
    except ValueError:
        return False


def _fallbacks(package: Path, fields: set[str]) -> list[str]:
    """``x.get("<field>", <literal>)``, ``opt(cfg, "<field>", <literal>)`` (and a module's own
    ``_get(cfg, "<field>", <literal>)``) and ``OmegaConf.select(cfg, "...<field>",
    default=<literal>)`` calls outside the schema, as ``file:line call``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if "schema" in rel.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func, args = node.func, node.args
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            key, default = None, None
            if name in ("get", "_get", "opt") and len(args) >= 2:
                key, default = args[-2], args[-1]
            elif name == "select" and len(args) >= 2:
                key = args[1]
                default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue
            if key.value.startswith("hydra."):
                continue  # Hydra's own config, not the schema
            field = key.value.rsplit(".", 1)[-1]
            if field in fields and _literal(default) and (str(rel), field) not in FALLBACK_ALLOWED:
                found.append(f"{package.name}/{rel}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_call_site_repeats_a_schema_default():
    found = _fallbacks(PACKAGE, _schema_fields())
    assert not found, f"{len(found)} literal fallback(s) for schema keys:\n" + "\n".join(found)


def test_the_scan_finds_literal_fallbacks_for_schema_keys(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        'a = cfg.get("seed", 0)\n'
        'b = opt(cfg, "val_fraction", 0.1)\n'
        'c = OmegaConf.select(cfg, "trainer.epochs", default=20)\n'
        'd = cfg.get("seed")\n'
        'e = cfg.get("not_a_key", 1)\n'
        'f = opt(cfg, "class_names", None)\n'
        'g = _get(trainer_cfg, "batch_size", 1)\n'
        'h = OmegaConf.select(cfg, "hydra.overrides.task", default=[])\n'
    )
    found = _fallbacks(package, _schema_fields())
    lines = [line.split(" ", 1)[0] for line in found]
    assert lines == ["pkg/m.py:1", "pkg/m.py:2", "pkg/m.py:3", "pkg/m.py:7"]


@pytest.mark.parametrize(
    ("config_name", "section", "schema"),
    [("bench", "bench", "BenchConf"), ("preview", "preview", "PreviewConf")],
)
def test_command_sections_compose_into_their_schema(compose, config_name, section, schema):
    """segexp-bench's and segexp-preview's own sections are typed: the schema's defaults, an
    unknown key refused."""
    from hydra.errors import ConfigCompositionException

    from segexp.config.schema import bench, run

    cls = getattr(bench, schema, None) or getattr(run, schema)
    cfg = compose(config_name=config_name)
    assert OmegaConf.get_type(cfg[section]) is cls
    expected = OmegaConf.to_container(OmegaConf.structured(cls), resolve=False)
    assert OmegaConf.to_container(cfg[section], resolve=False) == expected
    with pytest.raises(ConfigCompositionException):
        compose([f"{section}.no_such_key=1"], config_name=config_name)
