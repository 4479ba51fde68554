"""The llama.cpp worker: llama-cpp-python's OpenAI-compatible server, with one guard.

On CPUs with Intel AMX (Xeon Sapphire Rapids and later), llama.cpp moves a model's weights
at load into an "extra buffer type" for its AMX kernels, and those kernels crash the worker
(SIGSEGV in ``ggml_backend_amx_mul_mat``) on its first completion: a known llama.cpp defect,
machine-dependent, seen with the embedded SmolLM2 on such hosts. So where the CPU reports AMX,
this entry point loads models without extra buffer types (llama.cpp's ``use_extra_bufts =
false``: the weights stay in plain CPU buffers and the AVX2/AVX-512 kernels run them, as on
CPUs without AMX), then runs ``llama_cpp.server`` with the arguments it was given.

    python -m bastion.serving.workers.llama_server --model m.gguf --port 8001 ...
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU reports any AMX feature (Linux's ``flags`` lines; False elsewhere)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags" and _AMX_FLAGS.intersection(value.split()):
            return True
    return False


def load_without_extra_buffers() -> None:
    """Make every model this process loads use plain CPU buffers (no AMX or repacked
    weights): llama-cpp-python builds its model parameters from
    ``llama_model_default_params()``, so the defaults it gets say so."""
    import llama_cpp.llama_cpp as native

    defaults = native.llama_model_default_params
    if getattr(defaults, "_bastion_plain_buffers", False):
        return

    def plain_buffers() -> native.llama_model_params:
        params = defaults()
        params.use_extra_bufts = False
        return params

    plain_buffers._bastion_plain_buffers = True  # type: ignore[attr-defined]
    native.llama_model_default_params = plain_buffers


def main(argv: list[str] | None = None) -> None:
    if cpu_has_amx():
        logger.warning("this CPU has AMX: loading models without llama.cpp's AMX buffers")
        load_without_extra_buffers()
    from llama_cpp.server.__main__ import main as serve

    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    serve()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    main()
