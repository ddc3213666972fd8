"""``pipeplug push``: publish built plugin files to an OCI registry, in the layout piped pulls.

piped's ``oci://`` download (PipeCD's ``pkg/oci``) reads an image index, picks the manifest
whose ``platform`` is piped's own GOOS/GOARCH, and writes that manifest's layers of media
type ``application/vnd.pipecd.piped.plugin`` into the plugin file. This module lays the
files out exactly as ``pipectl plugin push`` does: one OCI 1.1 artifact manifest per
platform (artifactType ``…plugin+type``, the empty config, one layer holding the file byte
for byte) and an index over them, tagged.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import typing as t
from dataclasses import dataclass

from .oci import ARTIFACT_TYPE_PLUGIN
from .oci import EMPTY_JSON
from .oci import MEDIA_TYPE_EMPTY
from .oci import MEDIA_TYPE_INDEX
from .oci import MEDIA_TYPE_MANIFEST
from .oci import MEDIA_TYPE_PLUGIN
from .oci import Reference
from .oci import Registry
from .oci import RegistryError
from .oci import file_digest
from .oci import parse_reference
from .oci import sha256_digest

#: Go's GOOS/GOARCH names: piped matches platform.os/architecture against its own runtime.GOOS/GOARCH
GO_OSES = frozenset({"linux", "darwin", "windows", "freebsd", "netbsd", "openbsd", "illumos", "solaris", "aix", "android", "ios", "plan9", "dragonfly", "js", "wasip1"})
GO_ARCHES = frozenset({"amd64", "arm64", "386", "arm", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64", "mipsle", "mips", "loong64", "wasm"})
_NOT_GO_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "x64": "amd64", "i386": "386", "i686": "386", "armv7l": "arm", "macos": "darwin", "osx": "darwin", "win": "windows"}
#: the piped.yaml snippet pipeplug build writes beside each file, and its one url line
SNIPPET_SUFFIX = ".piped.yaml"
_URL_LINE = re.compile(r"^(\s+url:) \S+.*$", re.MULTILINE)
#: pipeplug build's (and PipeCD's release) file name: <name>_<version>_<os>_<arch>
_RELEASE_NAME = re.compile(r"(?P<name>.+?)_(?P<version>[^_]+)_(?P<os>[a-z0-9]+)_(?P<arch>[a-z0-9]+)")
_PLATFORM_SUFFIX = re.compile(r"_([a-z0-9]+)_([a-z0-9]+)$")
_ANNOTATION_TITLE = "org.opencontainers.image.title"
_ANNOTATION_CREATED = "org.opencontainers.image.created"


class PushError(RegistryError):
    """A FILE argument that cannot be pushed; the message names it and the fix."""


@dataclass(frozen=True)
class PlatformFile:
    """One plugin file and the platform piped must be running on to pull it."""

    os: str
    arch: str
    path: str

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def title(self) -> str:
        """The layer's file name. piped's puller writes every layer of the index into one
        directory by this name, so two platforms must never share it."""
        name = os.path.basename(self.path)
        suffix = f"_{self.os}_{self.arch}"
        return name if name.endswith(suffix) else name + suffix


@dataclass(frozen=True)
class Pushed:
    """What a push published: the tag, the index's digest and the platforms in it."""

    reference: Reference
    digest: str
    files: tuple[PlatformFile, ...]

    @property
    def url(self) -> str:
        return str(self.reference)

    @property
    def pinned_url(self) -> str:
        """The url with the index digest: piped then pulls exactly this push, whatever the tag points at later."""
        return f"{self.reference}@{self.digest}"


def parse_file(arg: str) -> PlatformFile:
    """``OS/ARCH=PATH`` (pipectl's ``--files`` form) or a path named ``…_<os>_<arch>`` (pipeplug build's)."""
    head, eq, tail = arg.partition("=")
    explicit = bool(eq) and re.fullmatch(r"[^/=]+/[^/=]+", head) is not None
    path = tail if explicit else arg
    if not path:
        raise PushError(f"{arg}: no file after '='")
    if not os.path.exists(path):
        raise PushError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise PushError(f"{path}: not a regular file (pass the built plugin file)")
    if explicit:
        goos, goarch = head.split("/")
    else:
        match = _PLATFORM_SUFFIX.search(os.path.basename(path))
        if match is None:
            raise PushError(
                f"{arg}: cannot tell its platform; pass OS/ARCH={arg} (e.g. linux/amd64={arg}) or name it <name>_<version>_<os>_<arch> as pipeplug build does"
            )
        goos, goarch = match.groups()
    for value, known, what in ((goos, GO_OSES, "OS"), (goarch, GO_ARCHES, "architecture")):
        if value not in known:
            hint = f"; piped spells it {_NOT_GO_NAMES[value]!r}" if value in _NOT_GO_NAMES else "; use Go's names (GOOS/GOARCH), e.g. linux/amd64 or linux/arm64"
            raise PushError(f"{arg}: {what} {value!r} is not one piped runs on{hint}")
    return PlatformFile(goos, goarch, path)


def parse_files(args: t.Iterable[str]) -> tuple[PlatformFile, ...]:
    files = tuple(parse_file(arg) for arg in args)
    if not files:
        raise PushError("no FILE to push: pass at least one, e.g. dist/example_v0.1.0_linux_amd64")
    seen: dict[str, str] = {}
    for f in files:
        if f.platform in seen:
            raise PushError(f"two files for {f.platform}: {seen[f.platform]} and {f.path}; an index holds one file per platform")
        seen[f.platform] = f.path
    return files


def push(
    url: str,
    file_args: t.Iterable[str],
    *,
    insecure: bool = False,
    progress: t.Callable[[str], None] | None = None,
) -> Pushed:
    """Push the files to ``url`` as one image index, one manifest per platform; see the module docstring."""
    say = progress or (lambda message: None)
    reference = parse_reference(url)
    files = parse_files(file_args)
    registry = Registry(reference, insecure=insecure, progress=say)
    try:
        registry.ping()
        config_digest = registry.push_bytes(EMPTY_JSON, "the empty config")
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries = []
        for f in files:
            digest, size = file_digest(f.path)
            say(f"{f.platform}: {f.path} ({size / 1e6:.1f} MB, {digest[:19]}…)")
            registry.push_blob(f.path, digest, size, f.platform)
            manifest = _manifest(config_digest, digest, size, f.title, created)
            manifest_digest = registry.push_manifest(manifest, MEDIA_TYPE_MANIFEST, reference=sha256_digest(manifest))
            entries.append(
                {
                    "mediaType": MEDIA_TYPE_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "annotations": {_ANNOTATION_CREATED: created},
                    "platform": {"architecture": f.arch, "os": f.os},
                    "artifactType": ARTIFACT_TYPE_PLUGIN,
                }
            )
        index = _json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": entries})
        index_digest = registry.push_manifest(index, MEDIA_TYPE_INDEX, reference=reference.tag)
    finally:
        registry.close()
    return Pushed(reference, index_digest, files)


def _manifest(config_digest: str, digest: str, size: int, title: str, created: str) -> bytes:
    """An OCI 1.1 artifact manifest, shaped as PipeCD's pusher (oras) writes it."""
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "artifactType": ARTIFACT_TYPE_PLUGIN,
            "config": {"mediaType": MEDIA_TYPE_EMPTY, "digest": config_digest, "size": len(EMPTY_JSON), "data": "e30="},
            "layers": [{"mediaType": MEDIA_TYPE_PLUGIN, "digest": digest, "size": size, "annotations": {_ANNOTATION_TITLE: title}}],
            "annotations": {_ANNOTATION_CREATED: created},
        }
    )


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def piped_snippet(pushed: Pushed, port: int = 7001) -> str:
    """The ``spec.plugins`` entry for piped's config, with the ``oci://`` url.

    ``pipeplug build`` writes ``<file>.piped.yaml`` beside each file; the first one found
    is reused with its url replaced. Otherwise a minimal entry is made, named from the
    file name ``<name>_<version>_<os>_<arch>`` (else from the repository).
    """
    for f in pushed.files:
        snippet_path = f.path + SNIPPET_SUFFIX
        try:
            with open(snippet_path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        if len(_URL_LINE.findall(text)) == 1:
            return _URL_LINE.sub(lambda m: f"{m.group(1)} {pushed.url}", text)
    name = next((m["name"] for f in pushed.files if (m := _RELEASE_NAME.fullmatch(os.path.basename(f.path)))), None)
    name = name or pushed.reference.repository.rsplit("/", 1)[-1]
    return (
        "apiVersion: pipecd.dev/v1beta1\n"
        "kind: Piped\n"
        "spec:\n"
        "  plugins:\n"
        f"    - name: {name}\n"
        f"      port: {port}  # any free local port: piped dials localhost:{port}\n"
        f"      url: {pushed.url}\n"
    )
