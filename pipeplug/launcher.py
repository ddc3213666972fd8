"""Starting a plugin exactly as piped does, and stopping it by PID.

piped runs a plugin binary with ``start --piped-plugin-service localhost:<P>
--config <json>`` (the JSON is the plugin's ``spec.plugins[]`` entry), dials
the plugin's port until an RPC is answered, and stops it with SIGTERM, then
SIGKILL. ``pipeplug.testing``, ``pipeplug dev`` and the tests all start
plugins through this module, so there is one argv and one way to stop.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
