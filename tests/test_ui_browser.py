"""The MLflow UI in a real browser: a finished 2-child sweep opens on its training runs, with
both children's names shown whole.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and selenium;
skipped with the reason where they are absent. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests._runs import free_port, start_mlflow_server, stop_server
from tests.test_sweep import multirun, sweep_runs

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# .ci/run sets SEGEXP_REQUIRE_BROWSER=1: there a missing browser fails the test, never skips it.
REQUIRED = os.environ.get("SEGEXP_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not REQUIRED,
    reason="Debian's chromium and chromium-driver are not installed "
    "(apt-get install -y chromium chromium-driver; .ci/run does this)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


@pytest.fixture
def ui_server(tmp_path):
    """A finished sweep over model.batchnorm (2 children) and an MLflow server on its store."""
    multirun(tmp_path, "model.batchnorm=false,true", "trainer.epochs=1")
    port = free_port()
    server = start_mlflow_server(
        f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "server.log", port, cwd=tmp_path
    )
    try:
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        stop_server(server)


def _browser(profile: Path):
    assert CHROMIUM and CHROMEDRIVER, "chromium / chromedriver not found (apt-get install -y "
    "chromium chromium-driver)"
    if REQUIRED:
        from selenium import webdriver
    else:
        webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


# For a run-name link: whether its text fits its element (no ellipsis) and its table cell.
FITS = (
    "const a = arguments[0], e = a.querySelector('span') || a, c = a.closest('[role=gridcell]');"
    "return [e.scrollWidth <= e.clientWidth + 1,"
    " e.getBoundingClientRect().right <= c.getBoundingClientRect().right + 1];"
)


def test_experiment_opens_on_training_runs_with_child_names_uncut(ui_server):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, tmp_path = ui_server
    client, parent, children = sweep_runs(tmp_path)
    names = sorted(c.info.run_name for c in children)
    assert names == ["batchnorm=False", "batchnorm=True"]
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    driver = _browser(tmp_path / "profile")
    # the table re-renders while it loads: look elements up again rather than fail on them
    wait = WebDriverWait(
        driver,
        90,
        poll_frequency=0.5,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )

    def fits(name: str) -> list[bool]:
        return driver.execute_script(FITS, driver.find_element(By.LINK_TEXT, name))

    def expand() -> bool:
        link = driver.find_element(By.LINK_TEXT, parent.info.run_name)
        row = link.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
        row.find_element(
            By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"
        ).click()
        return True

    try:
        # The README's address for an experiment (the browser's workflow switch starts on
        # GenAI, which the link turns to model training).
        driver.get(f"{url}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
        wait.until(lambda d: d.find_element(By.LINK_TEXT, parent.info.run_name))
        assert "/runs" in driver.current_url and "overview" not in driver.current_url
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Detect Issues" not in body and "Token Usage" not in body
        assert "Run Name" in body and "matching runs" in body
        # The children appear under the expanded parent, each name whole (no ellipsis).
        wait.until(lambda d: expand())
        shown = {name: wait.until(lambda d, n=name: fits(n)) for name in names}
        # The same check sees the ellipsis on the parent's long name.
        parent_shown = wait.until(lambda d: fits(parent.info.run_name))
        driver.save_screenshot(str(tmp_path / "runs.png"))
        if os.environ.get("SEGEXP_UI_SCREENSHOT"):
            shutil.copy(tmp_path / "runs.png", os.environ["SEGEXP_UI_SCREENSHOT"])
        assert shown == {name: [True, True] for name in names}, shown
        assert parent_shown[0] is False, "the name check cannot see a cut name"
    finally:
        driver.quit()
