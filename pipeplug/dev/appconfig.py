"""The application config (``app.pipecd.yaml``), read the way piped reads it.

piped converts the YAML to JSON, decodes it into its generic application spec
with defaults (``timeout: 6h``, ``planner.autoRollback: true``, ``with: {}``)
and checks ``apiVersion``/``kind``. This module does the same and names the
file, the field path and the fix for every problem, so ``pipeplug dev`` can
refuse a bad config before any plugin starts. Unknown keys are only warned
about: piped ignores them silently, which is exactly why a typo deserves a
warning.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import typing as t

import attrs
import yaml

from ..configs import parse_duration

API_VERSION = "pipecd.dev/v1beta1"
APPLICATION_KINDS = ("Application", "KubernetesApp", "TerraformApp", "LambdaApp", "CloudRunApp", "ECSApp")
DEFAULT_TIMEOUT = 6 * 3600.0

SPEC_KEYS = {
    "name", "labels", "description", "planner", "commitMatcher", "pipeline", "trigger", "postSync", "timeout",
    "encryption", "attachment", "notification", "eventWatcher", "driftDetection", "plugins",
}  # fmt: skip
STAGE_KEYS = {"name", "desc", "timeout", "with", "skipOn"}


class AppConfigError(ValueError):
    """The app config cannot be used; ``problems`` holds one "field: what and how to fix" line each."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))

    def render(self) -> str:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"invalid app config {self.path}:\n{lines}"


@attrs.frozen
class SkipOn:
    commit_message_prefixes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@attrs.frozen
class PipelineStageConfig:
    """One ``spec.pipeline.stages[i]``; ``with_json`` is what piped sends as the stage config."""

    name: str
    index: int
    desc: str = ""
    timeout: float = DEFAULT_TIMEOUT
    with_json: bytes = b"{}"
    skip_on: SkipOn = SkipOn()


@attrs.frozen
class AppConfig:
    """The parts of an app config piped's planner and scheduler use."""

    path: str
    raw: bytes
    kind: str
    name: str
    labels: t.Mapping[str, str]
    always_use_pipeline: bool
    auto_rollback: bool
    commit_matcher_quick_sync: str
    commit_matcher_pipeline: str
    stages: tuple[PipelineStageConfig, ...]
    timeout: float
    #: ``spec.plugins``: plugin name -> its section (a mapping, or None)
    plugins: t.Mapping[str, t.Any]
    #: ``spec.notification`` as JSON, for the deployment's shared metadata; "" when absent
    notification_json: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    @property
    def directory(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def stage_at(self, index: int) -> PipelineStageConfig | None:
        """The pipeline stage at ``index``, as piped's ``GetStage`` finds it."""
        return self.stages[index] if 0 <= index < len(self.stages) else None


def load_app_config(path: str) -> AppConfig:
    """Read and check ``path``; raise :class:`AppConfigError` naming every bad field."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise AppConfigError(path, ["file not found; pass the application's app.pipecd.yaml with --app-config"]) from None
    except OSError as exc:
        raise AppConfigError(path, [f"cannot read it: {exc.strerror}"]) from None
    return parse_app_config(raw, path)


def parse_app_config(raw: bytes, path: str) -> AppConfig:
    """Check an app config's bytes; ``path`` names it in messages and gives its directory."""
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise AppConfigError(path, [f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(doc, dict):
        raise AppConfigError(path, ["expected a mapping with apiVersion, kind and spec at the top level"])
    p = _Problems()
    if doc.get("apiVersion") != API_VERSION:
        p.error("apiVersion", f"must be {API_VERSION!r} (got {doc.get('apiVersion')!r}); piped refuses any other version")
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        p.error("kind", "required; use `kind: Application`")
        kind = ""
    elif kind not in APPLICATION_KINDS:
        p.warn("kind", f"{kind!r} is not an application kind ({', '.join(APPLICATION_KINDS)}); piped's planner accepts it, its trigger does not")
    for key in doc:
        if key not in ("apiVersion", "kind", "spec"):
            p.warn(str(key), "unknown top-level key; piped ignores it")
    spec = doc.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        p.error("spec", f"expected a mapping, got {_kind(spec)}")
        spec = {}
    for key in spec:
        if key not in SPEC_KEYS:
            p.warn(f"spec.{key}", f"unknown field; piped ignores it (known: {', '.join(sorted(SPEC_KEYS))})")

    name = p.string(spec, "name", "spec.name")
    labels = p.string_map(spec, "labels", "spec.labels")
    planner = p.mapping(spec, "planner", "spec.planner")
    always = p.boolean(planner, "alwaysUsePipeline", "spec.planner.alwaysUsePipeline", False)
    auto_rollback = p.boolean(planner, "autoRollback", "spec.planner.autoRollback", True)
    matcher = p.mapping(spec, "commitMatcher", "spec.commitMatcher")
    quick_pattern = p.string(matcher, "quickSync", "spec.commitMatcher.quickSync")
    pipeline_pattern = p.string(matcher, "pipeline", "spec.commitMatcher.pipeline")
    for field, pattern in (("quickSync", quick_pattern), ("pipeline", pipeline_pattern)):
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                p.warn(f"spec.commitMatcher.{field}", f"not a valid regular expression ({exc}); piped ignores the matcher")
    timeout = p.duration(spec, "timeout", "spec.timeout", DEFAULT_TIMEOUT)
    stages = _stages(p, spec)
    plugins = p.mapping(spec, "plugins", "spec.plugins")
    for plugin, section in plugins.items():
        if section is not None and not isinstance(section, dict):
            p.error(f"spec.plugins.{plugin}", f"expected a mapping (or nothing), got {_kind(section)}; piped fails to parse the config")
    _piped_validations(p, spec)
    notification = spec.get("notification")
    notification_json = json.dumps(notification, separators=(",", ":"), default=str) if notification else ""
    if p.errors:
        raise AppConfigError(path, p.errors)
    return AppConfig(
        path=path,
        raw=raw,
        kind=kind,
        name=name,
        labels=labels,
        always_use_pipeline=always,
        auto_rollback=auto_rollback,
        commit_matcher_quick_sync=quick_pattern,
        commit_matcher_pipeline=pipeline_pattern,
        stages=tuple(stages),
        timeout=timeout,
        plugins=dict(plugins),
        notification_json=notification_json,
        warnings=tuple(p.warnings),
    )


def with_to_json(value: t.Any) -> bytes:
    """A stage's ``with`` as piped sends it: compact JSON with sorted keys, ``null`` for a bare ``with:``."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=_json_default).encode()


def _json_default(value: t.Any) -> t.Any:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _stages(p: _Problems, spec: dict[str, t.Any]) -> list[PipelineStageConfig]:
    pipeline = p.mapping(spec, "pipeline", "spec.pipeline")
    raw_stages = pipeline.get("stages") or []
    if not isinstance(raw_stages, list):
        p.error("spec.pipeline.stages", f"expected a list of stages, got {_kind(raw_stages)}")
        return []
    stages = []
    for i, entry in enumerate(raw_stages):
        where = f"spec.pipeline.stages[{i}]"
        if not isinstance(entry, dict):
            p.error(where, f"expected a mapping with at least `name`, got {_kind(entry)}")
            continue
        for key in entry:
            if key not in STAGE_KEYS:
                p.warn(f"{where}.{key}", f"unknown field; piped ignores it (known: {', '.join(sorted(STAGE_KEYS))})")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            p.error(f"{where}.name", "required: the stage name, e.g. WAIT; it routes the stage to a plugin")
            continue
        skip = p.mapping(entry, "skipOn", f"{where}.skipOn")
        stages.append(
            PipelineStageConfig(
                name=name,
                index=i,
                desc=p.string(entry, "desc", f"{where}.desc"),
                timeout=p.duration(entry, "timeout", f"{where}.timeout", DEFAULT_TIMEOUT),
                # A missing `with` is {} (piped's default); a bare `with:` is JSON null.
                with_json=with_to_json(entry["with"]) if "with" in entry else b"{}",
                skip_on=SkipOn(
                    commit_message_prefixes=tuple(p.string_list(skip, "commitMessagePrefixes", f"{where}.skipOn.commitMessagePrefixes")),
                    paths=tuple(p.string_list(skip, "paths", f"{where}.skipOn.paths")),
                ),
            )
        )
    return stages


def _piped_validations(p: _Problems, spec: dict[str, t.Any]) -> None:
    """The ``Validate()`` checks piped runs on optional sections."""
    encryption = spec.get("encryption")
    if isinstance(encryption, dict) and not encryption.get("decryptionTargets"):
        p.error("spec.encryption.decryptionTargets", "must not be empty when spec.encryption is set")
    attachment = spec.get("attachment")
    if isinstance(attachment, dict) and not attachment.get("targets"):
        p.error("spec.attachment.targets", "must not be empty when spec.attachment is set")
    chain = (spec.get("postSync") or {}).get("chain") if isinstance(spec.get("postSync"), dict) else None
    if isinstance(chain, dict) and not chain.get("applications"):
        p.error("spec.postSync.chain.applications", "must not be empty when spec.postSync.chain is set")


class _Problems:
    """Collects errors and warnings while reading fields with piped's types."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, field: str, message: str) -> None:
        self.errors.append(f"{field}: {message}")

    def warn(self, field: str, message: str) -> None:
        self.warnings.append(f"{field}: {message}")

    def mapping(self, parent: dict[str, t.Any], key: str, field: str) -> dict[str, t.Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(field, f"expected a mapping, got {_kind(value)}")
            return {}
        return value

    def string(self, parent: dict[str, t.Any], key: str, field: str) -> str:
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.error(field, f"expected a string, got {_kind(value)}")
            return ""
        return value

    def boolean(self, parent: dict[str, t.Any], key: str, field: str, default: bool) -> bool:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(field, f"expected true or false, got {_kind(value)}")
            return default
        return value

    def duration(self, parent: dict[str, t.Any], key: str, field: str, default: float) -> float:
        value = parent.get(key)
        if value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value / 1e9  # a bare number is nanoseconds, as for Go's time.Duration
        try:
            seconds = parse_duration(value).total_seconds()
        except ValueError:
            self.error(field, f'expected a Go duration such as "30s", "5m" or "1h30m", got {value!r}')
            return default
        if seconds <= 0:
            self.warn(field, f"{value!r} is not positive; piped's timer fires at once")
        return seconds

    def string_map(self, parent: dict[str, t.Any], key: str, field: str) -> dict[str, str]:
        value = self.mapping(parent, key, field)
        bad = [k for k, v in value.items() if not isinstance(v, str)]
        for k in bad:
            self.error(f"{field}.{k}", f"expected a string, got {_kind(value[k])}; quote it")
        return {str(k): v for k, v in value.items() if isinstance(v, str)}

    def string_list(self, parent: dict[str, t.Any], key: str, field: str) -> list[str]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(field, f"expected a list of strings, got {_kind(value)}")
            return []
        return value


def _kind(value: t.Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"
