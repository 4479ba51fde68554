"""Managed model worker processes (llama.cpp, MLflow pyfunc) and their supervisor."""

from bastion.serving.workers.specs import llama_cpp_spec, pyfunc_spec
from bastion.serving.workers.supervisor import (
    Worker,
    WorkerSpec,
    WorkerState,
    WorkerSupervisor,
)

__all__ = [
    "Worker",
    "WorkerSpec",
    "WorkerState",
    "WorkerSupervisor",
    "llama_cpp_spec",
    "pyfunc_spec",
]
