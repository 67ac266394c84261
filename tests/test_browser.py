"""The served app in a real browser: ``streamlit run app.py`` driven by headless Chromium (Playwright)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STARTUP_SECONDS = 90
AUDIT_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit did not answer within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def served_app(home: Path, log_dir: Path):
    """``streamlit run app.py`` on a free local port with ``FAIRAUDIT_HOME=home``; yields its URL."""
    if not CHROMIUM.exists():
        # CI installs Chromium and sets FAIRAUDIT_REQUIRE_BROWSER=1: a missing browser is a failure there.
        if os.environ.get("FAIRAUDIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver)")
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    port = _free_port()
    log = log_dir / "server.log"
    env = {**os.environ, "FAIRAUDIT_HOME": str(home)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(demo_home, tmp_path_factory):
    """The app served on a free local port, using the workspace with the pre-trained demo model."""
    with served_app(demo_home, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture()
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 1000})
        finally:
            browser.close()


def _card(page, label: str):
    """The value element of the ``st.metric`` card whose label is ``label``."""
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)).first
    card.wait_for(timeout=AUDIT_SECONDS * 1000)
    return card.get_by_test_id("stMetricValue")


def _card_value(page, label: str) -> str:
    return _card(page, label).inner_text().strip()


def test_home_button_opens_demo_audit_with_disparity_cards(server, page, tmp_path):
    page.goto(server)
    page.get_by_text("Open the demo audit").click()
    values = {label: _card_value(page, label) for label in ("DEO", "SPD", "DP ratio", "Accuracy")}
    page.wait_for_timeout(1500)  # let the charts finish drawing before the screenshot
    page.screenshot(path=tmp_path / "audit.png", full_page=True)
    assert page.url.endswith("/audit")
    assert 0.0 <= float(values["DEO"]) <= 2.0
    assert 0.0 < float(values["SPD"]) <= 1.0
    assert 0.0 <= float(values["DP ratio"]) <= 1.0
    assert 0.0 <= float(values["Accuracy"]) <= 1.0
    assert page.get_by_test_id("stException").count() == 0
    assert (tmp_path / "audit.png").stat().st_size > 10_000


def test_threshold_slider_updates_cards_in_the_browser(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/audit")
    before = _card_value(page, "Accuracy")
    slider = page.get_by_test_id("stSlider").filter(has_text="Decision threshold")
    thumb = slider.get_by_role("slider")
    thumb.focus()
    for _ in range(30):  # 0.50 → 0.80 in steps of 0.01
        page.keyboard.press("ArrowRight")
    expect(_card(page, "Accuracy")).not_to_have_text(before, timeout=60_000)
    assert slider.get_by_test_id("stSliderThumbValue").inner_text().strip() == "0.80"


def test_mitigate_page_renders_its_form_and_job_list(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/mitigate")
    page.get_by_role("heading", name="Mitigate bias").wait_for(timeout=60_000)
    expect(page.get_by_role("button", name="Launch")).to_have_count(1, timeout=30_000)
    # The form is built from FAAP's settings, with the paper's ε.
    epsilon = page.get_by_test_id("stNumberInput").filter(has_text="epsilon")
    expect(epsilon).to_have_count(1, timeout=30_000)
    expect(epsilon.locator("input")).to_have_value("0.05")
    page.get_by_role("heading", name="Runs").wait_for(timeout=30_000)
    assert page.get_by_test_id("stException").count() == 0


def test_run_page_links_to_the_explain_page_of_the_run(server, page, tmp_path_factory):
    from playwright.sync_api import expect

    from explain_runs import faces_model, tiny_run

    run_id = tiny_run(faces_model(tmp_path_factory.mktemp("explain_model")), "threshold")["run_id"]
    page.goto(f"{server}/run?run={run_id}")
    page.get_by_role("link", name="Explain this run").click()
    page.get_by_role("heading", name=f"Explain run {run_id}").wait_for(timeout=60_000)
    assert page.url.endswith(f"/explain?run={run_id}")
    # A threshold run leaves the model unchanged: the page says so and scores the deployed model's maps.
    expect(page.get_by_text("the model is unchanged", exact=False)).to_have_count(1, timeout=AUDIT_SECONDS * 1000)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(1, timeout=AUDIT_SECONDS * 1000)
    assert page.get_by_test_id("stException").count() == 0


def test_compare_page_shows_a_stored_benchmark(server, page):
    from playwright.sync_api import expect

    from fairaudit.benchmark import plan_benchmark, save_manifest

    command = "python -m fairaudit benchmark --dataset synthetic-faces --methods faap --controls --seeds 2 --json b.json"
    plan = plan_benchmark("synthetic-faces", "faap", controls=True, seeds=2, command=command)
    save_manifest(plan.manifest())  # no member run yet: every row is waiting for its runs
    page.goto(f"{server}/compare")
    page.get_by_role("heading", name="Benchmark").wait_for(timeout=60_000)
    expect(page.get_by_text(command)).to_have_count(1, timeout=60_000)
    expect(page.get_by_text("mean ± std over seeds", exact=False).first).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Download Markdown")).to_have_count(1, timeout=30_000)
    assert page.get_by_test_id("stException").count() == 0


def test_slices_tab_of_the_demo_audit_shows_its_chart_and_table(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/audit")
    _card(page, "Accuracy")  # the demo audit has finished
    page.get_by_role("tab", name="Slices").click()
    panel = page.get_by_role("tabpanel", name="Slices")
    expect(panel.locator(".st-key-slice-bars .js-plotly-plot")).to_be_visible(timeout=AUDIT_SECONDS * 1000)
    table = panel.get_by_test_id("stDataFrame").first
    expect(table).to_be_visible(timeout=60_000)
    expect(table.locator("[role=columnheader]").first).to_have_text("Slice", timeout=60_000)
    expect(table.locator("[role=gridcell]").first).to_contain_text(" = ")  # a slice such as "Male = Male ∧ …"
    expect(panel.get_by_text("slices tested differ significantly", exact=False)).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
