"""The Face recognition page in headless Chromium: cards with the engine's numbers, the report download, every
tab, a gallery sweep, no exception element."""

from __future__ import annotations

import pytest

from tests.test_browser import AUDIT_SECONDS, page, server  # noqa: F401  (fixtures: the served app, a page)
from tests.test_browser_pages import STEP_MS, _choose, _click_every_tab, _no_exception, _open_tab, _settle

pytestmark = pytest.mark.browser


def test_face_recognition_page_in_the_browser(server, page):  # noqa: F811
    from playwright.sync_api import expect

    page.goto(f"{server}/faces")
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text("Rank-1 · Female", exact=True)).first
    card.wait_for(timeout=AUDIT_SECONDS * 1000)
    _settle(page)
    _no_exception(page, "Face recognition")
    assert card.get_by_test_id("stMetricValue").inner_text().strip() == f"{515 / 600:.3f}"
    with page.expect_download(timeout=AUDIT_SECONDS * 1000) as download:
        page.get_by_role("button", name="Download the report (HTML)").click()
    report = download.value
    assert report.suggested_filename == "face-recognition-report.html"
    with open(report.path(), encoding="utf-8") as handle:
        html = handle.read()
    assert "<h2>Identification</h2>" in html and "<h2>Missed probes</h2>" in html
    assert f"<tr><td>Female</td><td>600</td><td>60</td><td>{515 / 600:.3f}</td>" in html
    tabs = _click_every_tab(page, "Face recognition")
    assert tabs == ["Score distributions", "DET curves", "Gallery composition", "Failed probes"]
    _open_tab(page, "Failed probes")
    expect(page.get_by_role("tabpanel", name="Failed probes").get_by_test_id("stImage")).to_have_count(
        18, timeout=30_000)

    _choose(page, "stButtonGroup", "Gallery sweep", "Identities")
    _open_tab(page, "Gallery composition")
    expect(page.get_by_test_id("stPlotlyChart").locator(".gtitle", has_text="Rank-1 against Female's share")
           ).to_be_visible(timeout=STEP_MS)
    _settle(page)
    _no_exception(page, "Face recognition, gallery sweep")
