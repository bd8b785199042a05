"""The one configuration style of every stage: TOML sections validated into dataclasses, `--section.field VALUE`
overrides of any field, "did you mean" for unknown keys, and one error type for what a user can fix.

Curation recipes (`pipeline.recipe`) and training configurations (`train.config`) are both built with it. It
needs only the standard library, so the tokenizer and the trainer load it without Beam.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import sys
import tomllib
import typing


class UsageError(ValueError):
    """A mistake the user can fix (a setting, a flag, a missing file): reported as one line, no traceback."""


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str | int, where: str) -> int:
    """Bytes from `512MB`, `1.5GB`, `256MiB` or a plain number; raises UsageError naming `where`."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise UsageError(f"{where}: not a size: {text!r} (e.g. 512MB, 1GB, 256MiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def report(program: str, error: BaseException | str) -> None:
    """The one error style of every command: `python -m pipeline: error: …` on stderr."""
    print(f"{program}: error: {error}", file=sys.stderr)


def printable(text: str, limit: int = 300) -> str:
    """`text` on one line, every control or unprintable character escaped (`\\x00`), at most `limit` characters:
    a message may quote the bytes that broke a parser, and a terminal or a log must never receive raw bytes."""
    text = " ".join(text.split())
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """`Type: message`, printable (see `printable`)."""
    return printable(f"{type(exc).__name__}: {exc}", limit)


def _convert(value, kind, where: str):
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a table, got {value!r}")
        return build(kind, value, where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or kind is dict:
        if isinstance(value, dict):
            return value
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 5e5 on a command line
            return int(value)
    elif kind is str:
        return str(value)
    name = getattr(kind, "__name__", str(kind))
    raise UsageError(f"{where}: expected {name}, got {value!r}")


def build(cls, table: dict, where: str = ""):
    """An instance of dataclass `cls` from a TOML table; unknown keys and wrong types name the setting."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UsageError(f"unknown setting {prefix}{key}{hint}")
    values = {key: _convert(value, hints[key], f"{prefix}{key}") for key, value in table.items()}
    try:
        return cls(**values)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}")


def parse_value(text: str):
    """A TOML value (`6e-4`, `true`, `[0.9, 0.95]`, `[{path="bins", weight=1}]`), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_dotted(table: dict, dotted: str, value) -> None:
    *sections, key = dotted.split(".")
    for section in sections:
        table = table.setdefault(section, {})
        if not isinstance(table, dict):
            raise UsageError(f"--{dotted}: {section} is not a section")
    table[key] = value


def is_override(argument: str) -> bool:
    """`--section.field` or `--section.field=VALUE` (a dot in the name, which Beam's options never have)."""
    return argument.startswith("--") and "." in argument.split("=", 1)[0]


def parse_overrides(arguments: list[str], example: str = "--optim.lr 6e-4") -> list[tuple[str, object]]:
    """`--section.field VALUE` or `--section.field=VALUE` pairs."""
    pairs, index = [], 0
    while index < len(arguments):
        argument = arguments[index]
        if not is_override(argument):
            raise UsageError(f"unexpected argument {argument!r}; overrides look like {example}")
        if "=" in argument:
            name, text = argument[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(arguments):
                raise UsageError(f"{argument}: a value is missing")
            name, text = argument[2:], arguments[index + 1]
            index += 2
        pairs.append((name, parse_value(text)))
    return pairs


def split_overrides(arguments: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, the rest): a command's unknown arguments split into `--section.field VALUE` overrides and
    the others (Beam's pipeline options)."""
    overrides, rest, index = [], [], 0
    while index < len(arguments):
        argument = arguments[index]
        if is_override(argument):
            takes_value = "=" not in argument and index + 1 < len(arguments)
            overrides.extend(arguments[index : index + 1 + takes_value])
            index += 1 + takes_value
        else:
            rest.append(argument)
            index += 1
    return overrides, rest


def load_toml(path: str, flag: str) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{flag}: {path} does not exist")
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{flag}: {path} is not valid TOML: {exc}")


def describe(section: str, instance) -> str:
    """One line listing a section's settings with their defaults, for --help."""
    values = dataclasses.asdict(instance)
    return f"  [{section}] " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in values.items())
