"""How each artifact kind runs as a worker: llama.cpp for GGUF, a pyfunc server for MLflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bastion.serving.workers.supervisor import WorkerSpec

#: The context window each llama.cpp worker gets (``--n_ctx``), in tokens.
LLAMA_CONTEXT_TOKENS = 2048


def llama_cpp_spec(
    key: str,
    gguf: Path,
    upstream_model: str,
    *,
    n_ctx: int = LLAMA_CONTEXT_TOKENS,
    n_threads: int | None = None,
) -> WorkerSpec:
    """llama-cpp-python's own OpenAI-compatible server on one GGUF file, started through
    :mod:`.llama_server` (which keeps llama.cpp off its AMX kernels where they crash)."""
    threads = n_threads or max(1, min(4, os.cpu_count() or 1))
    return WorkerSpec(
        key=key,
        command=(
            sys.executable,
            "-m",
            "bastion.serving.workers.llama_server",
            "--model",
            str(gguf),
            "--model_alias",
            upstream_model,
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
        ),
        upstream_model=upstream_model,
        context_tokens=n_ctx,
    )


def pyfunc_spec(key: str, model_dir: Path, upstream_model: str) -> WorkerSpec:
    """An MLflow pyfunc model (ResponsesAgent, ChatAgent) behind :mod:`.pyfunc_server`."""
    return WorkerSpec(
        key=key,
        command=(
            sys.executable,
            "-m",
            "bastion.serving.workers.pyfunc_server",
            "--model-dir",
            str(model_dir),
            "--name",
            upstream_model,
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        upstream_model=upstream_model,
    )
