"""The JSON schemas of the declarative configs (``configs/schemas``), each loaded and
checked once per process."""

from __future__ import annotations

import difflib
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


#: the words YAML 1.1 reads as booleans that an enum may hold as its values
_BOOL_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


def _enum_words(data: object, node: dict) -> None:
    """Give a boolean back its word where the schema wants one of an enum's words: YAML 1.1
    reads ``policy: off`` as False (the documented spelling, refused otherwise)."""
    props = node.get("properties")
    if isinstance(data, dict) and isinstance(props, dict):
        for k, v in data.items():
            sub = props.get(k)
            if not isinstance(sub, dict):
                continue
            enum = sub.get("enum")
            if isinstance(v, bool) and isinstance(enum, list) and v not in enum:
                word = next((w for w in _BOOL_WORDS[v] if w in enum), None)
                if word is not None:
                    data[k] = word
            else:
                _enum_words(v, sub)
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for v in data:
            _enum_words(v, node["items"])


def _hint(error) -> str:
    """A "did you mean" for a value not among an enum's (as for unknown keys)."""
    if error.validator != "enum" or not isinstance(error.instance, str):
        return ""
    close = difflib.get_close_matches(error.instance, [str(v) for v in error.validator_value],
                                      n=3, cutoff=0.5)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def validate(data: object, name: str, what: str, source: str) -> None:
    """Raise :class:`ProfileError` naming ``source`` and the place in ``data`` unless it is
    valid against the schema ``name`` (the error ``jsonschema.validate`` would pick, with a
    "did you mean" for a misspelt enum value). A YAML 1.1 boolean where the schema wants an
    enum word (``off``, ``on``) is first turned back into that word, in ``data`` itself."""
    import jsonschema

    _enum_words(data, schema(name))
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise ProfileError(f"invalid {what} at {where}: {error.message}{_hint(error)}", source)
