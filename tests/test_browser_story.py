"""The Guided demo in a real browser: on a fresh workspace every step shows its result, a mitigation launched from
the story ends in its before/after card, and a view's copied link opens the same values in a new browser."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import AUDIT_SECONDS, page, served_app  # noqa: F401  (page: a fixture)

pytestmark = pytest.mark.browser

RUN_SECONDS = 240
STEP_MS = AUDIT_SECONDS * 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a workspace of its own, with no run yet: the story starts from nothing, as on a fresh install
    (the other browser tests' runs would otherwise be the story's run)."""
    from tests.conftest import workspace_at
    from fairaudit.demo import get_demo_model

    with workspace_at(tmp_path_factory.mktemp("story_home")) as home:
        get_demo_model("synthetic-faces", device="cpu")
        with served_app(home, tmp_path_factory.mktemp("story_streamlit")) as url:
            yield url


def _card(page, label: str):
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)).first
    card.wait_for(timeout=STEP_MS)
    return card


def _value(page, label: str) -> str:
    return _card(page, label).get_by_test_id("stMetricValue").inner_text().strip()


def test_story_runs_itself_launches_a_mitigation_and_a_copied_link_opens_the_same_view(server, page):  # noqa: F811
    from playwright.sync_api import expect

    from fairaudit.views.story import STEP_KEYS, STEP_TITLES

    page.goto(f"{server}/story")
    main = page.get_by_test_id("stMain")
    # Every step's result, computed in the background on this first visit.
    main.get_by_text("In the train split").wait_for(timeout=STEP_MS)
    before_deo = _value(page, "DEO")
    assert re.fullmatch(r"\d\.\d{3}", before_deo)
    main.get_by_text(re.compile(r"95 % CI \[")).first.wait_for(timeout=STEP_MS)
    main.get_by_text("A linear probe on the latents reads").wait_for(timeout=STEP_MS)
    main.get_by_text(re.compile(r"of the positive attribution falls on the target region")).first.wait_for(
        timeout=STEP_MS)
    expect(main.locator(".gtitle", has_text="Grad-CAM before")).to_have_count(1, timeout=STEP_MS)
    expect(main.locator(".gtitle", has_text="t-SNE of the deployed model")).to_have_count(1, timeout=STEP_MS)
    for key in STEP_KEYS:
        expect(main.get_by_role("heading", name=STEP_TITLES[key])).to_be_visible()
    assert main.get_by_text("Appears when the mitigation run is done.").count() == 3
    assert page.get_by_test_id("stException").count() == 0

    # One mitigation from the story, with tiny settings (FAAP is the default method).
    form = main.get_by_test_id("stForm")
    form.wait_for(timeout=STEP_MS)
    for label, value in (("epochs", "1"), ("generator width", "4"), ("generator blocks", "0"),
                         ("discriminator hidden", "16"), ("Bootstrap resamples", "50")):
        form.get_by_test_id("stNumberInput").filter(has_text=label).first.locator("input").fill(value)
    form.get_by_role("button", name="Launch").click()
    queued = main.get_by_text(re.compile(r"Run [\w-]+ queued"))
    queued.wait_for(timeout=60_000)
    run_id = re.search(r"Run ([\w-]+) queued", queued.inner_text()).group(1)
    page.wait_for_url(re.compile(rf"run={run_id}"), timeout=30_000)
    main.get_by_text("Before → after mitigation").wait_for(timeout=RUN_SECONDS * 1000)
    after_card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text("DEO", exact=True)).last
    after = after_card.get_by_test_id("stMetricValue").inner_text().strip()
    assert re.fullmatch(r"\d\.\d{3}", after)
    # The after card is the run's recorded audit; step 2's card is the run's before audit (same split, model).
    from fairaudit import jobs

    run = jobs.get_run(run_id)
    assert run["status"] == "done"
    assert after == f"{run['after']['disparities']['deo']:.3f}"
    assert before_deo == f"{run['before']['disparities']['deo']:.3f}"
    expect(main.locator(".gtitle", has_text="Grad-CAM after")).to_have_count(1, timeout=STEP_MS)
    expect(main.locator(".gtitle", has_text="Trade-off")).to_have_count(1, timeout=STEP_MS)
    assert main.get_by_text("Appears when the mitigation run is done.").count() == 0
    assert page.get_by_test_id("stException").count() == 0

    # Another page's view, shared by its link: the Audit page at threshold 0.7 on its Confusion tab.
    page.goto(f"{server}/audit?threshold=0.7")
    accuracy = _value(page, "Accuracy")
    main.get_by_role("tab", name="Confusion matrices").click()
    page.wait_for_url(re.compile(r"tab=Confusion"), timeout=30_000)
    page.get_by_test_id("stSidebar").get_by_text("Copy link to this view").click()
    code = page.get_by_test_id("stCode").filter(has_text="/audit?")
    code.first.wait_for(timeout=30_000)
    link = code.first.inner_text().strip()
    assert link.startswith(server) and "threshold=0.7" in link and "tab=Confusion" in link
    context = page.context.browser.new_context()  # a colleague's browser: no cookies, no session
    try:
        other = context.new_page()
        other.goto(link)
        assert _value(other, "Accuracy") == accuracy
        tab = other.get_by_test_id("stMain").get_by_role("tab", name="Confusion matrices")
        expect(tab).to_have_attribute("aria-selected", "true", timeout=STEP_MS)
        slider = other.get_by_test_id("stSlider").filter(has_text="Decision threshold")
        expect(slider.get_by_role("slider")).to_have_value("0.7", timeout=STEP_MS)
        assert other.get_by_test_id("stException").count() == 0
    finally:
        context.close()
