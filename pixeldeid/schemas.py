"""The JSON schemas of the declarative configs (``configs/schemas``), each loaded and
checked once per process."""

from __future__ import annotations

import json
from functools import cache

from .errors import ProfileError
from .paths import configs_dir


@cache
def schema(name: str) -> dict:
    """The schema ``configs/schemas/<name>.schema.json``."""
    return json.loads((configs_dir() / "schemas" / f"{name}.schema.json").read_text())


@cache
def _validator(name: str):
    import jsonschema

    cls = jsonschema.validators.validator_for(schema(name))
    cls.check_schema(schema(name))  # once, not at every validation
    return cls(schema(name))


def validate(data: object, name: str, what: str, source: str) -> None:
    """Raise :class:`ProfileError` naming ``source`` and the place in ``data`` unless it is
    valid against the schema ``name`` (the error ``jsonschema.validate`` would pick)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise ProfileError(f"invalid {what} at {where}: {error.message}", source)
