"""Handler specs: a user function plus the injection plan read from its signature.

The signature is inspected once, at registration. Each parameter is matched by
name against the values the hook offers; an unknown name is an error raised at
decoration time, in the user's vocabulary, listing what can be injected.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import types
import typing as t
from concurrent.futures import Executor

from .errors import PipeplugError

#: What each injectable name means, for error messages and docs.
INJECTABLE: dict[str, str] = {
    "ctx": "the call's context",
    "options": "the stage's `with:` config, structured into the annotated attrs class",
    "config": "the plugin config from piped",
    "deploy_targets": "the deploy targets of this call",
    "deployment": "the deployment being planned or executed",
    "app_spec": "this plugin's section `spec.plugins.<name>` of the app config",
    "target_source": "the deployment source of the target commit",
    "running_source": "the deployment source of the running commit (None on a first deployment)",
    "stages": "the pipeline stages piped asks this plugin to plan",
    "rollback": "whether piped asks for rollback stages",
}

#: The names each kind of hook can receive.
HOOK_PARAMS: dict[str, tuple[str, ...]] = {
    "stage": ("ctx", "options", "config", "deploy_targets", "deployment", "app_spec", "target_source", "running_source"),
    "versions": ("ctx", "config", "deploy_targets", "deployment", "app_spec", "target_source", "running_source"),
    "strategy": ("ctx", "config", "deploy_targets", "deployment", "app_spec", "target_source", "running_source"),
    "pipeline_stages": ("ctx", "config", "stages", "rollback"),
    "quick_sync_stages": ("ctx", "config", "rollback"),
    "livestate": ("ctx", "config", "deploy_targets", "app_spec", "target_source"),
    "plan_preview": ("ctx", "config", "deploy_targets", "app_spec", "target_source", "running_source"),
    "on_startup": ("config", "deploy_targets"),
}


class Handler:
    """A registered user function and how to call it.

    A plain class, not attrs: creating attrs classes costs every plugin start time.
    """

    __slots__ = ("func", "hook", "params", "is_async", "options_type")

    def __init__(self, *, func: t.Callable[..., t.Any], hook: str, params: tuple[str, ...], is_async: bool, options_type: t.Any = None) -> None:
        self.func = func
        self.hook = hook
        self.params = params
        self.is_async = is_async
        #: the annotation of ``options``, or None for the raw decoded JSON
        self.options_type = options_type

    def __repr__(self) -> str:
        return f"Handler({self.qualname}, hook={self.hook!r}, params={self.params!r})"

    @property
    def qualname(self) -> str:
        return callable_name(self.func)

    def call(self, values: object, executor: Executor | None) -> t.Awaitable[t.Any]:
        """Call the function with the values it asked for; await the result.

        ``values`` has a zero-argument getter attribute per injectable name
        (:class:`~pipeplug.inject.Values`, or a namespace of lambdas), so that
        only what the handler declares is computed. Coroutine functions run on
        the event loop (their coroutine is returned as is: no extra frame per
        call, which thousands of held stages would pay for); plain functions
        run in ``executor``. A getter's error is raised here, before any await.
        """
        kwargs = {name: getattr(values, name)() for name in self.params}
        if self.is_async:
            return self.func(**kwargs)  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self.func, **kwargs)
        return loop.run_in_executor(executor, call)


class RegistrationError(PipeplugError, TypeError):
    """A handler cannot be registered as written."""


def analyse(func: t.Callable[..., t.Any], hook: str, *, label: str) -> Handler:
    """Read ``func``'s signature once and build its :class:`Handler`.

    ``func`` may be a function, a ``functools.partial``, a ``functools.wraps``
    wrapper or a callable object. ``label`` names the registration in errors,
    e.g. ``@app.stage("WAIT")``.
    """
    if not callable(func):
        raise RegistrationError(f"{label} decorates {func!r}, which is not callable")
    name = callable_name(func)
    allowed = HOOK_PARAMS[hook]
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{label}: cannot read the signature of {name}(): {exc}") from None
    bound = func.keywords if isinstance(func, functools.partial) else {}
    params: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in bound:
            continue  # what a partial bound is the caller's choice, not pipeplug's to inject
        if param.name not in allowed:
            if param.default is not param.empty:
                continue
            raise RegistrationError(_unknown_parameter(label, name, param.name, allowed))
        if param.kind is param.POSITIONAL_ONLY:
            raise RegistrationError(f"{label} handler {name}(): {param.name!r} must not be positional-only")
        params.append(param.name)
    options_type = None
    if "options" in params:
        options_type = _options_type(func, signature.parameters["options"].annotation, label)
    return Handler(func=func, hook=hook, params=tuple(params), is_async=_is_async(func), options_type=options_type)


def callable_name(func: t.Any) -> str:
    """The name users wrote: a function's qualname, a partial's function's, a callable object's class's."""
    target = _underlying(func)
    name = getattr(target, "__qualname__", None)
    if not isinstance(name, str):
        name = getattr(type(target), "__qualname__", None)
    return name if isinstance(name, str) else repr(func)


def _underlying(func: t.Any) -> t.Any:
    """The function behind partials and ``functools.wraps`` wrappers (bounded: wrappers may loop)."""
    for _ in range(100):
        if isinstance(func, functools.partial):
            func = func.func
        elif callable(getattr(func, "__wrapped__", None)):
            func = func.__wrapped__
        else:
            break
    return func


def _is_async(func: t.Any) -> bool:
    """Whether calling ``func`` returns something to await (rather than running to completion in a thread).

    The outermost callable decides; below it, the wrapped function does, so that a
    plain ``functools.wraps`` wrapper around a coroutine function is async too.
    """
    for candidate in (func, _underlying(func)):
        if inspect.iscoroutinefunction(candidate):
            return True
        if not inspect.isroutine(candidate) and not isinstance(candidate, functools.partial):
            if inspect.iscoroutinefunction(getattr(candidate, "__call__", None)):  # a callable object
                return True
    return False


def _unknown_parameter(label: str, name: str, param: str, allowed: tuple[str, ...]) -> str:
    """Say which parameter is wrong, what it probably should be, and what can be injected here."""
    from .suggest import did_you_mean

    if param in INJECTABLE:
        where = f"{param!r} ({INJECTABLE[param]}) is not offered to {label}"
    else:
        where = f"unknown parameter {param!r}" + did_you_mean(param, allowed)
    offered = "\n".join(f"  {choice}: {INJECTABLE[choice]}" for choice in allowed)
    return f"{label} handler {name}(): {where}. Injectable here (give other parameters a default):\n{offered}"


def _options_type(func: t.Callable[..., t.Any], annotation: t.Any, label: str) -> t.Any:
    """The class ``options`` is annotated with (None without one), resolved as typing.get_type_hints would.

    Only this annotation is evaluated: the others (``ctx: pipeplug.Context``, the
    return type) would import, at registration, modules a plugin needs only later.
    """
    if annotation is inspect.Parameter.empty:
        return None
    target = _underlying(func)
    namespace = getattr(target, "__globals__", None) or getattr(getattr(target, "__call__", None), "__globals__", {})
    try:
        return t.get_type_hints(types.SimpleNamespace(__annotations__={"options": annotation}), globalns=namespace)["options"]
    except Exception as exc:  # noqa: BLE001 - forward references can fail in many ways
        raise RegistrationError(
            f"{label}: cannot resolve the annotation of options in {callable_name(func)}(): {exc}; "
            "the class must be importable from the handler's module (not defined inside a function)"
        ) from None
