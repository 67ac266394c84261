"""In a real browser, every page once and every option of its main selectors once, without an exception.

The served app and page of :mod:`tests.test_browser`, and one tiny finished FAAP run: Home → the demo audit
and each of its tabs, Data & model with each data source, Mitigate, the run page and each of its tabs, Explain
with each explainer, Embeddings with each projection and each colouring, Compare and each of its tabs. The
server inherits ``FAIRAUDIT_RAISE_APP_ERRORS=1`` from the test suite, so an unexpected error shows as an
``stException`` element instead of the users' one-sentence message; none may appear. A page may say that it
has nothing to show (a note instead of a chart); what it must never do is fail.
"""

from __future__ import annotations

import re

import pytest

from tests.test_browser import AUDIT_SECONDS, page, server  # noqa: F401  (fixtures: the served app, a page)

pytestmark = pytest.mark.browser

STEP_MS = 180_000  # one computation on a busy 2-core machine (a t-SNE or UMAP map, a set of heat maps)


def _settle(page, timeout: int = STEP_MS) -> None:
    """Wait until the app's script has finished its rerun (``stApp``'s ``data-test-script-state``)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout)


def _no_exception(page, where: str) -> None:
    exceptions = page.get_by_test_id("stException")
    assert exceptions.count() == 0, f"{where}: {exceptions.first.inner_text()[:500]}"


def _open_tab(page, name: str, tries: int = 3) -> None:
    """Click the main area's tab ``name`` until its panel shows and still shows once the app has settled (a
    click landing while the tab bar re-renders can be lost, or undone by the rerun)."""
    from playwright.sync_api import expect

    panel = page.get_by_role("tabpanel", name=name, exact=True)
    for attempt in range(tries):
        page.get_by_test_id("stMain").get_by_role("tab", name=name, exact=True).click()
        try:
            expect(panel).to_be_visible(timeout=10_000)
            _settle(page)
            expect(panel).to_be_visible(timeout=2_000)
            return
        except AssertionError:
            if attempt == tries - 1:
                raise


def _click_every_tab(page, where: str) -> list[str]:
    tabs = page.get_by_test_id("stMain").get_by_role("tab")
    names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
    for name in names:
        _open_tab(page, name)
        _no_exception(page, f"{where}, tab {name}")
    return names


def _options(page, widget: str, label: str) -> list[str]:
    """The option labels of the radio or segmented control (``widget`` test id) labelled ``label``."""
    group = page.get_by_test_id(widget).filter(has=page.get_by_text(label, exact=True)).first
    group.wait_for(timeout=60_000)
    if widget == "stRadio":
        return [o.inner_text().strip() for o in group.locator("[data-testid=stRadioOption]").all()]
    return [o.inner_text().strip() for o in group.locator("button").all()]


def _choose(page, widget: str, label: str, option: str) -> None:
    group = page.get_by_test_id(widget).filter(has=page.get_by_text(label, exact=True)).first
    if widget == "stRadio":
        group.locator("[data-testid=stRadioOption]").filter(has_text=re.compile(f"^{re.escape(option)}$")).click()
    else:
        group.locator("button").filter(has_text=re.compile(f"^{re.escape(option)}$")).click()
    _settle(page)
    _no_exception(page, f"{label}: {option}")


@pytest.fixture(scope="module")
def faap_run(server, tmp_path_factory):  # noqa: F811
    from explain_runs import faces_model, tiny_run

    return tiny_run(faces_model(tmp_path_factory.mktemp("pages_model")), "faap")["run_id"]


def test_every_page_and_option_shows_no_exception(server, page, faap_run):  # noqa: F811
    from playwright.sync_api import expect

    # Home → the demo audit, and each of its tabs.
    page.goto(server)
    page.get_by_text("Open the demo audit").click()
    page.get_by_test_id("stMetricLabel").get_by_text("DEO", exact=True).first.wait_for(timeout=AUDIT_SECONDS * 1000)
    _settle(page)
    _no_exception(page, "Audit")
    audit_tabs = _click_every_tab(page, "Audit")
    assert {"Groups", "Confusion matrices", "Intersections", "Misclassified samples", "Robustness",
            "Slices"} <= set(audit_tabs)

    # Data & model, each data source.
    page.goto(f"{server}/data")
    page.get_by_role("heading", name="Data & model").wait_for(timeout=60_000)
    _settle(page)
    sources = _options(page, "stButtonGroup", "Data source")
    assert {"Built-in dataset", "Dataset folder", "Manifest CSV", "Predictions CSV"} <= set(sources)
    for source in [*sources[1:], sources[0]]:  # the selected one last, so that each click changes the page
        _choose(page, "stButtonGroup", "Data source", source)
        _no_exception(page, f"Data & model, {source}")

    # Mitigate.
    page.goto(f"{server}/mitigate")
    expect(page.get_by_role("button", name="Launch")).to_have_count(1, timeout=60_000)
    _settle(page)
    _no_exception(page, "Mitigate")

    # The run page, each tab.
    page.goto(f"{server}/run?run={faap_run}")
    page.get_by_text("Before → after mitigation").wait_for(timeout=60_000)
    _settle(page)
    run_tabs = _click_every_tab(page, "Run")
    assert {"Before / after", "Groups", "Training", "Configuration", "Artefacts", "Samples"} <= set(run_tabs)

    # Explain, each explainer, on random images (there are always some; a note instead of maps is allowed).
    page.goto(f"{server}/explain?run={faap_run}")
    page.get_by_role("heading", name=f"Explain run {faap_run}").wait_for(timeout=60_000)
    _settle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Images").first.click()
    page.get_by_role("option", name="random", exact=True).click()
    _settle(page)
    methods = _options(page, "stButtonGroup", "Method")
    assert {"Grad-CAM", "Integrated Gradients"} <= set(methods)
    for method in [*methods[1:], methods[0]]:
        _choose(page, "stButtonGroup", "Method", method)
        maps = page.get_by_test_id("stPlotlyChart").locator(".gtitle", has_text=method)
        note = page.get_by_test_id("stAlertContentInfo")
        expect(maps.or_(note).first).to_be_visible(timeout=STEP_MS)
        _settle(page)
        _no_exception(page, f"Explain, {method}")

    # Embeddings, each projection (the smallest sample the page allows) and each colouring.
    page.goto(f"{server}/embeddings?run={faap_run}")
    page.get_by_role("heading", name="Embeddings").wait_for(timeout=60_000)
    _settle(page)
    size = page.get_by_test_id("stNumberInput").filter(has_text="Sample size").locator("input")
    size.fill("100")
    size.press("Enter")
    _settle(page)
    projections = _options(page, "stRadio", "Projection")
    assert {"t-SNE", "UMAP"} <= set(projections)
    for projection in [*projections[1:], projections[0]]:
        _choose(page, "stRadio", "Projection", projection)
        compute = page.get_by_role("button", name="Compute")
        if compute.count():
            compute.click()
        expect(page.get_by_test_id("stPlotlyChart").locator(".gtitle", has_text=f"{projection} of the latents")
               ).to_be_visible(timeout=STEP_MS)
        _settle(page)
        _no_exception(page, f"Embeddings, {projection}")
    colours = _options(page, "stButtonGroup", "Colour by")
    assert {"Sensitive group", "Target", "Prediction", "Correct / wrong"} <= set(colours)
    for colour in [*colours[1:], colours[0]]:
        _choose(page, "stButtonGroup", "Colour by", colour)
        expect(page.get_by_test_id("stPlotlyChart")).to_have_count(1, timeout=STEP_MS)
        _no_exception(page, f"Embeddings, colour by {colour}")

    # Compare, each tab.
    page.goto(f"{server}/compare")
    page.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
    _settle(page)
    compare_tabs = _click_every_tab(page, "Compare")
    assert {"Train / val / test", "Other attributes", "Data composition"} <= set(compare_tabs)
