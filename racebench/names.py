"""The one parser of name lists on the command line: `all`, or `a,b,c`.

`racebench race --scenario`, `--strategy`, `bench --strategies` and their target-mode variants
all read their lists here, so they agree on spaces, repeats and what an unknown name says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

ALL = "all"


def pick(
    value: str,
    known: Sequence[str],
    what: str,
    *,
    repeats: bool = False,
    also: Callable[[str], bool] | None = None,
    hint: str = "",
) -> list[str]:
    """`all` (every known name, in its order), or the comma-separated names given, in the
    order given. Each name comes once unless `repeats` (an A/A bench names one strategy twice).
    `also` accepts names that are not in `known` (a class of one's own). ValueError names
    every unknown name and the known ones."""
    if value.strip() == ALL:
        return list(known)
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not repeats:
        names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in known and not (also is not None and also(n))]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        raise ValueError(f"unknown {what} {given}; choose from: {', '.join(known)}{hint}")
    return names
