"""In a real browser: launch FAAP on the demo, reload mid-run, and read the before/after card when it is done."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import page, server  # noqa: F401  (fixtures: the served app and a Chromium page)

pytestmark = pytest.mark.browser

RUN_SECONDS = 600
# Whether the "Selected run" box shows the run (as text or as the value of its input).
SELECTED_RUN_SHOWN = """id => Array.from(document.querySelectorAll('[data-testid="stSelectbox"]'))
    .filter(el => el.innerText.includes('Selected run'))
    .some(el => (el.innerText + ' ' + Array.from(el.querySelectorAll('input')).map(i => i.value).join(' '))
    .includes(id))"""


def _number(text: str) -> float:
    return float(re.search(r"-?\d+(?:\.\d+)?", text).group())


def test_launch_faap_survive_reload_and_see_lower_deo(server, page):  # noqa: F811
    page.goto(f"{server}/mitigate")
    page.get_by_role("button", name="Launch").wait_for(timeout=60_000)
    epochs = page.get_by_test_id("stNumberInput").filter(has_text="epochs").locator("input")
    epochs.fill("3")  # no Enter: inside a form it would submit the form
    page.get_by_role("button", name="Launch").click()
    queued = page.get_by_text(re.compile(r"Run [\w-]+ queued"))
    queued.wait_for(timeout=60_000)
    run_id = re.search(r"Run ([\w-]+) queued", queued.inner_text()).group(1)

    page.wait_for_url(re.compile(rf"run={run_id}"), timeout=30_000)
    page.get_by_text(re.compile(r"(Queued|Running) ·")).first.wait_for(timeout=60_000)
    page.reload()  # the run lives in a worker process, not in this page's session
    page.wait_for_function(SELECTED_RUN_SHOWN, arg=run_id, timeout=60_000)
    assert run_id in page.url

    page.get_by_text("Before → after mitigation").wait_for(timeout=RUN_SECONDS * 1000)
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text("DEO", exact=True)).first
    after = _number(card.get_by_test_id("stMetricValue").inner_text())
    column = page.get_by_test_id("stColumn").filter(has=card).last
    before = _number(column.get_by_text(re.compile(r"before \d")).first.inner_text().split("before", 1)[1])
    # The card compares against the deployed model's audit (README's demo DEO). Whether FAAP lowers DEO on
    # this model is a benchmark question (over seeds, against its only_task control), not a page property.
    from tests.test_reproducibility import _readme_demo_figures

    assert before == round(float(_readme_demo_figures()["deo"]), 3)
    assert after >= 0 and after != before
    assert page.get_by_test_id("stPlotlyChart").count() >= 1  # the epoch curves
    assert page.get_by_test_id("stException").count() == 0
