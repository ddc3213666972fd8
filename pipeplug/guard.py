"""What every served RPC passes through: the concurrency limit, malformed requests, metrics, the cancel guard.

Handlers are wrapped once, at registration (:class:`GuardedRegistrar` stands in
for the server while the generated ``add_*_to_server`` functions run), so a
call pays for one extra coroutine frame and a few counter updates, and nothing
is looked up per call. A grpc.aio server interceptor would cost more: it runs
its own coroutine chain for every call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing as t

import grpc

from ._gen.model import deployment_pb2 as model_pb
from .grpc_private import generic_handler_methods
from .logconfig import has_secrets
from .masking import MaskingContext
from .masking import mask_message
from .metrics import METRICS
from .metrics import Metrics

log = logging.getLogger("pipeplug")

_STAGE_STATUS_NAMES = {value.number: value.name for value in model_pb.StageStatus.DESCRIPTOR.values}
_CODE_NAMES = {code: code.name for code in grpc.StatusCode}


def _cancel_requested() -> bool:
    """True if grpc cancelled the task serving this call (piped cancelled it), even if the handler swallowed it.

    ``ServicerContext.cancelled()`` stays False on the server side of a client cancel.
    Python 3.10 has no ``Task.cancelling()``; there a swallowed cancel goes unnoticed.
    """
    task: t.Any = asyncio.current_task()
    return bool(task.cancelling())


def _never() -> bool:
    return False


#: what the guard asks after a handler returned; checked per call, so chosen once
_cancel_check = _cancel_requested if hasattr(asyncio.Task, "cancelling") else _never


class _Malformed:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class GenericOnly:
    """Looks like a grpc.aio server to generated ``add_*Servicer_to_server`` functions; registers generic handlers only.

    Generated code registers each service twice: as a generic handler and as
    registered methods. grpc.aio keeps one pending accept per registered method
    (plus one for all others) and, for every call it accepts, runs
    ``asyncio.wait`` over all of them, so each registered method costs every
    call of every method. Served through the generic handlers alone, a call
    costs about 50,000 fewer instructions (bench/RESULTS.md, "Issue 13 part C").
    The accept loop came with grpc/grpc#41796; grpc/grpc#43461 (open) replaces
    it: measure again with ``bench/instructions.py`` when grpcio moves past it.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server
        #: services that came through add_generic_rpc_handlers
        self.services: set[str] = set()

    def add_generic_rpc_handlers(self, handlers: t.Sequence[t.Any]) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if callable(name):
                self.services.add(name())
            self.server.add_generic_rpc_handlers((self.wrap(handler),))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, t.Any]) -> None:
        """Serve ``handlers`` generically, unless the same service came through :meth:`add_generic_rpc_handlers` already."""
        if service not in self.services:
            self.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))

    def wrap(self, handler: t.Any) -> t.Any:
        """The generic handler to register in place of ``handler``: itself here."""
        return handler


class GuardedRegistrar(GenericOnly):
    """A :class:`GenericOnly` that wraps every unary-unary method in the guard.

    :param maximum_concurrent_rpcs: calls beyond this many in flight are refused
        with RESOURCE_EXHAUSTED at once. (grpc.aio's own ``maximum_concurrent_rpcs``
        does not refuse: it stops accepting, so excess calls queue inside grpc
        and are later cancelled by its pending-request limits.)
    """

    def __init__(self, server: grpc.aio.Server, *, maximum_concurrent_rpcs: int | None = None, metrics: Metrics = METRICS) -> None:
        super().__init__(server)
        self.limit = maximum_concurrent_rpcs
        self.metrics = metrics
        #: calls in flight on this server (the metrics are per process)
        self.in_flight = 0

    def wrap(self, handler: t.Any) -> t.Any:
        methods = generic_handler_methods(handler)
        if methods is None:
            return handler
        service, table = methods
        return grpc.method_handlers_generic_handler(service, {name: self.guard(f"/{service}/{name}", method) for name, method in table.items()})

    def guard(self, method: str, handler: t.Any) -> t.Any:
        """Wrap one unary-unary handler."""
        if handler.unary_unary is None:  # pipeplug serves unary calls only
            return handler
        inner = handler.unary_unary
        parse = handler.request_deserializer
        metrics, limit, registrar = self.metrics, self.limit, self
        is_stage = method.endswith("/ExecuteStage")
        descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
        message_name = descriptor.full_name if descriptor is not None else "request message"
        perf_counter = time.perf_counter
        ok_key = (method, "OK")
        histogram = metrics.latency(method)

        def deserialize(data: bytes) -> t.Any:
            try:
                return parse(data)
            except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's bad input
                return _Malformed(f"{type(exc).__name__}: {exc}")

        async def call(request: t.Any, context: grpc.aio.ServicerContext[t.Any, t.Any]) -> t.Any:
            if type(request) is _Malformed:
                metrics.rpc_finished(method, "INVALID_ARGUMENT", 0.0)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request is not a valid {message_name} ({request.error})")
            if limit is not None and registrar.in_flight >= limit:
                metrics.rpcs_refused += 1
                metrics.rpc_finished(method, "RESOURCE_EXHAUSTED", 0.0)
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{method}: the plugin already serves {limit} calls (--maximum-concurrent-rpcs); try again later",
                )
            registrar.in_flight += 1
            metrics.rpcs_in_flight += 1
            if is_stage:
                metrics.stages_in_flight += 1
            code = "UNKNOWN"
            started = perf_counter()
            masking = has_secrets()
            if masking:
                context = t.cast("grpc.aio.ServicerContext[t.Any, t.Any]", MaskingContext(context))
            try:
                response = await inner(request, context)
                if _cancel_check():
                    # piped cancelled the call but the handler returned anyway. Sending a
                    # reply on a cancelled call leaks native memory in grpc.aio
                    # (grpc/grpc#43360), and piped ignores it: end the call as cancelled.
                    log.warning("%s: the handler returned after piped cancelled the call (it caught the cancellation); no reply sent", method)
                    raise asyncio.CancelledError
                code = "OK"
                if is_stage:
                    metrics.stage_result(_STAGE_STATUS_NAMES.get(response.status, str(response.status)))
                if masking:
                    mask_message(response)  # a secret never leaves the process, whatever the handler put in its reply
                return response
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = _CODE_NAMES.get(context.code(), "UNKNOWN")
                raise
            except Exception as exc:  # noqa: BLE001 - grpc would send the exception's text unmasked
                log.exception("%s failed", method)
                code = "INTERNAL"
                await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed: {type(exc).__name__}: {exc}")
            finally:
                registrar.in_flight -= 1
                metrics.rpcs_in_flight -= 1
                if is_stage:
                    metrics.stages_in_flight -= 1
                key = ok_key if code == "OK" else (method, code)
                metrics.rpc_codes[key] = metrics.rpc_codes.get(key, 0) + 1
                histogram.observe(perf_counter() - started)

        return handler._replace(unary_unary=call, request_deserializer=deserialize)
