"""The tables of docs/experiments.md, generated from the declared options.

The config sections (convnet.config), the model types (each class's OPTIONS), the update
rules and their hyperparameters (convnet.optim.RULES), the learning-rate schedules
(convnet.schedules.SCHEDULES) and the ConvNet blocks (convnet.models.blocks.BLOCKS) are
declared once; this module writes them as Markdown between ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` markers, so the docs
cannot drift from the code (tests/test_config_validation.py checks the committed file).

    python -m convnet.config_tables docs/experiments.md     # rewrite the tables in place
"""

import argparse
import re
import sys
from pathlib import Path

from convnet import config, optim
from convnet.callbacks import LOOKAHEAD
from convnet.models import MODEL_TYPES
from convnet.models.blocks import BLOCKS
from convnet.optim import RULES
from convnet.options import REQUIRED
from convnet.schedules import SCHEDULES

MARKER = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _cell(text):
    return text.replace("|", "\\|")


def _allowed(declared):
    """declared.describe(), with choices written as code: one of `sample`, `cifar10`."""
    return declared.describe(write_choice=lambda choice: f"`{choice}`")


def markdown_default(declared):
    """The default as the docs write it: required, `null`, `0.9`, `[3, 32, 32]`."""
    value = declared.default
    if value is REQUIRED:
        return "required"
    words = {None: "null", True: "true", False: "false", "": '""'}
    text = words[value] if value is None or isinstance(value, bool) or value == "" else str(value)
    return f"`{text}`"


def _sections_rows():
    sections = [("", config.TOP), ("data.", config.DATA), ("data.augment.", config.AUGMENT),
                ("optim.", {"groups": optim.GROUPS}), ("optim.groups[].", optim.GROUP),
                ("solver.", config.SOLVER), ("solver.lookahead.", LOOKAHEAD), ("output.", config.OUTPUT)]
    for prefix, options in sections:
        for key, declared in options.items():
            if prefix == "" and key in ("data", "solver", "output"):
                continue  # sections whose keys have rows of their own
            if key in config.kinds():  # a section whose other keys depend on its kind: the kind's row
                kind_key, kind = config.kinds()[key]
                yield f"`{key}.{kind_key}`", markdown_default(kind), _allowed(kind), declared.help
                continue
            yield f"`{prefix}{key}`", markdown_default(declared), _allowed(declared), declared.help


def sections_table():
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(_cell(part) for part in row)} |" for row in _sections_rows()]
    return "\n".join(lines) + "\n"


def _options_cell(options):
    """'`filters` (required: an integer >= 1), `size: 3` (an integer >= 1)' for a dict of Options."""
    parts = []
    for key, declared in options.items():
        name = f"`{key}`" if declared.default is REQUIRED else f"`{key}: {markdown_default(declared).strip('`')}`"
        note = "required: " if declared.default is REQUIRED else ""
        extra = f"; {declared.help}" if declared.help else ""
        parts.append(f"{name} ({note}{_allowed(declared)}{extra})")
    return ", ".join(parts)


def models_table():
    lines = ["| `model.type` | options (defaults; allowed values) |", "|---|---|"]
    for kind in MODEL_TYPES:
        lines.append(f"| `{kind}` | {_cell(_options_cell(config.model_options(kind)))} |")
    return "\n".join(lines) + "\n"


def _registry_table(first_column, described, registry, options_column="options"):
    """One row per registry entry: its name, its options and its help text."""
    lines = [f"| {first_column} | {options_column} (defaults; allowed values) | {described} |", "|---|---|---|"]
    for name, entry in registry.items():
        lines.append(f"| `{name}` | {_cell(_options_cell(entry.options))} | {_cell(entry.help)} |")
    return "\n".join(lines) + "\n"


def optim_table():
    return _registry_table("`optim.rule`", "what it does", RULES, options_column="hyperparameters")


def schedules_table():
    return _registry_table("`schedule.type`", "what it does", SCHEDULES)


def blocks_table():
    return _registry_table("type", "what it is", BLOCKS)


TABLES = {"sections": sections_table, "models": models_table, "optim": optim_table, "schedules": schedules_table,
          "blocks": blocks_table}


def update(text):
    """text with every generated table rewritten; KeyError for an unknown table name."""
    return MARKER.sub(lambda m: m.group(1) + TABLES[m.group(2)]() + m.group(4), text)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convnet.config_tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the Markdown file to rewrite (docs/experiments.md)")
    parser.add_argument("--check", action="store_true", help="only report whether the file is up to date")
    args = parser.parse_args(argv)
    text = args.path.read_text()
    new = update(text)
    if args.check:
        print(f"{args.path}: {'up to date' if new == text else 'out of date'}")
        return 0 if new == text else 1
    args.path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
