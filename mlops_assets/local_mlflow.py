"""A local `mlflow server` process on a free loopback port (the demo's and the tests')."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalMlflowServer:
    """`mlflow server` with a sqlite backend under `root`.

    By default artifacts are proxied (stored under `root/artifacts`). With `artifact_root` the
    server instead hands out that local folder, so a client that talks to the sqlite file
    directly (the CLI, `make dev`) and one that talks to the server see one and the same store.
    The port is chosen once, so a stopped and restarted server keeps its URI, as a real server
    coming back after an outage would.
    """

    def __init__(self, root: Path, port: int | None = None, *, artifact_root: Path | None = None):
        self.root = Path(root)
        self.port = port or free_port()
        self.artifact_root = artifact_root
        self.proc: subprocess.Popen | None = None

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 120.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process and return at once; `wait_ready` waits for it to answer. The
        server takes seconds to import and migrate its store, which a caller can spend on
        work that does not need MLflow."""
        if self.running:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("mlflow")),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    self.backend_store_uri,
                    *self._artifact_args(),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                # MLflow 3's server starts a job runner with seven huey workers for GenAI jobs
                # (trace rollups, evaluations) that tracking never uses: on a small machine they
                # cost most of the start-up and memory of a demo or test server.
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                start_new_session=True,  # so stop() can kill the server's worker processes too
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        import requests

        if self.proc is None:
            raise RuntimeError("mlflow server not launched")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {self.root / 'server.log'}")
            try:
                if requests.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    # /health answers before the tracking store is warm; the first API call
                    # can take seconds, so make it here rather than in a timed client call.
                    requests.get(
                        f"{self.uri}/api/2.0/mlflow/experiments/search",
                        params={"max_results": 1},
                        timeout=max(1.0, deadline - time.monotonic()),
                    ).raise_for_status()
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout:.0f}s")

    def _artifact_args(self) -> list[str]:
        if self.artifact_root is None:
            return ["--artifacts-destination", str(self.root / "artifacts")]
        return ["--no-serve-artifacts", "--default-artifact-root", self.artifact_root.as_uri()]

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> LocalMlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
