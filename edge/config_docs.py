"""The configuration reference, ``docs/configuration.md``, generated from the pydantic models of the site config.

Every section is one model that ``edge.config.EdgeConfig`` nests, named by its YAML path; every row one field with
its type, default, bounds and description, as the models declare them. ``python -m edge.config_docs`` writes the
file; ``--check`` exits 1 when the committed file differs from what the models say (``make check``, and a test).
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from edge.config import EdgeConfig
from pipeline.models.default_package import default_package_dir

DOC = Path("docs") / "configuration.md"

_HEADER = """# Configuration reference

Generated from the pydantic models of the site config (`edge/config.py` and the models it nests) by
`make config-docs` (`python -m edge.config_docs`); do not edit it by hand: `make check` fails when it is not
current. A config is YAML (`edge init site.yaml` writes a commented template); `edge validate-config site.yaml`
lists every problem with its YAML line. Unknown keys are errors everywhere. Relative paths in a config (the model
package, replayed files) are relative to the config file; the outbox and media paths to the working directory.
"""

_BOUNDS = (
    (annotated_types.Ge, "ge", "≥ {}"),
    (annotated_types.Gt, "gt", "> {}"),
    (annotated_types.Le, "le", "≤ {}"),
    (annotated_types.Lt, "lt", "< {}"),
    (annotated_types.MinLen, "min_length", "length ≥ {}"),
    (annotated_types.MaxLen, "max_length", "length ≤ {}"),
)


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type refers to (through unions, lists, optionals), in order."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models_in(arg)]


def _type_name(tp: Any, sections: dict[type[BaseModel], str]) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0], sections)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a, sections) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, Sequence):
        return f"list of {_type_name(args[0], sections)}"
    if origin is tuple:
        return f"({', '.join(_type_name(a, sections) for a in args)})"
    if origin is dict:
        return f"map of {_type_name(args[0], sections)} to {_type_name(args[1], sections)}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        name = sections.get(tp, tp.__name__)
        return f"[{name}](#{_anchor(name)})"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    return {
        "str": "string",
        "int": "integer",
        "float": "number",
        "bool": "boolean",
        "Path": "path",
        "SecretStr": "string (secret)",
        "FilePath": "path (existing file)",
    }.get(tp.__name__, tp.__name__)


def _default(field: FieldInfo) -> str:
    if field.default_factory is default_package_dir:
        return "the bundled default package"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "see its section" if isinstance(value, BaseModel) else f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "**required**"
    value = field.default.value if isinstance(field.default, enum.Enum) else field.default
    if value is None:
        return "null"
    return f"`{value}`" if isinstance(value, Path) else f"`{value!r}`"


def _bounds(field: FieldInfo) -> str:
    out = []
    for meta in field.metadata:
        for kind, attr, fmt in _BOUNDS:
            if isinstance(meta, kind):
                out.append(fmt.format(getattr(meta, attr)))
        pattern = getattr(meta, "pattern", None)
        if pattern is not None:
            out.append(f"matches `{pattern}`")
    return ", ".join(out)


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def _collect(model: type[BaseModel], path: str, out: dict[type[BaseModel], str]) -> None:
    """Each nested model's section title (its YAML path), depth first in field order."""
    out.setdefault(model, path or "top level")
    for name, field in model.model_fields.items():
        nested = _models_in(field.annotation)
        is_list = typing.get_origin(field.annotation) is list
        for m in nested:
            if m in out:
                continue
            sub = f"{path}.{name}" if path else name
            sub += "[]" if is_list else ""
            type_field = m.model_fields.get("type")
            if len(nested) > 1 and type_field is not None:  # a union discriminated by type
                sub += f" (type: {type_field.default})"
            _collect(m, sub, out)


def _escape(text: str) -> str:
    """One Markdown table cell or paragraph: one line, pipes escaped, reStructuredText literals as Markdown's."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def render() -> str:
    sections: dict[type[BaseModel], str] = {}
    _collect(EdgeConfig, "", sections)
    parts = [_HEADER]
    for model, title in sections.items():
        parts.append(f"\n## {title}\n")
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        if doc and not doc.startswith(("Usage docs", "A base class")):
            parts.append(f"\n{_escape(doc)}\n")
        parts.append("\n| key | type | default | bounds | description |\n|---|---|---|---|---|\n")
        for name, field in model.model_fields.items():
            parts.append(
                f"| `{name}` | {_type_name(field.annotation, sections)} | {_default(field)} | "
                f"{_bounds(field)} | {_escape(field.description or '')} |\n"
            )
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.config_docs", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DOC, help=f"file to write (default {DOC})")
    p.add_argument("--check", action="store_true", help="do not write: exit 1 when the file is not current")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.out} is not current: regenerate it with python -m edge.config_docs\n")
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
