"""``segexp-models``: list the model presets with their parameter counts, or summarise one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from segexp.errors import SegexpError

#: Size and class count used for presets that take them from the dataset (the synthetic default).
DEFAULT_INPUT = (64, 64, 1)
DEFAULT_CLASSES = 2


def _build(name: str) -> tuple[Any, Any, tuple[int, int, int], int | None, bool]:
    from segexp.models import build_model, load_preset, preset_input_shape

    cfg = load_preset(name)
    fixed = cfg.input_shape is not None
    shape = preset_input_shape(cfg, DEFAULT_INPUT)
    classes = cfg.num_classes
    if cfg.task == "reconstruction":
        classes = None
        build_classes = None
    else:
        build_classes = DEFAULT_CLASSES if classes is None else int(classes)
    model = build_model(cfg, shape, build_classes)
    return cfg, model, shape, build_classes, fixed and cfg.num_classes is not None


def preset_table() -> list[dict[str, Any]]:
    """One row per preset: name, source, input, classes, trainable, total."""
    from segexp.models import param_counts, preset_names

    rows = []
    for name in preset_names():
        cfg, model, shape, classes, fixed = _build(name)
        trainable, total = param_counts(model)
        mark = "" if fixed or cfg.get("task") == "reconstruction" else "*"
        rows.append(
            {
                "name": name,
                "source": str(cfg.get("source") or ""),
                "input": "x".join(str(v) for v in shape) + mark,
                "classes": ("-" if classes is None else str(classes)) + mark,
                "trainable": trainable,
                "total": total,
            }
        )
        del model
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Render :func:`preset_table` rows as a fixed-width text table."""
    header = ["name", "source", "input", "classes", "trainable", "total"]
    cells = [
        [
            r["name"],
            r["source"],
            r["input"],
            r["classes"],
            f"{r['trainable']:,}",
            f"{r['total']:,}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {"trainable", "total", "classes"}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if h in right else v.ljust(w)
            for v, w, h in zip(values, widths, header, strict=True)
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    if any(r["input"].endswith("*") for r in rows):
        out.append(
            f"* takes the dataset's size and classes; counted at "
            f"{'x'.join(map(str, DEFAULT_INPUT))}, {DEFAULT_CLASSES} classes"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``segexp-models``."""
    parser = argparse.ArgumentParser(
        prog="segexp-models",
        description="Without a name: table of all model presets in conf/model/ with their "
        "parameter counts. With a name: that model's Keras summary.",
    )
    parser.add_argument("name", nargs="?", help="a preset name (conf/model/<name>.yaml)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up lines")
    args = parser.parse_args(argv)
    from segexp.cli import import_tensorflow

    import_tensorflow(args.verbose)
    try:
        if args.name is None:
            print(format_table(preset_table()))
        else:
            from segexp.models import model_summary, param_counts

            cfg, model, shape, classes, _ = _build(args.name)
            trainable, total = param_counts(model)
            print(model_summary(model))
            print(
                f"{args.name}: {cfg.source}; input {'x'.join(map(str, shape))}, "
                f"classes {classes if classes is not None else '-'}; "
                f"trainable {trainable:,}, total {total:,}"
            )
    except SegexpError as err:
        print(f"segexp-models: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
