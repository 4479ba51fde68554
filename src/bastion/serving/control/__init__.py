"""Serving control plane: endpoint configs, states and permissions, and the routing view.

The gateway (data plane) calls ``serving_of(platform).router.plan(name)`` per request.
"""

from bastion.serving.control.bootstrap import bootstrap_default_model, smollm2_gguf
from bastion.serving.control.routing import (
    EndpointRouter,
    EndpointState,
    EntityState,
    RoutePlan,
    Upstream,
)
from bastion.serving.control.service import ServingControl, serving_of
from bastion.serving.control.store import EndpointRecord, EndpointStore

__all__ = [
    "EndpointRecord",
    "EndpointRouter",
    "EndpointState",
    "EndpointStore",
    "EntityState",
    "RoutePlan",
    "ServingControl",
    "Upstream",
    "bootstrap_default_model",
    "serving_of",
    "smollm2_gguf",
]
