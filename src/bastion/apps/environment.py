"""What an app process runs with: its interpreter (a per-app virtualenv when it ships a
``requirements.txt``, as Databricks Apps do) and a minimal environment.

The environment is built from nothing rather than copied from the server's: the server's own
variables (``BASTION_ADMIN_PASSWORD``, ``BASTION_DATABASE_URL``, …) never reach app code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import IO

from bastion.errors import InvalidRequest

REQUIREMENTS = "requirements.txt"
_PASSED_THROUGH = (
    "LANG",
    "LC_ALL",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "SSL_CERT_FILE",
)
INSTALL_TIMEOUT_S = 900


def base_environment(home: Path, bin_dirs: list[Path]) -> dict[str, str]:
    """PATH, HOME and locale for a child that gets nothing else of the server's."""
    path = [str(d) for d in bin_dirs]
    path += [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {
            "PATH": os.pathsep.join(dict.fromkeys(path)),
            "HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    source = _server_source()
    if source is not None:
        env["PYTHONPATH"] = source
    return env


def _server_source() -> str | None:
    """The folder holding the server's own ``bastion`` when it is not an installed package
    (a source checkout on ``PYTHONPATH``): apps — the built-in dashboard among them — then
    import the same ``bastion`` as the server, not whichever one the interpreter has
    installed."""
    import bastion

    folder = Path(bastion.__file__).resolve().parents[1]
    installed = {Path(p).resolve() for p in site.getsitepackages()}
    return None if folder in installed else str(folder)


def venv_for(app_dir: Path, venvs: Path) -> Path | None:
    """The virtualenv an app's ``requirements.txt`` maps to (keyed by its content)."""
    requirements = app_dir / REQUIREMENTS
    if not requirements.is_file():
        return None
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    return venvs / digest


def ensure_venv(app_dir: Path, venvs: Path, log: Path) -> Path | None:
    """Create (once per distinct ``requirements.txt``) a virtualenv that sees the server's
    packages and holds the app's own, installed by pip from the package index."""
    venv = venv_for(app_dir, venvs)
    if venv is None:
        return None
    ready = venv / ".bastion-ready"
    if ready.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    env = base_environment(venv.parent, [])
    with log.open("ab") as out:
        out.write(f"--- installing {REQUIREMENTS} into {venv}\n".encode())
        out.flush()
        _run([sys.executable, "-m", "venv", str(venv)], app_dir, env, out)
        _link_server_packages(venv)
        _run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--requirement",
                REQUIREMENTS,
            ],
            app_dir,
            env,
            out,
        )
    ready.touch()
    return venv


def _run(argv: list[str], cwd: Path, env: dict[str, str], out: IO[bytes]) -> None:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidRequest(f"Installing the app's requirements failed: {exc}") from None
    if done.returncode != 0:
        raise InvalidRequest(
            f"Installing the app's requirements failed (exit code {done.returncode}); the app's "
            "logs show pip's output."
        )


def _link_server_packages(venv: Path) -> None:
    """The app's virtualenv sees the server's packages (Streamlit, Plotly, bastion's client)
    after its own, as a Databricks app sees the runtime's preinstalled libraries."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = venv / "lib" / version / "site-packages"
    target.mkdir(parents=True, exist_ok=True)
    paths = [p for p in site.getsitepackages() if Path(p).is_dir()]
    # An ``import`` line runs at start-up: addsitedir also reads the server's own .pth files
    # (editable installs among them), which a plain path line would not.
    lines = [f"import site; site.addsitedir({p!r})" for p in paths]
    (target / "zz-bastion-server.pth").write_text("\n".join(lines) + "\n")
