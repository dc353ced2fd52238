"""``slotserve serve`` flags made from the ``Settings`` model, so every setting is a flag the day it is added.

A field ``slot_memory_mb`` becomes ``--slot-memory-mb``, its help the field's description with its default and its
environment variable. Values go to ``Settings`` as the text typed, so a bad value fails the same way, in one line,
whether it came from a flag or from the environment. ``Literal`` fields get choices, booleans are switches, lists
are comma-separated. Secrets (``SecretStr`` fields: the admin key) are never flags: a command line is readable by
every local user (``ps``, /proc/PID/cmdline) and lands in shell history; ``--help`` names their variables instead.
"""

import argparse
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from app.settings import Settings

ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``slotserve serve: error: ...``), like every other refusal of the
    command, instead of a usage block of thirty flags above the one line that matters."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class EnvOnly(argparse.Action):
    """A secret's would-be flag: refused, pointing at its environment variable."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.error(f"{self.option_strings[0]} is not a flag, so the secret stays out of ps and shell history: "
                     f"set {env_name(self.dest)} in the environment instead")


@dataclass(frozen=True)
class SettingFlag:
    """One setting's flag: the setting's name, the flag, and how argparse reads it."""

    name: str
    flag: str
    options: dict[str, Any]


def env_name(name: str) -> str:
    return f"{ENV_PREFIX}{name}".upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def is_secret(field: FieldInfo) -> bool:
    return SecretStr in _members(field.annotation)


def setting_flags() -> list[SettingFlag]:
    """A flag for every setting that is not a secret, in the model's order; ``TypeError`` for a setting whose type
    has no flag form yet (so a new one fails the CLI tests, rather than being left out quietly)."""
    return [SettingFlag(name, flag_name(name), _options(name, field))
            for name, field in Settings.model_fields.items() if not is_secret(field)]


def add_settings_flags(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    """Add a flag per setting to ``parser`` (secrets listed in its epilog); return the settings' names."""
    flags = setting_flags()
    for flag in flags:
        parser.add_argument(flag.flag, dest=flag.name, **flag.options)
    for name, field in Settings.model_fields.items():
        if is_secret(field):  # refused by name, without repeating the value (argparse's own error would)
            parser.add_argument(flag_name(name), nargs="?", action=EnvOnly, help=argparse.SUPPRESS)
    paragraphs = [f"Every flag is also an environment variable, {ENV_PREFIX}<FLAG> (--slot-memory-mb 512 is "
                  f"{env_name('slot_memory_mb')}=512); a flag wins over its variable."]
    secrets = [name for name, field in Settings.model_fields.items() if is_secret(field)]
    if secrets:
        paragraphs.append("Environment only, never a flag (a command line is visible to every local user in ps "
                          "and stays in shell history):")
        paragraphs += [f"  {env_name(name)}: {Settings.model_fields[name].description or ''}" for name in secrets]
    parser.epilog = "\n".join(textwrap.fill(text, 100, subsequent_indent="    " if text.startswith(" ") else "")
                              for text in paragraphs)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return tuple(flag.name for flag in flags)


def _options(name: str, field: FieldInfo) -> dict[str, Any]:
    kind = _plain(field.annotation)
    default = field.get_default(call_default_factory=True)
    help_text = _escape((field.description or name.replace("_", " ")).rstrip("."))
    shown = "" if default is None or default is False or default == [] else f"default {_shown(default)}; "
    options: dict[str, Any] = {"help": f"{help_text} ({shown}env {env_name(name)})", "default": None}
    if kind is bool:
        if default is True:  # a switch that is on unless turned off: --NAME / --no-NAME
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["action"] = "store_true"
    elif typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if not all(isinstance(choice, str) for choice in choices):
            raise TypeError(f"setting {name}: only text choices have a flag form, not {kind}")
        options["choices"] = list(choices)
    elif typing.get_origin(kind) is list:
        options["type"] = _comma_separated
        options["metavar"] = "A,B,..."
    elif kind in (int, float, str, Path):
        options["type"] = str  # Settings parses and bounds it, with the same message as for the variable
        options["metavar"] = {int: "N", float: "X", Path: "PATH"}.get(kind, name.upper())
    else:
        raise TypeError(f"setting {name}: type {field.annotation} has no flag form; teach app/cli/flags.py")
    return options


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a field's annotation allows (``X | None`` -> ``(X, NoneType)``)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def _plain(annotation: Any) -> Any:
    """The annotation without ``| None`` (an optional setting's flag takes the value; leaving it out keeps None)."""
    members = [member for member in _members(annotation) if member is not type(None)]
    if len(members) != 1:
        raise TypeError(f"a setting of type {annotation} has no flag form")
    return members[0]


def _comma_separated(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _shown(default: Any) -> str:
    if isinstance(default, list):
        return ",".join(map(str, default))
    return str(default)


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %

