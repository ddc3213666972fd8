"""Diffs for plan preview and livestate: what would change, shown as piped users expect.

Three tools, all on plain data (what ``yaml.safe_load`` or ``json.loads`` gives):

- :func:`diff` compares two documents field by field and :meth:`Diff.render` prints
  the result in the layout of the Go SDK's ``sdk/diff`` renderer (``#path`` then
  ``-``/``+`` lines, nested under the path's parents), masking secret paths;
- :func:`diff_sets` does the same for two sets of named documents (manifests, files);
- :func:`unified` is a line diff of two texts (``difflib``), for non-structured files.

:func:`sync_verdict` turns desired-versus-live into the ``SyncStatus`` and reasons
that :class:`pipeplug.Livestate` carries.

Only the standard library is used: a structural walk over dicts and lists is a few
lines, and ``difflib`` already does line diffs; the diff libraries on PyPI add a
result model of their own that would still need rendering in piped's layout.
"""

from __future__ import annotations

import decimal
import difflib
import math
import typing as t

from .enums import SyncStatus

__all__ = ["MASK", "Change", "Diff", "SyncVerdict", "diff", "diff_sets", "load_documents", "sync_verdict", "unified"]

#: what a masked value is rendered as (the Go SDK's mask)
MASK = "*****"

#: a step of a path: a mapping key or a list index
Step = t.Union[str, int]


class _Missing:
    """The side of a change where the value does not exist."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: marks the absent side of an added or removed value
MISSING: t.Any = _Missing()


class Change(t.NamedTuple):
    """One differing value: where it is, and its value before and after (``MISSING`` if absent)."""

    path: tuple[Step, ...]
    before: t.Any
    after: t.Any

    @property
    def path_string(self) -> str:
        """The path as dotted text, list indexes as numbers: ``spec.containers.0.image``."""
        return ".".join(str(step) for step in self.path)

    @property
    def kind(self) -> str:
        """``added``, ``removed`` or ``changed``."""
        if self.before is MISSING:
            return "added"
        if self.after is MISSING:
            return "removed"
        return "changed"


class Diff(t.NamedTuple):
    """The changes between two documents, ordered by path."""

    changes: tuple[Change, ...]
    #: path prefixes (dotted, as :attr:`Change.path_string`) whose values are rendered as ``MASK``
    masked: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    @property
    def summary(self) -> str:
        """``"1 added, 2 changed, 0 removed"``."""
        kinds = [change.kind for change in self.changes]
        return ", ".join(f"{kinds.count(kind)} {kind}" for kind in ("added", "changed", "removed"))

    def render(self, *, left_padding: int = 0) -> str:
        """The changes in the Go SDK renderer's layout; ``left_padding`` indents it by that many levels."""
        out: list[str] = []
        previous: tuple[Step, ...] = ()
        for change in self.changes:
            _render_change(out, change, previous, left_padding, self._is_masked(change))
            previous = change.path
        return "".join(out)

    def _is_masked(self, change: Change) -> bool:
        path = change.path_string
        return any(path == prefix or path.startswith(prefix + ".") for prefix in self.masked)


class SyncVerdict(t.NamedTuple):
    """``Livestate(resources, *verdict)``: the sync status and why."""

    sync_status: SyncStatus
    short_reason: str = ""
    reason: str = ""


def diff(
    before: t.Any,
    after: t.Any,
    *,
    mask: t.Iterable[str] = (),
    ignore_removed_keys: bool = False,
    equate_empty: bool = False,
) -> Diff:
    """Compare two documents value by value.

    Numbers compare by value (``1 == 1.0``), never with booleans; a value whose
    type differs is one change. ``mask`` lists dotted path prefixes rendered as
    ``MASK`` (a Secret's ``data``). ``ignore_removed_keys`` skips mapping keys
    only ``before`` has: compare live (``before``) against git (``after``) and
    ignore the fields the live system fills in. ``equate_empty`` treats a missing
    value and an empty or zero one as equal.
    """
    changes: list[Change] = []
    _walk((), before, after, changes, ignore_removed_keys, equate_empty)
    changes.sort(key=lambda change: [(isinstance(step, str), step) for step in change.path])
    return Diff(tuple(changes), tuple(mask))


def diff_sets(
    before: t.Mapping[str, t.Any],
    after: t.Mapping[str, t.Any],
    **options: t.Any,
) -> dict[str, Diff]:
    """Diff two sets of named documents; only the names that differ are returned, in name order.

    A document only one side has is one change at the empty path. ``options``
    are those of :func:`diff`.
    """
    found = {}
    for name in sorted(set(before) | set(after)):
        result = diff(before.get(name, MISSING), after.get(name, MISSING), **options)
        if result:
            found[name] = result
    return found


def load_documents(text: str, key: t.Callable[[t.Any, int], str] | None = None) -> dict[str, t.Any]:
    """Parse multi-document YAML (or JSON) into ``{name: document}`` for :func:`diff_sets`.

    The default name of a Kubernetes-style document is ``kind/namespace/name``
    (``kind/name`` without a namespace); any other document is named by its
    position. Empty documents are skipped; a name used twice is an error.
    """
    import yaml

    documents: dict[str, t.Any] = {}
    for index, document in enumerate(yaml.safe_load_all(text)):
        if document is None:
            continue
        name = (key or _default_key)(document, index)
        if name in documents:
            raise ValueError(f"two documents are both named {name!r}; pass key= to tell them apart")
        documents[name] = document
    return documents


def unified(before: str, after: str, *, before_name: str = "before", after_name: str = "after", context: int = 3, secrets: t.Iterable[str] = ()) -> str:
    """A unified line diff of two texts (empty when equal), with each of ``secrets`` replaced by ``MASK``."""
    hidden = [secret for secret in secrets if secret]
    lines = difflib.unified_diff(_mask_text(before, hidden).splitlines(True), _mask_text(after, hidden).splitlines(True), before_name, after_name, n=context)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def sync_verdict(desired: t.Any, live: t.Any, **options: t.Any) -> SyncVerdict:
    """SYNCED when ``live`` matches ``desired``, else OUT_OF_SYNC with a summary and the rendered diff.

    ``options`` are those of :func:`diff`, which compares ``live`` (before)
    against ``desired`` (after); ``ignore_removed_keys=True`` ignores fields only
    the live side has.
    """
    result = diff(live, desired, **options)
    if not result:
        return SyncVerdict(SyncStatus.SYNCED)
    return SyncVerdict(SyncStatus.OUT_OF_SYNC, f"live differs from git: {result.summary}", result.render())


# -- comparing ------------------------------------------------------------------


def _walk(path: tuple[Step, ...], x: t.Any, y: t.Any, out: list[Change], ignore_removed_keys: bool, equate_empty: bool) -> None:
    if x is MISSING or y is MISSING:
        present = y if x is MISSING else x
        if not (equate_empty and _is_empty(present)):
            out.append(Change(path, x, y))
        return
    if isinstance(x, dict) and isinstance(y, dict):
        for key in list(x) + [key for key in y if key not in x]:
            if ignore_removed_keys and key not in y:
                continue
            _walk((*path, key), x.get(key, MISSING), y.get(key, MISSING), out, ignore_removed_keys, equate_empty)
        return
    if isinstance(x, list) and isinstance(y, list):
        for index in range(max(len(x), len(y))):
            _walk((*path, index), x[index] if index < len(x) else MISSING, y[index] if index < len(y) else MISSING, out, ignore_removed_keys, equate_empty)
        return
    if not _same_scalar(x, y):
        out.append(Change(path, x, y))


def _same_scalar(x: t.Any, y: t.Any) -> bool:
    if _is_number(x) and _is_number(y):
        return bool(x == y)
    return type(x) is type(y) and bool(x == y)


def _is_number(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_empty(value: t.Any) -> bool:
    return value is None or value in ("", 0, False) or (isinstance(value, (dict, list)) and not value)


def _default_key(document: t.Any, index: int) -> str:
    if isinstance(document, dict) and isinstance(document.get("metadata"), dict) and "kind" in document:
        metadata = document["metadata"]
        parts = [str(document["kind"]), str(metadata.get("namespace") or ""), str(metadata.get("name") or "")]
        return "/".join(part for part in parts if part)
    return str(index)


def _mask_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


# -- rendering (the Go SDK renderer's layout) ------------------------------------


def _render_change(out: list[str], change: Change, previous: tuple[Step, ...], padding: int, masked: bool) -> None:
    path = change.path
    if not path:  # a whole document added or removed (diff_sets)
        out.append(f"{'  ' * padding}#\n")
        _render_side(out, "-", change.before, None, padding, masked)
        _render_side(out, "+", change.after, None, padding, masked)
        out.append("\n")
        return
    shared = _shared_depth(path, previous)
    in_list = False
    for depth in range(shared, len(path) - 1):
        step = path[depth]
        if isinstance(step, int):
            out.append(f"{'  ' * (padding + depth)}-")
            in_list = True
        elif in_list:
            out.append(f" {step}:\n")
            in_list = False
        else:
            out.append(f"{'  ' * (padding + depth)}{step}:\n")
    if in_list:
        out.append("\n")
    depth = padding + len(path) - 1
    out.append(f"{'  ' * depth}#{change.path_string}\n")
    _render_side(out, "-", change.before, path[-1], depth, masked)
    _render_side(out, "+", change.after, path[-1], depth, masked)
    out.append("\n")


def _render_side(out: list[str], mark: str, value: t.Any, last: Step | None, depth: int, masked: bool) -> None:
    if value is MISSING:
        return
    text, multiline = (MASK, False) if masked else _render_value(value, "")
    indent = " " * abs(depth * 2 - 1)
    body = " " * (depth * 2 + 1)
    parts = text.split("\n")
    if last is None:  # whole document
        out.extend(f"{mark}{indent}{part}\n" for part in parts)
    elif isinstance(last, int):
        out.append(f"{mark}{indent}- {parts[0]}\n")
        out.extend(f"{mark}{body}{part}\n" for part in parts[1:])
    elif multiline:
        out.append(f"{mark}{indent}{last}:\n")
        out.extend(f"{mark}{body}{part}\n" for part in parts)
    else:
        out.append(f"{mark}{indent}{last}: {parts[0]}\n")
        out.extend(f"{part}\n" for part in parts[1:])


def _render_value(value: t.Any, prefix: str) -> tuple[str, bool]:
    """A value as YAML-like text, and whether it spans lines (a non-empty mapping or a list)."""
    if isinstance(value, dict):
        lines = []
        for key in sorted(value, key=str):
            text, multiline = _render_value(value[key], prefix + "  ")
            lines.append(f"{prefix}{key}:\n{text}" if multiline else f"{prefix}{key}: {text}")
        return "\n".join(lines), bool(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            text, _ = _render_value(item, prefix + "  ")
            for number, part in enumerate(text.split("\n")):
                part = part.removeprefix(prefix + "  ")
                lines.append(f"{prefix}- {part}" if number == 0 else f"{prefix}  {part}")
        return "\n".join(lines), True
    return _render_scalar(value), False


def _render_scalar(value: t.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isfinite(value):  # Go's FormatFloat(v, 'f', -1): no exponent
        text = format(decimal.Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _shared_depth(path: tuple[Step, ...], previous: tuple[Step, ...]) -> int:
    """How many leading steps ``path`` shares with the change printed before it (their headers are already out)."""
    for depth, (step, before) in enumerate(zip(path, previous)):
        if step != before or type(step) is not type(before):
            return depth
    return 0
