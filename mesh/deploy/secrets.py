"""Secrets in mesh.yaml for a deployment: every ${VAR} it references, and secrets written as literals (refused)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from mesh.config.yamlsource import ENV_REFERENCE, SourceProblem, YamlSource

# A key whose value is a secret, wherever it appears (settings of agents and tools included).
SECRET_KEY = re.compile(
    r"(^|[_-])(token|bearer_token|password|passwd|secret|api_?key|apikey|credentials?|private_key|access_key)$",
    re.IGNORECASE,
)


def referenced_variables(data: object) -> dict[str, bool]:
    """Every ``${VAR}`` in the values of a loaded (unexpanded) mesh file, in order: name -> has a default (``${VAR:-x}``).

    Values only: a ``${VAR}`` in a comment is no reference.
    """
    found: dict[str, bool] = {}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            for match in ENV_REFERENCE.finditer(value):
                name, default = match.group(1), match.group(2)
                found[name] = found.get(name, True) and default is not None

    walk(data)
    return found


def literal_secrets(source: YamlSource) -> list[SourceProblem]:
    """Secrets written as values instead of ``${VAR}``: secret-named keys, and URLs carrying a password."""
    problems: list[SourceProblem] = []

    def walk(value: object, path: tuple) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*path, index))
        elif isinstance(value, str) and value:
            raw = source.raw.get(path)
            key = path[-1] if path and isinstance(path[-1], str) else ""
            if SECRET_KEY.search(key) and (raw is None or not ENV_REFERENCE.fullmatch(raw)):
                problems.append(source.problem(path, "a secret written as a literal: write ${VAR_NAME} and keep the "
                                                     "value in a Kubernetes Secret"))
            elif "://" in value and _url_password(raw if raw is not None else value):
                problems.append(source.problem(path, "a URL with a literal password: write the whole URL as ${VAR_NAME}"))

    walk(source.data, ())
    return problems


def _url_password(text: str) -> bool:
    """Whether ``text`` is a URL whose password is written out (not a ``${VAR}`` reference)."""
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return False
    return bool(password) and not ENV_REFERENCE.fullmatch(password)
