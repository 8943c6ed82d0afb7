"""Circuit breakers on the wire: GET /v1/breakers and the answers of :open and :close (and back, for the HTTP
client)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hexq.core.breaker import Breaker, Circuit
from hexq.core.breakers import BreakerInfo


def breakers_to_dict(breakers: Sequence[BreakerInfo]) -> dict[str, Any]:
    return {"breakers": [breaker_view(b) for b in breakers]}


def breaker_view(b: BreakerInfo) -> dict[str, Any]:
    policy = None if b.policy is None else {"failures": b.policy.failures, "ratio": b.policy.ratio,
                                            "window": b.policy.window, "reset": b.policy.reset,
                                            "successes": b.policy.successes}
    return {"name": b.name, "state": b.state.value, "forced": b.forced, "opened_at": b.opened_at,
            "reopens_at": b.reopens_at, "failures": b.failures, "recent_failures": b.recent_failures,
            "recent": b.recent, "types": list(b.types), "policy": policy}


def breaker_from_dict(item: dict[str, Any]) -> BreakerInfo:
    policy = item.get("policy")
    return BreakerInfo(item["name"], Circuit(item["state"]), bool(item["forced"]), item.get("opened_at"),
                       item.get("reopens_at"), int(item.get("failures", 0)), int(item.get("recent_failures", 0)),
                       int(item.get("recent", 0)), tuple(item.get("types", ())),
                       Breaker(**policy) if policy else None)
