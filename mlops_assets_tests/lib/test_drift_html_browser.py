"""The drift report renders in a real browser with no network access.

Chromium runs headless with every host name unresolvable, so a page that needed a CDN script,
font or stylesheet would fail to render its charts. Under CI chromium is required (.ci/run
installs Debian's package); locally the test skips if it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd

from mlops_assets.lib.drift import DriftConfig, compute_drift
from mlops_assets.lib.drift_html import render_html
from mlops_assets_tests.conftest import require

FEATURES = {"age": "numeric", "income": "numeric", "city": "categorical"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No network: every host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _frames():
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 3000),
            "income": rng.lognormal(10, 0.5, 3000),
            "city": rng.choice(["paris", "rome", "oslo"], 3000, p=[0.5, 0.3, 0.2]),
        }
    )
    current = pd.DataFrame(
        {
            "age": rng.normal(45, 10, 3000),  # drifted
            "income": rng.lognormal(10, 0.5, 3000),
            "city": rng.choice(["paris", "rome", "oslo", "lima"], 3000, p=[0.3, 0.3, 0.2, 0.2]),
        }
    )
    return reference, current


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_is_self_contained():
    reference, current = _frames()
    report = compute_drift(reference, current, FEATURES, DriftConfig(engine="scipy"))
    html = render_html(report, title="Drift <check>")
    # No external resource of any kind: scripts, stylesheets, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert "<script" not in html.lower()
    assert "Drift &lt;check&gt;" in html  # the title is escaped


def test_report_renders_offline_in_chromium(tmp_path):
    binary = _chromium()
    require(binary is not None, "chromium is not installed (apt-get install chromium)")
    reference, current = _frames()
    report = compute_drift(reference, current, FEATURES, DriftConfig(engine="scipy"))
    page = tmp_path / "report.html"
    page.write_text(render_html(report, title="offline check"))
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # The browser built the document: the table lists every feature and charts are drawn.
    for feature in FEATURES:
        assert feature in dom
    assert dom.count("<svg") >= len(FEATURES)
    assert "lima" in dom  # the unseen category is reported
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
