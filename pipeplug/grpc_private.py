"""The one place pipeplug reads grpc's private API, so an upgrade that breaks it breaks one test.

grpc offers no public way to read the method table of a generic handler built
by ``grpc.method_handlers_generic_handler``; the guard needs it to wrap each
method of the generated ``add_*Servicer_to_server`` functions' generic handler
(they also give the same table to ``add_registered_method_handlers``, which
:class:`pipeplug.guard.GenericOnly` does not pass on). Tested with the grpcio
range pinned in pyproject.toml; ``tests/test_servicers.py::test_grpc_private_api_still_holds``
fails when a grpcio release changes it.
"""

from __future__ import annotations

import typing as t


def generic_handler_methods(handler: t.Any) -> tuple[str, dict[str, t.Any]] | None:
    """A generic handler's service name and its handlers by method name, or None if it is not grpc's own kind."""
    table = getattr(handler, "_method_handlers", None)
    service_name = getattr(handler, "service_name", None)
    if not isinstance(table, dict) or not callable(service_name):
        return None
    return service_name(), {path.rsplit("/", 1)[-1]: method for path, method in table.items()}
