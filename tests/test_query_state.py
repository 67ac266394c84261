"""Shareable views: every page restores its state from the URL's query parameters, and a malformed parameter
gives a one-line notice and the default, never an exception (``streamlit.testing.v1.AppTest``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appkit import background

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 240


@pytest.fixture(scope="module")
def run_id(tmp_path_factory):
    """A tiny finished FAAP run in a workspace of this module's own."""
    from explain_runs import faces_model, tiny_run

    folder = tmp_path_factory.mktemp("query_state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(folder / "home"))
        from fairaudit.demo import get_demo_model

        get_demo_model("synthetic-faces", device="cpu")
        rid = tiny_run(faces_model(folder), "faap")["run_id"]
        yield rid
        for key in background.keys():
            background.wait(key, timeout=TIMEOUT)


def open_with(page: str, fresh: bool = False, **params) -> AppTest:
    """A new session that opens ``page`` with ``params`` in its URL, as a shared link does (``fresh``: the page
    is the session's first script run; else the home page runs first)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if not fresh:
        at.run()
    at.switch_page(page)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def notices(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if "link_off" in c.value]


def link(at: AppTest) -> str:
    return at.sidebar.code[-1].value


def test_audit_page_restores_threshold_tolerances_metrics_and_tab(run_id):
    at = open_with("app_pages/audit.py", threshold="0.7", gap="0.25", ratio="0.9", boot="200",
                   metrics=["accuracy", "tpr"], tab="Intersections", **{"ix-metric": "fpr"})
    assert at.slider(key="threshold").value == 0.7
    assert at.number_input(key="tol-gap").value == 0.25
    assert at.number_input(key="tol-ratio").value == 0.9
    assert at.select_slider(key="n-boot").value == 200
    assert at.multiselect(key="bar-metrics").value == ["accuracy", "tpr"]
    assert at.session_state["audit-tab"] == "Intersections"
    assert at.selectbox(key="ix-metric").value == "fpr"
    assert notices(at) == []
    # The link names the same view.
    assert link(at) == ("/audit?threshold=0.7&gap=0.25&ratio=0.9&boot=200&metrics=accuracy&metrics=tpr"
                        "&tab=Intersections&ix-metric=fpr")


def test_malformed_audit_parameters_give_a_notice_and_the_default(run_id):
    at = open_with("app_pages/audit.py", fresh=True, threshold="high", gap="2.5", tab="Nowhere", boot="7",
                   metrics=["accuracy", "nonsense"], audit="no-such-setup")
    assert at.slider(key="threshold").value == 0.5
    assert at.number_input(key="tol-gap").value == 0.1
    assert at.session_state["audit-tab"] == "Groups"
    assert at.select_slider(key="n-boot").value == 1000
    assert at.multiselect(key="bar-metrics").value == ["accuracy"]
    assert sorted(notices(at)) == sorted([
        ":material/link_off: The link's audit `no-such-setup` is not known to this server (it was started before "
        "the server restarted); showing the demo audit instead.",
        ":material/link_off: The link's `gap=2.5` lies outside 0–1; showing the default instead.",
        ":material/link_off: The link's `boot=7` is not one of the choices here; showing the default instead.",
        ":material/link_off: The link's `threshold=high` is not a valid float; showing the default instead.",
        ":material/link_off: The link's `metrics=nonsense` names values that are not choices here; showing the "
        "default instead.",
        ":material/link_off: The link's `tab=Nowhere` is not one of the choices here; showing the default "
        "instead."])
    assert "threshold" not in at.query_params and "gap" not in at.query_params


def test_data_page_restores_its_source_and_refuses_an_unknown_one(run_id):
    at = open_with("app_pages/data_and_model.py", source="predictions")
    assert at.session_state["data-source"] == "predictions"
    at = open_with("app_pages/data_and_model.py", source="ftp")
    assert at.session_state["data-source"] == "builtin"
    assert len(notices(at)) == 1


def test_run_page_restores_its_run_and_tab(run_id):
    at = open_with("app_pages/run.py", run=run_id, tab="Configuration")
    assert at.session_state["run-tab"] == "Configuration"
    assert at.title[0].value == f"Run {run_id}"
    at = open_with("app_pages/run.py", run="r-gone", tab="Configuration")
    assert [w.value for w in at.warning][0] == "There is no run 'r-gone'; showing the newest one."
    assert not at.exception


def test_explain_page_restores_method_images_group_and_count(run_id):
    at = open_with("app_pages/explain.py", run=run_id, method="ig", images="random", n="3")
    assert at.session_state["explain-method"] == "ig"
    assert at.slider(key="explain-n").value == 3
    assert at.selectbox(key="explain-selection").value == "random"
    at = open_with("app_pages/explain.py", run=run_id, method="magic", n="99")
    assert at.session_state["explain-method"] == "gradcam"
    assert at.slider(key="explain-n").value == 6
    assert len(notices(at)) == 2


def test_embeddings_page_restores_projection_and_colouring(run_id):
    at = open_with("app_pages/embeddings.py", run=run_id, projection="umap", color="correct")
    assert at.radio(key="embeddings-method").value == "umap"
    assert at.session_state["embeddings-color"] == "correct"
    at = open_with("app_pages/embeddings.py", run=run_id, projection="pca", color="shoe-size")
    assert at.radio(key="embeddings-method").value == "tsne"
    assert at.session_state["embeddings-color"] == "sensitive"
    assert len(notices(at)) == 2


def test_compare_page_restores_metric_runs_filters_and_seed_view(run_id):
    at = open_with("app_pages/compare.py", metric="spd", runs=[run_id], method=["faap"], seeds="1")
    assert at.selectbox(key="compare-fairness").value == "spd"
    assert at.multiselect(key="compare-radar").value == [run_id]
    assert at.multiselect(key="compare-filter-method").value == ["faap"]
    assert at.toggle(key="compare-aggregate").value is True
    at = open_with("app_pages/compare.py", metric="happiness", seeds="maybe")
    assert at.selectbox(key="compare-fairness").value == "deo"
    assert at.toggle(key="compare-aggregate").value is False
    assert len(notices(at)) == 2


def test_mitigate_page_restores_method_dataset_preset_and_run(run_id):
    from fairaudit.data import list_datasets
    from fairaudit.mitigation import get_method

    image_sets = [s.name for s in list_datasets() if s.kind in get_method("faap").kinds and s.embedded]
    other = next(n for n in image_sets if n != "synthetic-faces")
    at = open_with("app_pages/mitigate.py", method="faap", dataset=other, preset="quick", run=run_id)
    assert at.selectbox(key="mitigate-method").value == "faap"
    assert at.selectbox(key="mitigate-dataset:faap").value == other
    assert at.button_group(key="mitigate-preset:faap").value == "quick"
    assert at.number_input(key="setting:faap:quick:epochs").value == get_method("faap").presets["quick"]["epochs"]
    assert at.selectbox(key="mitigate-run").value == run_id
    assert notices(at) == []
    assert link(at) == f"/mitigate?dataset={other}&preset=quick&run={run_id}"  # faap is the default method


def test_malformed_mitigate_parameters_give_a_notice_and_the_default(run_id):
    at = open_with("app_pages/mitigate.py", method="magic", preset="turbo", run="r-gone")
    assert at.selectbox(key="mitigate-method").value == "faap"
    assert at.button_group(key="mitigate-preset:faap").value == "defaults"
    assert at.selectbox(key="mitigate-run").value == run_id  # the newest run
    assert sorted(notices(at)) == sorted([
        ":material/link_off: The link's `method=magic` is not one of the choices here; showing the default instead.",
        ":material/link_off: The link's `preset=turbo` is not one of the choices here; showing the default "
        "instead.",
        ":material/link_off: The link's `run=r-gone` is not among the runs here; showing the newest one instead."])


def test_faces_page_restores_attribute_rank_fmr_and_tab(run_id):
    at = open_with("app_pages/faces.py", sensitive="Skin_Tone", rank="3", fmr="0.01", tab="DET curves")
    assert at.selectbox(key="faces-sensitive").value == "Skin_Tone"
    assert at.number_input(key="faces-rank").value == 3
    assert at.selectbox(key="faces-fmr").value == 0.01
    assert at.session_state["faces-tab"] == "DET curves"
    assert notices(at) == []
    at = open_with("app_pages/faces.py", rank="99", fmr="0.5", tab="Nowhere", sweep="sideways")
    assert at.number_input(key="faces-rank").value == 5
    assert at.selectbox(key="faces-fmr").value == 0.001
    assert at.session_state["faces-tab"] == "Score distributions"
    assert at.button_group(key="faces-sweep").value == "none"
    assert len(notices(at)) == 4
