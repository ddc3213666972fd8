"""The values a handler can ask for by parameter name, each computed only if it is asked for.

:class:`Injector` is built once per process (the app, its settings, the cache
of structured options); :class:`Values` once per call, from what the servicer
decoded, passed in explicitly. :meth:`Handler.call <pipeplug.handlers.Handler.call>`
calls ``values.<name>()`` for the names the handler declares.
"""

from __future__ import annotations

import datetime
import enum
import json
import types
import typing as t

from ._gen.model import deployment_pb2 as model_pb
from . import wire
from .configs import ConfigError

if t.TYPE_CHECKING:
    from .app import App
    from .app import StageSpec
    from .context import Context
    from .settings import PluginSettings


class InputError(ValueError):
    """Piped or the user sent something a handler cannot be called with."""


#: distinct ``with:`` configs kept per stage for reuse (the oldest goes first), each at most this long
_REUSE_LIMIT = 256
_REUSE_MAX_BYTES = 16 * 1024
_IMMUTABLE_TYPES = (str, int, float, bool, bytes, type(None), datetime.timedelta, datetime.datetime, datetime.date, datetime.time, enum.Enum)
_NOT_YET: t.Any = object()


class Injector:
    """Per-process: turns what piped sent into the values handlers declare (config, app spec, options, targets)."""

    def __init__(self, app: App, settings: PluginSettings) -> None:
        self.app = app
        self.settings = settings
        #: stage name -> {stage_config: options} for immutable options classes, None for others
        self._reuse: dict[str, dict[bytes, t.Any] | None] = {}

    def deploy_targets(self, names: t.Any) -> list[t.Any]:
        """The deploy targets named by a ``model.Deployment`` (``deploy_targets_by_plugin``) or a list of names."""
        if isinstance(names, model_pb.Deployment):
            entry = names.deploy_targets_by_plugin.get(self.settings.name)
            names = entry.deploy_targets if entry is not None else []
        try:
            return self.settings.targets_named(list(names))
        except LookupError as exc:
            raise InputError(str(exc)) from None

    def app_spec(self, source: t.Any) -> t.Any:
        """This plugin's section ``spec.plugins.<name>`` of ``source``'s app config, structured into the app's class."""
        path = f"spec.plugins.{self.settings.name}"
        section: t.Any = {}
        if source is not None:
            try:
                app_config = source.load_app_config()
            except Exception as exc:  # noqa: BLE001 - YAML errors come in many classes
                raise InputError(f"{source.application_config_filename or 'app config'}: cannot parse: {exc}") from None
            section = ((app_config.get("spec") or {}).get("plugins") or {}).get(self.settings.name) or {}
        if self.app.app_spec_class is None:
            return section  # no class to structure into
        try:
            return self.app.converter.structure(section, self.app.app_spec_class, path=path)
        except ConfigError as exc:
            raise InputError("; ".join(exc.problems)) from None

    def structure_options(self, spec: StageSpec, stage_config: bytes) -> t.Any:
        """The stage's ``with:`` structured into its options class, or a ConfigError naming each bad field.

        piped sends the same ``with:`` for a stage in every deployment of an
        application, so an immutable options object (a frozen attrs class
        of immutable fields) is structured once per distinct config and shared
        (:func:`reusable_options`). A rollback stage gets the ``with:`` of the
        forward stage at its index, so keys its class does not declare are ignored there.
        """
        if spec.name not in self._reuse:
            self._reuse[spec.name] = {} if reusable_options(spec.handler.options_type) else None
        reuse = self._reuse[spec.name]
        if reuse:
            cached = reuse.get(stage_config)
            if cached is not None:
                return cached
        try:
            raw = json.loads(stage_config) if stage_config else {}
        except ValueError as exc:
            raise ConfigError([f"with: not valid JSON ({exc})"]) from None
        if raw is None:
            raw = {}
        cls = spec.handler.options_type
        plain = cls is None or cls is t.Any or (cls is dict and isinstance(raw, dict))  # as decoded: no decoder needed
        value = raw if plain else self.app.converter.structure(raw, cls, path="with", lenient=spec.rollback)
        if reuse is not None and len(stage_config) <= _REUSE_MAX_BYTES:
            if len(reuse) >= _REUSE_LIMIT:
                del reuse[next(iter(reuse))]
            reuse[stage_config] = value
        return value


class Values:
    """Everything a handler can ask for in one call, each computed only if asked for.

    One slotted object per call, not a dict of closures: thousands of stages
    may be held at once.

    :param target_source: the ``model.DeploymentSource`` of the target commit, None if piped sent none
    :param running_source: the same for the running commit (None on a first deployment)
    :param target_names: where the deploy target names come from: the
        ``model.Deployment`` (``deploy_targets_by_plugin``) or a list of names
    :param stages, rollback: what BuildPipelineSyncStages and BuildQuickSyncStages offer as they are
    :param stage: the stage's spec and ``stage_config``, for ``options``

    :meth:`Handler.call <pipeplug.handlers.Handler.call>` calls the method named
    like each parameter the handler declares.
    """

    __slots__ = ("_injector", "_ctx", "_target_pb", "_running_pb", "_target_names", "_stages", "_rollback", "_stage", "_target")

    def __init__(
        self,
        injector: Injector,
        ctx: Context,
        *,
        target_source: t.Any = None,
        running_source: t.Any = None,
        target_names: t.Any = (),
        stages: list[t.Any] | None = None,
        rollback: bool = False,
        stage: tuple[StageSpec, bytes] | None = None,
    ) -> None:
        self._injector = injector
        self._ctx = ctx
        self._target_pb = target_source
        self._running_pb = running_source
        self._target_names = target_names
        self._stages = stages
        self._rollback = rollback
        self._stage = stage
        self._target = _NOT_YET

    def ctx(self) -> Context:
        return self._ctx

    def config(self) -> t.Any:
        return self._injector.settings.config

    def deployment(self) -> t.Any:
        return self._ctx.deployment

    def target_source(self) -> t.Any:
        if self._target is _NOT_YET:
            self._target = wire.source_from_pb(self._target_pb, self._target_pb is not None)
        return self._target

    def running_source(self) -> t.Any:
        return wire.source_from_pb(self._running_pb, self._running_pb is not None)

    def deploy_targets(self) -> list[t.Any]:
        return self._injector.deploy_targets(self._target_names)

    def app_spec(self) -> t.Any:
        return self._injector.app_spec(self.target_source())

    def options(self) -> t.Any:
        if self._stage is None:
            raise InputError("options are offered to stage handlers only")
        try:
            return self._injector.structure_options(*self._stage)
        except ConfigError as exc:
            raise InputError("; ".join(exc.problems)) from None

    def stages(self) -> list[t.Any]:
        return self._stages if self._stages is not None else []

    def rollback(self) -> bool:
        return self._rollback


def reusable_options(cls: t.Any, depth: int = 0) -> bool:
    """Whether values of ``cls`` can never change, so one structured ``with:`` may serve many calls."""
    if depth > 10:
        return False
    if isinstance(cls, type) and issubclass(cls, _IMMUTABLE_TYPES):
        return True
    origin, args = t.get_origin(cls), t.get_args(cls)
    if origin is t.Literal:
        return all(isinstance(arg, _IMMUTABLE_TYPES) for arg in args)
    if origin in (t.Union, types.UnionType, tuple, frozenset):
        return bool(args) and all(arg is Ellipsis or reusable_options(arg, depth + 1) for arg in args)
    if isinstance(cls, type) and hasattr(cls, "__attrs_attrs__"):  # an attrs class, so attrs is loaded
        import attrs

        props = getattr(cls, "__attrs_props__", None)  # attrs >= 25.4
        frozen = props.is_frozen if props is not None else getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"
        if not frozen:
            return False
        try:
            hints = t.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - unresolvable annotations: do not guess
            return False
        return all(reusable_options(hints.get(field.name, field.type), depth + 1) for field in attrs.fields(cls))
    return False
