"""A client for Kora's HTTP gateway.

    from kora_client import Client
    kora = Client("http://127.0.0.1:8080", "kora_...")
    out = kora.run({"kora": 1, "nodes": [...]}, params={"x": 2})
    for event in kora.events(out["run_id"]):
        print(event.kind, event.data.get("node_id"))
"""

from .client import FINAL_STATUSES, Client
from .errors import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    Invalid,
    KoraError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RunTimeout,
    Unauthenticated,
    Unavailable,
)
from .sse import Event

__all__ = [
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "FINAL_STATUSES",
    "Forbidden",
    "Invalid",
    "KoraError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RunTimeout",
    "Unauthenticated",
    "Unavailable",
]
