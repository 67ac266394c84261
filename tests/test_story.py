"""The guided demo: the engine side (:mod:`fairaudit.views.story`) and the page (``streamlit.testing.v1.AppTest``)
on a tiny synthetic-faces setup with a finished FAAP run, so every step has its result."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from appkit import background

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "app_pages/story.py"
TIMEOUT = 240


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A tiny faces model, its audit setup and a finished FAAP run on it, in a workspace of this module's own."""
    from explain_runs import TINY_FACES, faces_model, tiny_run

    from appkit.setup import MODEL_PATH, AuditSetup, full_options

    folder = tmp_path_factory.mktemp("story")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(folder / "home"))
        path = faces_model(folder)
        run = tiny_run(path, "faap")
        setup = AuditSetup(model=MODEL_PATH, model_path=path).with_options(
            full_options("synthetic-faces", TINY_FACES))
        yield {"setup": setup, "run_id": run["run_id"], "model": path}
        for key in background.keys():
            background.wait(key, timeout=TIMEOUT)


def open_story(setup, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["audit_setup"] = setup
    at.switch_page(PAGE)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# ---------------------------------------------------------------------------- the engine


def test_faces_per_group_is_a_seeded_draw_per_group():
    from fairaudit.views.story import faces_per_group

    groups = np.array(["b", "a", "b", "a", "b", "a", "b"], dtype=object)
    indices = np.array([10, 11, 12, 13, 14, 15, 16])
    first = faces_per_group(groups, indices, 2, seed=0)
    # Two of group a (sorted first), then two of group b; the order of the rows given does not matter.
    assert set(first[:2]) <= {11, 13, 15} and set(first[2:]) <= {10, 12, 14, 16} and len(first) == 4
    order = np.argsort(-indices)
    assert faces_per_group(groups[order], indices[order], 2, seed=0).tolist() == first.tolist()
    assert faces_per_group(groups, indices, 5, seed=0).tolist() == [11, 13, 15, 10, 12, 14, 16]


def test_run_matching_and_benchmark_choice(story):
    from fairaudit import jobs
    from fairaudit.views import story as S

    setup = story["setup"]
    identity = S.setup_identity(setup.dataset, setup.target, setup.sensitive, setup.option_dict, story["model"])
    run = jobs.get_run(story["run_id"])
    assert S.run_matches(run, identity)
    other = S.setup_identity(setup.dataset, setup.target, setup.sensitive, {**setup.option_dict, "bias": 0.5},
                             story["model"])
    assert not S.run_matches(run, other)
    assert S.story_run(jobs.list_runs(), identity)["id"] == story["run_id"]
    assert S.story_run(jobs.list_runs(), other) is None
    # The demo setup (bias 0.9, Smiling vs Male) has shipped FAAP benchmarks; a bias of 0.3 has none.
    from appkit.setup import demo_setup

    demo = demo_setup()
    found = S.matching_benchmark(S.setup_identity(demo.dataset, demo.target, demo.sensitive, demo.option_dict),
                                 "faap")
    assert found is not None and "faap" in found[1]["setup"]["methods"]
    assert found[1]["setup"]["dataset"] == "synthetic-faces" and found[1]["setup"].get("target") == "Smiling"
    assert S.matching_benchmark(S.setup_identity(demo.dataset, demo.target, demo.sensitive,
                                                 {**demo.option_dict, "bias": 0.3})) is None
    sentences = S.effect_sentences("faap", found[0])
    assert sentences and all("seeds" in s for s in sentences)


def test_engine_steps_compute_the_engines_numbers(story):
    from fairaudit.data import load_dataset
    from fairaudit.embed import latents_of, probe_leakage, sample_indices
    from fairaudit.explain import explain_bias
    from fairaudit.loading import resolve_model
    from fairaudit.views import story as S
    from appkit.runner import open_dataset, run_setup

    setup = story["setup"]
    run = run_setup(setup)
    model, _ = resolve_model(story["model"], run.dataset)
    grid = S.explain_model(model, run.dataset, run.predictions, per_group=2, bias_per_group=8)
    assert len(grid) == 4 and grid.after is None and grid.before.shape == (4, 32, 32)
    assert sorted(set(grid.groups)) == ["Male=Female", "Male=Male"]
    # The same faces after: explain_after draws them again from the run's own test split.
    after = S.explain_after(story["run_id"], per_group=2, bias_per_group=8)
    assert after.indices.tolist() == grid.indices.tolist()
    np.testing.assert_allclose(after.before, grid.before, atol=1e-5)  # FAAP keeps the deployed model
    assert after.after is not None and after.perturbed is not None
    engine = explain_bias(story["run_id"], per_group=8)
    mine = grid.attribution_bias.set_index("group")
    theirs = engine[engine["stage"] == "before"].set_index("group")
    np.testing.assert_allclose(mine["target_region_share"], theirs.loc[mine.index, "target_region_share"],
                               atol=1e-6)

    latent = S.latent_map(model, run.dataset, n=64, n_boot=20)
    dataset = open_dataset(setup)
    rows = sample_indices(dataset, 64, 0)
    direct = probe_leakage(latents_of(model, dataset, rows, device="cpu").latents, dataset.sensitive_codes[rows],
                           ["Male"], folds=5, n_boot=20, seed=0)
    assert latent.leakage["Male"]["accuracy"] == pytest.approx(direct["Male"]["accuracy"])
    assert latent.coords.shape == (64, 2)

    comp = S.composition(setup.dataset, setup.target, setup.sensitive, None, setup.option_dict)
    train = load_dataset("synthetic-faces", "train", None, None, None, **setup.option_dict)
    males = int((train.attributes["Male"] == 1).sum())
    row = comp.table[(comp.table["split"] == "train") & (comp.table["group"] == "Male=Male")].iloc[0]
    assert int(row["n"]) == males and row["share"] == pytest.approx(males / len(train))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value is not None:
                self.links.append((tag, name, value))


def test_story_export_is_self_contained(story):
    from plotly.offline import get_plotlyjs

    from fairaudit import jobs
    from fairaudit.views import story as S
    from appkit.runner import run_setup
    from appkit.setup import demo_setup
    from fairaudit.audit import audit_predictions

    setup = story["setup"]
    run = run_setup(setup)
    report = audit_predictions(run.predictions, n_boot=50, seed=0)
    demo = demo_setup()
    results = S.StoryResults(setup.title(), audit=report, run=jobs.get_run(story["run_id"]),
                             benchmark=S.matching_benchmark(S.setup_identity(
                                 demo.dataset, demo.target, demo.sensitive, demo.option_dict), "faap"),
                             looks_after=S.explain_after(story["run_id"], per_group=1, bias_per_group=0))
    html = S.story_document(results).to_html()
    assert html.count(get_plotlyjs()[:400]) == 1
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I) and not re.search(r"<link\b", html, re.I)
    parser = _Links()
    parser.feed(html)
    outside = [link for link in parser.links if not link[2].startswith(("#", "data:image/png;base64,"))]
    assert outside == [] and any(link[0] == "img" for link in parser.links)
    # Outside the inline plotly.js (whose code mentions servers it never contacts here), no src or href to
    # the network at all.
    rest = re.sub(r'<script type="text/javascript" id="plotly-js">.*?</script>', "", html, flags=re.S)
    assert len(rest) < len(html) - 1_000_000
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", rest, re.I)
    assert "http://" not in rest and "https://" not in rest
    # The numbers are the engine's: the audit's DEO and the run's before/after table.
    assert f"{report.disparities['deo']:.3f}" in html
    assert f"{results.run['after']['disparities']['deo']:.3f}" in html
    assert "Not computed yet" in html  # the steps not given are marked, not invented


# ---------------------------------------------------------------------------- the page


def test_story_page_renders_every_step_with_the_engines_numbers(story):
    from fairaudit import jobs
    from fairaudit.audit import audit_predictions
    from fairaudit.views import story as S
    from appkit.runner import run_setup

    at = open_story(story["setup"])
    titles = [h.value for h in at.subheader]
    assert titles == [S.STEP_TITLES[k] for k in S.STEP_KEYS]
    body = texts(at)
    # Step 2: the cards are the engine's audit at threshold 0.5 with 500 resamples.
    report = audit_predictions(run_setup(story["setup"]).predictions, threshold=0.5, n_boot=500, seed=0)
    assert metric(at, "DEO") == f"{report.disparities['deo']:.3f}"
    low, high = report.ci["deo"]
    assert f"95 % CI [{low:.3f}, {high:.3f}]" in body
    # Step 1: the composition sentence; step 3: Grad-CAM grid and bias table; step 4: t-SNE and probe.
    assert "In the train split" in body
    assert "A linear probe on the latents reads Male with accuracy" in body
    assert [c.key for c in at.get("plotly_chart")] == ["story-composition", "story-looks", "story-latent",
                                                       "story-curves", "story-looks-after", "story-tradeoff"]
    frames = [d.value for d in at.dataframe]
    bias = [f for f in frames if "target_region_share" in f.columns]
    assert [sorted(set(f["stage"])) for f in bias] == [["before"], ["after", "before"]]
    from fairaudit.explain import explain_bias

    engine = explain_bias(story["run_id"], per_group=S.BIAS_PER_GROUP)
    np.testing.assert_allclose(bias[1]["sensitive_region_share"], engine["sensitive_region_share"])
    leakage = next(f for f in frames if "Probe accuracy" in f.columns)
    from fairaudit.embed import latents_of, probe_leakage, sample_indices
    from fairaudit.loading import resolve_model
    from appkit.runner import open_dataset

    dataset = open_dataset(story["setup"])
    model, _ = resolve_model(story["model"], dataset)
    rows = sample_indices(dataset, len(dataset), 0)
    direct = probe_leakage(latents_of(model, dataset, rows, device="cpu").latents, dataset.sensitive_codes[rows],
                           ["Male"], folds=5, n_boot=100, seed=0)["Male"]
    assert leakage["Attribute"].tolist() == ["Male"]
    assert leakage["Probe accuracy"].iloc[0] == pytest.approx(direct["accuracy"])
    assert f"reads Male with accuracy {direct['accuracy']:.2f}" in body
    # Step 6: the run's before/after card (DEO after, as the run recorded it).
    run = jobs.get_run(story["run_id"])
    assert f"**Run {run['id']}** · faap" in body
    deo_cards = [m.value for m in at.metric if m.label == "DEO"]
    assert f"{run['after']['disparities']['deo']:.3f}" in deo_cards
    # Step 8: no shipped benchmark has this tiny setup, and the page says so.
    assert "No shipped benchmark matches this setup" in body
    assert at.query_params["run"] == run["id"]


def test_step_parameter_restores_and_a_malformed_one_gives_a_notice(story):
    from fairaudit.views import story as S

    at = open_story(story["setup"], step="latent")
    assert at.selectbox(key="story-step").value == "latent"
    assert [h.value for h in at.subheader] == [S.STEP_TITLES["latent"]]
    assert any(b.label.endswith("→") for b in at.button)

    at = open_story(story["setup"], step="nowhere", run="no-such-run")
    assert at.selectbox(key="story-step").value == "all"
    notices = [c.value for c in at.caption if "link_off" in c.value]
    assert any("step=nowhere" in n for n in notices) and any("run=no-such-run" in n for n in notices)
    assert len(at.subheader) == len(S.STEP_KEYS)
