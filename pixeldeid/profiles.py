"""Named header de-identification profiles: declarative YAML validated against a schema."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ProfileError
from .paths import configs_dir, read_yaml
from .schemas import validate


@dataclass(frozen=True)
class PrivateAllow:
    """One extra safe private element: creator, group and element low byte."""

    creator: str
    group: int
    element: int


@dataclass(frozen=True)
class Profile:
    """A named set of PS3.15 options plus a private-element allowlist."""

    name: str
    options: frozenset[str]
    description: str = ""
    pseudonym_prefix: str | None = None
    private_allowlist: tuple[PrivateAllow, ...] = field(default_factory=tuple)

    def with_options(self, extra: Iterable[str]) -> Profile:
        """Return a copy with more options in force (validated)."""
        from .standard import check_options

        opts = check_options(set(self.options) | set(extra))
        return Profile(self.name, opts, self.description, self.pseudonym_prefix,
                       self.private_allowlist)


def profile_names() -> list[str]:
    """Names of the profiles shipped in ``configs/profiles``."""
    return sorted(p.stem for p in (configs_dir() / "profiles").glob("*.yaml"))


def parse_profile(data: object, source: str = "<profile>") -> Profile:
    """Validate profile data against the schema and build a :class:`Profile`."""
    from .standard import check_options

    validate(data, "profile", "profile", source)
    assert isinstance(data, dict)
    try:
        options = check_options(data.get("options", []))
    except ProfileError as exc:
        raise ProfileError(exc.reason, source) from None
    allow = tuple(PrivateAllow(a["creator"].strip(), a["group"], a["element"])
                  for a in data.get("private_allowlist", []))
    for a in allow:
        if a.group % 2 == 0 or not 0x0009 <= a.group <= 0xFFFD:
            raise ProfileError(f"private_allowlist group {a.group:#06x} is not a private "
                               "group (odd, 0009 to FFFD)", source)
    return Profile(data["name"], options, data.get("description", ""),
                   data.get("pseudonym_prefix"), allow)


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load a shipped profile by name, or a YAML file by path.

    Unknown names raise :class:`ProfileError` with "did you mean" suggestions.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml", ".json")) or os.sep in text):
        names = profile_names()
        if text not in names:
            close = difflib.get_close_matches(text, names, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ProfileError(f"unknown profile {text!r}{hint} (known: {', '.join(names)})")
        path = configs_dir() / "profiles" / f"{text}.yaml"
    data = read_yaml(path, "profile")
    return parse_profile(data, str(path))
