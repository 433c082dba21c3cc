"""Ray token authentication for the private local Ray that ``dmi-tune run`` starts.

Ray's gRPC servers (GCS, raylet, workers, the driver's own) listen on every interface, even
for a local ``ray.init()``, and Ray's token authentication is off by default. Anyone who can
reach the machine could then submit work to the sweep's Ray. So when ``dmi-tune run`` will
start its own Ray, it turns authentication on with a fresh random token. The token lives in
the process environment only; the Ray processes it starts inherit it, and nothing is written
to ``~/.ray``.

Ray reads ``RAY_AUTH_MODE`` when it is imported, so this must run before anything imports
``ray``. A driver that joins a cluster (``--address``, ``RAY_ADDRESS``, ``ray.address``) is left
as the cluster's operator set it up, and so is a ``RAY_AUTH_MODE`` the user set.
"""

from __future__ import annotations

import os
import secrets
import sys


def auth_is_on() -> bool:
    return os.environ.get("RAY_AUTH_MODE") == "token"


def enable_for_private_ray(address: str | None) -> bool:
    """Turn token authentication on for a local Ray this process will start; True if it is on."""
    if address or os.environ.get("RAY_ADDRESS"):
        return auth_is_on()  # joining: the cluster decides
    if "RAY_AUTH_MODE" in os.environ:
        if not auth_is_on():
            print(
                f"warning: RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']}: the local Ray accepts work from anyone "
                "who can reach this machine",
                file=sys.stderr,
            )
        return auth_is_on()
    if "ray" in sys.modules:  # too late: Ray has read its configuration already
        return False
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    return True
