"""Saving MLflow pyfunc models in tests, without leaving an MLflow store behind."""

from __future__ import annotations

from pathlib import Path


def save_agent(source: str, directory: Path) -> Path:
    """Save the agent defined in ``source`` (models-from-code) as an MLflow model directory.

    Saving opens MLflow's tracking store (and validating the model traces a prediction into
    it); by default that is an ``mlflow.db`` in the working directory, so point it beside the
    model instead.
    """
    import mlflow

    code = directory.parent / f"{directory.name}_agent.py"
    code.write_text(source)
    mlflow.set_tracking_uri(f"sqlite:///{directory.parent / 'mlflow.db'}")
    mlflow.pyfunc.save_model(str(directory), python_model=str(code))
    return directory
