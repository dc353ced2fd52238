"""The one rule for client and model names, shared by the registry and the API schemas."""

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    """True for 1-64 characters of letters, digits, '.', '_' and '-', not starting with a symbol.

    The rule also keeps names from being paths: no '/', no leading '.', so never '..' or an absolute path.
    """
    return bool(_NAME.fullmatch(name))
