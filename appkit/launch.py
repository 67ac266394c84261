"""What every launch form shares: the settings presets of a method and how long the settings take here.

The Mitigate page, the Guided demo, the sweep and the benchmark launchers of Compare all say, before Launch,
how long the chosen settings will take on this device (:func:`fairaudit.jobs.estimate.estimate_many`: from
the finished runs of the same job, else from a short timed calibration of the method's unit of work), and
let the form start from a preset (``quick`` for a demo, ``paper`` for the published settings; ``?preset=`` in
the URL).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import streamlit as st

from appkit.query_state import sync, url_value
from appkit.widgets import USER_ERRORS, show_error
from fairaudit.jobs.estimate import estimate_many
from fairaudit.jobs.spec import JobSpec
from fairaudit.mitigation import get_method

DEFAULTS = "defaults"
PRESET_HELP = ("quick: a short demo run (how long: the estimate under the form); paper: the settings the "
               "method's paper publishes; defaults: this tool's")
ESTIMATE_HELP = ("Run the job on this device until a few steps of the method are timed (its loading, first audit "
                 "and set-up included: seconds to a few minutes, once per setting), then say how long the whole run "
                 "takes.")


def preset_choice(method: str, key: str) -> tuple[str, dict[str, Any], str]:
    """A ``Settings`` picker of ``method``'s presets; returns ``(preset, its settings, key prefix)`` — the
    prefix gives each preset its own widget keys, so switching preset starts the fields from its values."""
    presets = get_method(method).presets
    options = [DEFAULTS, *presets]
    preset = st.segmented_control("Settings", options, default=url_value("preset", DEFAULTS, choices=options),
                                  key=key, help=PRESET_HELP) or DEFAULTS
    sync("preset", preset, DEFAULTS)
    return preset, dict(presets.get(preset, {})), "" if preset == DEFAULTS else f"{preset}:"


def preset_caption(preset: str) -> str:
    """How a form names where its fields start."""
    return "the tool's defaults" if preset == DEFAULTS else f"the **{preset}** preset"


def launch_buttons(label: str = "Launch") -> tuple[bool, bool]:
    """The form's primary launch button and its **Estimate time** button, side by side: ``(launch, estimate)``
    pressed."""
    left, right, _ = st.columns([1, 1, 3])
    return (left.form_submit_button(label, type="primary", icon=":material/rocket_launch:"),
            right.form_submit_button("Estimate time", icon=":material/timer:", help=ESTIMATE_HELP))


def planned(build: Callable[[], Any], launching: bool) -> Any | None:
    """What ``build()`` makes of the form's values (a job, a sweep, a benchmark plan), built once for both the
    estimate and the launch; ``None`` when the values are not valid yet, said in one line when ``launching``."""
    try:
        return build()
    except USER_ERRORS as exc:
        if launching:
            show_error(exc)
        return None


def time_estimate(specs: Iterable[JobSpec], measure: bool) -> None:
    """Say how long ``specs`` take on this device, one after another: known from finished runs or an earlier
    calibration, or calibrated now when ``measure`` (the Estimate time button)."""
    specs = list(specs)
    try:
        if measure:
            with st.spinner("Timing a few steps of this job on this device…"):
                found = estimate_many(specs)
        else:
            found = estimate_many(specs, calibrate_if_needed=False)
    except USER_ERRORS as exc:  # e.g. a dataset option the data refuses: Launch says it too
        if measure:
            show_error(exc)
        return
    if found is None:
        st.caption("Estimated time: not measured yet for these settings on this device — **Estimate time** "
                   "times a few steps of the job, then says how long the whole run takes.")
    else:
        st.info(f"Estimated time: {found.text}.", icon=":material/timer:")
