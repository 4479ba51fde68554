"""The MLflow pyfunc worker on a real ResponsesAgent (runs only where mlflow is installed)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import httpx
import pytest
from mlflow_models import save_agent

from bastion.serving.workers import WorkerState, WorkerSupervisor, pyfunc_spec

mlflow = pytest.importorskip("mlflow")

AGENT = textwrap.dedent(
    """
    import mlflow
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse


    class Echo(ResponsesAgent):
        def predict(self, request):
            last = request.input[-1]
            text = last.content if isinstance(last.content, str) else str(last.content)
            return ResponsesAgentResponse(
                output=[self.create_text_output_item(text=f"echo: {text}", id="msg-1")]
            )


    mlflow.models.set_model(Echo())
    """
)


def test_pyfunc_worker_answers_chat_completions(tmp_path: Path) -> None:
    model_dir = save_agent(AGENT, tmp_path / "model")
    supervisor = WorkerSupervisor(tmp_path / "logs", check_interval_s=0.2)
    supervisor.start()
    try:
        worker = supervisor.ensure(pyfunc_spec("main.default.echo/1", model_dir, "echo-1"))
        deadline = time.monotonic() + 120
        while worker.state != WorkerState.READY:
            assert worker.state != WorkerState.FAILED, worker.log_path.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        response = httpx.post(
            f"{worker.base_url}/chat/completions",
            json={"model": "echo-1", "messages": [{"role": "user", "content": "hello"}]},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "echo: hello"
    finally:
        supervisor.stop_all()
