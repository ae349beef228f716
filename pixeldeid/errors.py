"""Exceptions of pixeldeid. Each subclasses a builtin and names the bad value and file."""

from __future__ import annotations


class DeidError(ValueError):
    """Base class: something could not be de-identified with confidence.

    Parameters
    ----------
    message : str
        What went wrong, naming the bad value.
    path : str, optional
        The file concerned, prepended to the message.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(DeidError):
    """An input file is unreadable, truncated, not of the expected kind, or hostile."""


class OutputError(DeidError):
    """The output folder cannot be written (full, over quota, read-only): the batch stops.

    ``summary`` holds what the batch did before it stopped (set by the batch runner).
    """

    summary = None


class ProfileError(DeidError):
    """A profile, option, template or job file is invalid or names something unknown."""


class MissingDependencyError(ImportError):
    """An optional engine is used but its extra is not installed."""

    def __init__(self, what: str, extra: str, module: str | None = None) -> None:
        mod = f" (module {module!r} not importable)" if module else ""
        super().__init__(f"{what} needs an optional dependency{mod}: pip install 'pixeldeid[{extra}]'")
        self.extra = extra


def shape_of(value: object, limit: int = 32) -> str:
    """The form of a header value without its content, for error messages (a bad date may
    be a birth date, a bad time a patient's ID): digits become ``9``, letters ``A``, other
    characters stay: ``'19470311'`` -> ``'99999999'``."""
    text = str(value)
    form = "".join("9" if c.isdigit() else "A" if c.isalpha() else c for c in text[:limit])
    return repr(form + ("..." if len(text) > limit else ""))
