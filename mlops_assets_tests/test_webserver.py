"""The real `dagster-webserver` loads the code location from workspace.yaml.

`running_webserver` is the reusable helper: start the webserver on a free loopback port with a
given DAGSTER_HOME, wait until the code location has loaded, query GraphQL, stop it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops_assets_tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
WEBSERVER = Path(sys.executable).with_name("dagster-webserver")
LOCATION = "mlops_assets"

# Asset key -> group, as the UI shows them. New assets only need a line here.
EXPECTED_ASSETS = {
    "training_dataset": "training",
    "training_run": "training",
    "training_baseline": "training",
}

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } } }
    ... on PythonError { message }
  }
}
"""

ASSET_NODES_QUERY = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    repository { name location { name } }
  }
}
"""


class WebserverError(RuntimeError):
    pass


@dataclass
class Webserver:
    """A running `dagster-webserver` process and a GraphQL client for it."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    dagster_home: Path

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": dict(variables or {})},
            timeout=timeout,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise WebserverError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def location_entries(self) -> dict[str, dict[str, Any]]:
        workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise WebserverError(f"workspace did not load: {workspace}")
        return {entry["name"]: entry for entry in workspace["locationEntries"]}


def make_dagster_home(path: Path, config: str = "") -> Path:
    """A DAGSTER_HOME with the given dagster.yaml text (empty: SQLite storage inside it)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(config)
    return path


@contextmanager
def running_webserver(
    dagster_home: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    location: str = LOCATION,
) -> Iterator[Webserver]:
    """Start `dagster-webserver -w workspace.yaml` from the repo root; yield once `location` has
    finished loading (loaded or failed: callers assert which); always stop it afterwards."""
    port = free_port()
    log_path = dagster_home / f"webserver-{port}.log"
    full_env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code server joins the group; we stop the group
        )
    server = Webserver(f"http://127.0.0.1:{port}", proc, log_path, dagster_home)
    try:
        _wait_until_loaded(server, location, timeout)
        yield server
    finally:
        _stop(proc)


def _wait_until_loaded(server: Webserver, location: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise WebserverError(
                f"dagster-webserver exited with {server.proc.returncode}:\n{server.log()}"
            )
        try:
            entry = server.location_entries().get(location)
            last = entry
            if entry and entry["loadStatus"] == "LOADED":
                return
        except (requests.RequestException, ValueError, WebserverError) as error:
            last = error
        time.sleep(0.5)
    raise WebserverError(
        f"code location {location!r} did not load within {timeout:.0f}s (last: {last}):\n"
        f"{server.log()}"
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    """One webserver for this module, on an empty instance in a temporary DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("webserver")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MLOPS_") and key != "MLFLOW_TRACKING_URI"
    }
    env["MLOPS_HOME"] = str(root / "mlops_home")
    with running_webserver(make_dagster_home(root / "dagster_home"), env=env) as server:
        yield server


# --------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_code_location_loads_without_error(webserver: Webserver):
    entry = webserver.location_entries()[LOCATION]
    assert entry["loadStatus"] == "LOADED"
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    assert location["name"] == LOCATION
    assert len(location["repositories"]) == 1


@pytest.mark.slow
def test_repository_is_listed_under_the_location(webserver: Webserver):
    repositories = webserver.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]
    assert repositories["__typename"] == "RepositoryConnection", repositories
    locations = {node["location"]["name"] for node in repositories["nodes"]}
    assert locations == {LOCATION}


@pytest.mark.slow
def test_asset_nodes_are_served_in_their_groups(webserver: Webserver):
    nodes = webserver.graphql(ASSET_NODES_QUERY)["assetNodes"]
    served = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    missing = set(EXPECTED_ASSETS) - set(served)
    assert not missing, f"webserver does not serve {sorted(missing)}"
    for key, group in EXPECTED_ASSETS.items():
        assert served[key]["groupName"] == group
        assert served[key]["repository"]["location"]["name"] == LOCATION


@pytest.mark.slow
def test_webserver_uses_the_given_dagster_home(webserver: Webserver):
    # An empty dagster.yaml means SQLite storage inside DAGSTER_HOME, created at start-up.
    assert (webserver.dagster_home / "history" / "runs.db").is_file()
    info = requests.get(f"{webserver.url}/server_info", timeout=30)
    assert info.status_code == 200
    assert "dagster_webserver_version" in info.json()
