"""Deployment sources without git: content-addressed snapshots of the application directory.

piped deploys a commit: it clones the repository at the target commit (and at
the last successful one) and gives each plugin call a fresh copy. ``pipeplug
dev`` has no commits, so every run snapshots the application directory (the
directory holding the app config) into the state directory, named by a SHA-1
over every file's relative path, mode and content. That hash plays the commit
hash: the same tree always gets the same hash, edits need no ``git commit``,
and the running source of the next run is the snapshot of the last successful
one. Like piped, each call gets its own copy, so plugins may write into it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import typing as t
import uuid

import attrs

from .._gen.plugin import common_pb2 as source_pb

#: never part of an application's content
SKIPPED_NAMES = frozenset({".git", "__pycache__", ".pipeplug", ".pytest_cache"})


@attrs.frozen
class Snapshot:
    """One frozen application directory: its hash and where its copy lives."""

    commit_hash: str
    #: the snapshot's copy of the application directory
    tree: str
    #: relative path -> sha1 of every file, for skipOn.paths
    manifest: t.Mapping[str, str]


def take_snapshot(app_dir: str, snapshots_dir: str, *, exclude: t.Iterable[str] = ()) -> Snapshot:
    """Hash ``app_dir`` and store a copy under ``snapshots_dir/<hash>`` (once per content)."""
    excluded = {os.path.abspath(p) for p in exclude}
    manifest, digest = _hash_tree(app_dir, excluded)
    commit = digest.hexdigest()
    home = os.path.join(snapshots_dir, commit)
    tree = os.path.join(home, "tree")
    if not os.path.isdir(tree):
        staging = f"{home}.partial-{uuid.uuid4().hex[:8]}"
        os.makedirs(staging)
        shutil.copytree(app_dir, os.path.join(staging, "tree"), symlinks=True, ignore=_ignore(excluded))
        with open(os.path.join(staging, "manifest.json"), "w") as f:
            json.dump(manifest, f, sort_keys=True)
        try:
            os.rename(staging, home)
        except OSError:  # another run stored the same content first
            shutil.rmtree(staging, ignore_errors=True)
    return Snapshot(commit_hash=commit, tree=tree, manifest=manifest)


def open_snapshot(snapshots_dir: str, commit_hash: str) -> Snapshot | None:
    """The stored snapshot of ``commit_hash``, or None if it was deleted."""
    home = os.path.join(snapshots_dir, commit_hash)
    try:
        with open(os.path.join(home, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return Snapshot(commit_hash=commit_hash, tree=os.path.join(home, "tree"), manifest=manifest)


def deployment_source(snapshot: Snapshot, config_filename: str, work_dir: str) -> source_pb.DeploymentSource:
    """A fresh copy of ``snapshot`` as piped's ``DeploymentSource`` (one per call, as piped does)."""
    copy_root = os.path.join(work_dir, uuid.uuid4().hex[:12])
    app_dir = os.path.join(copy_root, "app")
    shutil.copytree(snapshot.tree, app_dir, symlinks=True)
    with open(os.path.join(app_dir, config_filename), "rb") as f:
        raw = f.read()
    return source_pb.DeploymentSource(
        application_directory=app_dir,
        commit_hash=snapshot.commit_hash,
        application_config=raw,
        application_config_filename=config_filename,
        shared_config_directory=os.path.join(copy_root, ".pipe"),
    )


def changed_files(running: Snapshot | None, target: Snapshot) -> list[str]:
    """Files that differ between the two snapshots (every file on a first deployment)."""
    before = running.manifest if running else {}
    names = set(before) | set(target.manifest)
    return sorted(n for n in names if before.get(n) != target.manifest.get(n))


def all_match(paths: t.Iterable[str], patterns: t.Sequence[str]) -> bool:
    """True when every path matches one of ``patterns`` (``**`` spans directories), as skipOn.paths wants."""
    regexes = [_glob_regex(p) for p in patterns]
    return all(any(r.fullmatch(path) for r in regexes) for path in paths)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = [fnmatch.translate(piece)[4:-3] for piece in pattern.split("**")]  # strip (?s:...)\Z
    body = ".*".join(parts)
    return re.compile(f"(?s:{body})(?:/.*)?")


def _hash_tree(root: str, excluded: set[str]) -> tuple[dict[str, str], t.Any]:
    manifest: dict[str, str] = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES and os.path.abspath(os.path.join(directory, d)) not in excluded)
        for name in files:
            full = os.path.join(directory, name)
            if name in SKIPPED_NAMES or os.path.abspath(full) in excluded:
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            info = os.lstat(full)
            h = hashlib.sha1()
            if stat.S_ISLNK(info.st_mode):
                h.update(b"link:" + os.readlink(full).encode())
            else:
                h.update(b"x" if info.st_mode & stat.S_IXUSR else b"-")
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            manifest[rel] = h.hexdigest()
    digest = hashlib.sha1()
    for rel in sorted(manifest):
        digest.update(f"{rel}\0{manifest[rel]}\n".encode())
    return manifest, digest


def _ignore(excluded: set[str]) -> t.Callable[[str, list[str]], set[str]]:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIPPED_NAMES or os.path.abspath(os.path.join(directory, n)) in excluded}

    return ignore
