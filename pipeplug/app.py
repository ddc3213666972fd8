"""The App: where handlers are registered, and what the servicers are built from.

Registration follows Flask: each decorator is a thin shell over a
``register_*`` method, returns the user's function unchanged, and is refused
once the app has started serving.
"""

from __future__ import annotations

import functools
import typing as t

from .handlers import Handler
from .handlers import RegistrationError
from .handlers import analyse
from .handlers import callable_name

if t.TYPE_CHECKING:
    from .converter import StrictConverter
    from .testing import TestClient
    from .types import PlannedStage
    from .types import RequestedStage

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: hooks that replace one default RPC behaviour each
SINGLE_HOOKS = ("versions", "strategy", "quick_sync_stages", "pipeline_stages", "livestate", "plan_preview")


class StageSpec:
    """A registered stage: its name, its handler and how planning treats it.

    A plain class, not attrs: creating attrs classes costs every plugin start time.
    """

    __slots__ = ("name", "handler", "rollback", "quick_sync", "plan")

    def __init__(
        self,
        *,
        name: str,
        handler: Handler,
        rollback: bool = False,
        quick_sync: bool = False,
        plan: t.Callable[[RequestedStage], PlannedStage] | None = None,
    ) -> None:
        self.name = name
        self.handler = handler
        #: added by the default planners when piped asks for rollback
        self.rollback = rollback
        #: returned by the default BuildQuickSyncStages
        self.quick_sync = quick_sync
        #: shapes how the stage is planned (see App.stage's ``plan``); None plans it as requested
        self.plan = plan

    def __repr__(self) -> str:
        return f"StageSpec(name={self.name!r}, handler={self.handler.qualname}, rollback={self.rollback}, quick_sync={self.quick_sync})"


def setupmethod(method: F) -> F:
    """Refuse registration once the app serves: piped has already read the stage list."""

    @functools.wraps(method)
    def guarded(self: App, *args: t.Any, **kwargs: t.Any) -> t.Any:
        if self._started:
            raise RuntimeError(
                f"App {self.name!r} is already serving, so {method.__name__}() can no longer change it: "
                "piped reads the stage list once at startup. Register every handler at import time, "
                "before calling app.main() or `pipeplug run`."
            )
        return method(self, *args, **kwargs)

    return t.cast(F, guarded)


class App:
    """A PipeCD plugin: a set of handlers that pipeplug serves to piped.

    :param name: the plugin's default name; piped's config (``spec.plugins[].name``)
        overrides it at runtime.
    :param config: attrs class for the plugin config from piped (``--config``'s ``config``).
    :param deploy_target_config: attrs class for each deploy target's ``config``.
    :param app_spec: attrs class for the app config section ``spec.plugins.<name>``.
    """

    def __init__(
        self,
        name: str,
        *,
        config: type | None = None,
        deploy_target_config: type | None = None,
        app_spec: type | None = None,
    ) -> None:
        if not name:
            raise ValueError("App name must not be empty: piped routes config by plugin name")
        self.name = name
        self.config_class = config
        self.deploy_target_config_class = deploy_target_config
        self.app_spec_class = app_spec
        #: stages by name, in registration order; internal, use @app.stage
        self.stages: dict[str, StageSpec] = {}
        #: one handler per hook name (SINGLE_HOOKS); internal, use the decorators
        self.hooks: dict[str, Handler] = {}
        #: functions run before the port is bound; internal, use @app.on_startup
        self.startup_hooks: list[Handler] = []
        self._started = False

    def __repr__(self) -> str:
        return f"<pipeplug.App {self.name!r} stages={list(self.stages)}>"

    @functools.cached_property
    def converter(self) -> StrictConverter:
        """Structures user config values strictly into their classes; one per app so hooks never leak between apps.

        Built on first use, so a plugin that never structures a config class never imports cattrs.
        """
        from .converter import StrictConverter

        return StrictConverter()

    # -- stages -----------------------------------------------------------

    def stage(
        self,
        name: str,
        *,
        rollback: bool = False,
        quick_sync: bool = False,
        plan: t.Callable[[RequestedStage], PlannedStage] | None = None,
    ) -> t.Callable[[F], F]:
        """Register the handler that executes stage ``name``.

        :param rollback: this is a rollback stage; the default planners add it
            when piped asks for rollback (``planner.autoRollback``).
        :param quick_sync: the default BuildQuickSyncStages returns this stage.
        :param plan: ``plan(stage: RequestedStage) -> PlannedStage`` decides how the
            stage is planned in a pipeline, e.g. with an Approve button
            (``available_operation=ManualOperation.APPROVE``, ``authorized_operators``
            from its ``with:``). Used by the default pipeline planner, and by
            :meth:`plan_stage` in your own ``@app.pipeline_stages``.
        """

        if callable(name):  # a bare @app.stage: the function arrived where the name belongs
            raise RegistrationError(
                f"@app.stage needs the stage's name: write @app.stage(\"NAME\") above {callable_name(name)}(), "
                "with the name the app config's pipeline uses"
            )

        def decorator(func: F) -> F:
            return self.register_stage(name, func, rollback=rollback, quick_sync=quick_sync, plan=plan)

        return decorator

    @setupmethod
    def register_stage(
        self,
        name: str,
        func: F,
        *,
        rollback: bool = False,
        quick_sync: bool = False,
        plan: t.Callable[[RequestedStage], PlannedStage] | None = None,
    ) -> F:
        """Register ``func`` for stage ``name`` and return it; see :meth:`stage`."""
        label = f"@app.stage({name!r})"
        if not isinstance(name, str) or not name.strip():
            raise RegistrationError(f"{label}: a stage name must be a non-empty string")
        if name in self.stages:
            other = self.stages[name].handler.qualname
            raise RegistrationError(f"{label}: stage {name!r} is already handled by {other}(); a stage has one handler")
        if rollback and quick_sync:
            raise RegistrationError(f"{label}: a stage cannot be both the rollback and the quick-sync stage")
        if plan is not None and not callable(plan):
            raise RegistrationError(f"{label}: plan={plan!r} is not callable; pass a function taking the RequestedStage and returning a PlannedStage")
        handler = analyse(func, "stage", label=label)
        self.stages[name] = StageSpec(name=name, handler=handler, rollback=rollback, quick_sync=quick_sync, plan=plan)
        return func

    def plan_stage(self, stage: RequestedStage) -> PlannedStage:
        """Plan one requested pipeline stage: by its ``plan=`` function, else as requested.

        Call it from your own ``@app.pipeline_stages`` handler to keep what each stage's
        ``plan=`` adds: ``return [app.plan_stage(s) for s in stages]``.
        """
        from .types import PlannedStage  # not at the top: a plugin starts without the value classes

        spec = self.stages.get(stage.name)
        if spec is None or spec.plan is None:
            return PlannedStage(name=stage.name, index=stage.index, desc=stage.desc)
        planned = spec.plan(stage)
        if not isinstance(planned, PlannedStage) or planned.name != stage.name or planned.index != stage.index or planned.rollback:
            qualname = getattr(spec.plan, "__qualname__", repr(spec.plan))
            raise TypeError(
                f"@app.stage({stage.name!r}, plan={qualname}) returned {planned!r}; expected "
                f"PlannedStage(name={stage.name!r}, index={stage.index}, ...), not a rollback stage"
            )
        return planned

    # -- single hooks -----------------------------------------------------

    @t.overload
    def versions(self, func: F) -> F: ...
    @t.overload
    def versions(self, func: None = None) -> t.Callable[[F], F]: ...
    def versions(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Register DetermineVersions: return a list of :class:`ArtifactVersion`."""
        return self._decorate(self.register_versions, func)

    @t.overload
    def strategy(self, func: F) -> F: ...
    @t.overload
    def strategy(self, func: None = None) -> t.Callable[[F], F]: ...
    def strategy(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Register DetermineStrategy: return a :class:`SyncStrategy`, a :class:`StrategyDecision`, or None for "no opinion"."""
        return self._decorate(self.register_strategy, func)

    @t.overload
    def pipeline_stages(self, func: F) -> F: ...
    @t.overload
    def pipeline_stages(self, func: None = None) -> t.Callable[[F], F]: ...
    def pipeline_stages(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Replace the default BuildPipelineSyncStages: return a list of :class:`PlannedStage`."""
        return self._decorate(self.register_pipeline_stages, func)

    @t.overload
    def quick_sync_stages(self, func: F) -> F: ...
    @t.overload
    def quick_sync_stages(self, func: None = None) -> t.Callable[[F], F]: ...
    def quick_sync_stages(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Replace the default BuildQuickSyncStages: return a list of :class:`PlannedStage`."""
        return self._decorate(self.register_quick_sync_stages, func)

    @t.overload
    def livestate(self, func: F) -> F: ...
    @t.overload
    def livestate(self, func: None = None) -> t.Callable[[F], F]: ...
    def livestate(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Serve LivestateService.GetLivestate: return a :class:`Livestate`."""
        return self._decorate(self.register_livestate, func)

    @t.overload
    def plan_preview(self, func: F) -> F: ...
    @t.overload
    def plan_preview(self, func: None = None) -> t.Callable[[F], F]: ...
    def plan_preview(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Serve PlanPreviewService.GetPlanPreview: return a list of :class:`PlanPreview`."""
        return self._decorate(self.register_plan_preview, func)

    @staticmethod
    def _decorate(register: t.Callable[[F], object], func: F | None) -> F | t.Callable[[F], F]:
        """Both spellings of a hook decorator: bare (``@app.versions``) and called (``@app.versions()``)."""

        def decorator(func: F) -> F:
            register(func)
            return func

        return decorator if func is None else decorator(func)

    @setupmethod
    def register_versions(self, func: F) -> F:
        """Register ``func`` for DetermineVersions; see :meth:`versions`. Returns ``func``."""
        return self._register_hook("versions", func)

    @setupmethod
    def register_strategy(self, func: F) -> F:
        """Register ``func`` for DetermineStrategy; see :meth:`strategy`. Returns ``func``."""
        return self._register_hook("strategy", func)

    @setupmethod
    def register_pipeline_stages(self, func: F) -> F:
        """Register ``func`` for BuildPipelineSyncStages; see :meth:`pipeline_stages`. Returns ``func``."""
        return self._register_hook("pipeline_stages", func)

    @setupmethod
    def register_quick_sync_stages(self, func: F) -> F:
        """Register ``func`` for BuildQuickSyncStages; see :meth:`quick_sync_stages`. Returns ``func``."""
        return self._register_hook("quick_sync_stages", func)

    @setupmethod
    def register_livestate(self, func: F) -> F:
        """Register ``func`` for LivestateService.GetLivestate; see :meth:`livestate`. Returns ``func``."""
        return self._register_hook("livestate", func)

    @setupmethod
    def register_plan_preview(self, func: F) -> F:
        """Register ``func`` for PlanPreviewService.GetPlanPreview; see :meth:`plan_preview`. Returns ``func``."""
        return self._register_hook("plan_preview", func)

    def _register_hook(self, hook: str, func: F) -> F:
        """Register ``func`` as the app's one ``hook`` handler (a key of :data:`SINGLE_HOOKS`)."""
        label = f"@app.{hook}"
        if hook in self.hooks:
            raise RegistrationError(f"{label} is already registered as {self.hooks[hook].qualname}(); an app has one")
        self.hooks[hook] = analyse(func, hook, label=label)
        return func

    @t.overload
    def on_startup(self, func: F) -> F: ...
    @t.overload
    def on_startup(self, func: None = None) -> t.Callable[[F], F]: ...
    def on_startup(self, func: F | None = None) -> F | t.Callable[[F], F]:
        """Run ``func(config, deploy_targets)`` once before the port is bound.

        Startup failures stop the process before piped can connect, with the
        error printed.
        """
        return self._decorate(self.register_on_startup, func)

    @setupmethod
    def register_on_startup(self, func: F) -> F:
        """Register a startup function and return it; see :meth:`on_startup`."""
        self.startup_hooks.append(analyse(func, "on_startup", label="@app.on_startup"))
        return func

    # -- serving ----------------------------------------------------------

    def finalize(self) -> None:
        """Check the app is something piped can use, then refuse further registration; the server calls it.

        Raises :class:`~pipeplug.RegistrationError` for an app that registers
        nothing piped can call, or a planning hook with no stage to plan.
        Calling it again does nothing.
        """
        if self._started:
            return
        if not self.stages and not self.hooks:
            raise RegistrationError(
                f"App {self.name!r} registers nothing piped can call: add @app.stage(...) (or @app.livestate / "
                "@app.plan_preview for a plugin without stages) before serving it"
            )
        planners = [hook for hook in ("pipeline_stages", "quick_sync_stages") if hook in self.hooks]
        if planners and not self.stages:
            raise RegistrationError(
                f"App {self.name!r} registers @app.{planners[0]} but no stage: the stages it plans must be this "
                "plugin's own, so piped could not route any of them; add @app.stage(...) for each"
            )
        self._started = True

    # -- derived views ----------------------------------------------------

    def defined_stages(self) -> list[str]:
        """Every stage name this plugin can emit, for FetchDefinedStages."""
        return list(self.stages)

    # -- running ----------------------------------------------------------

    def main(self, argv: t.Sequence[str] | None = None) -> None:
        """Run the plugin command line, as piped starts a plugin binary; exits when done.

        ``python my_plugin.py start --piped-plugin-service localhost:9087 --config '<json>'``
        """
        import sys

        from .start import main

        main(self, sys.argv[1:] if argv is None else argv)

    def test_client(self, **options: t.Any) -> TestClient:
        """A :class:`~pipeplug.testing.TestClient` serving this app in-process, wired to a FakePiped.

        ``with app.test_client(deploy_targets=[{"name": "dev", "config": {...}}]) as client:``
        Options: ``piped`` (a FakePiped to share), ``name``, ``config``, ``deploy_targets``.
        """
        from .testing import TestClient

        return TestClient(self, **options)
