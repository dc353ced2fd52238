"""The one rule for client and model names and for versions, shared by the registry and the API schemas."""

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
VERSION_PATTERN = r"^[0-9]{1,18}$"  # ASCII digits only: str.isdigit() and \d also accept '²' and '١'
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def is_valid_name(name: str) -> bool:
    """True for 1-64 characters of letters, digits, '.', '_' and '-', not starting with a symbol.

    The rule also keeps names from being paths: no '/', no leading '.', so never '..' or an absolute path.
    """
    return bool(_NAME.fullmatch(name))


def parse_version(text: str) -> int | None:
    """The version a request names: 1-18 ASCII digits (so it fits an int64), else ``None``."""
    return int(text) if _VERSION.fullmatch(text) else None


def version_directory(name: str) -> int | None:
    """The version a store directory is: written without leading zeros ("7", not "007", which would be a second
    name for it), else ``None`` (not a version directory)."""
    version = parse_version(name)
    return version if version is not None and str(version) == name else None


def check_client(client: str) -> None:
    """``InvalidRequest`` unless ``client`` is a valid name."""
    from app.errors import InvalidRequest  # errors.py is light, but names.py stays import-free for the schemas

    if not is_valid_name(client):
        raise InvalidRequest(f"'{client}' is not a valid client name: use letters, digits, '.', '_' and '-' only.")
