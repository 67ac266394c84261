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


def estimate_button(where: Any = None) -> bool:
    """The form's **Estimate time** submit button."""
    return (where or st).form_submit_button("Estimate time", icon=":material/timer:", help=ESTIMATE_HELP)


def time_estimate(make_specs: Callable[[], Iterable[JobSpec]], measure: bool, errors: tuple = ()) -> None:
    """Say how long the jobs of ``make_specs()`` take on this device, one after another: known from finished
    runs or an earlier calibration, or calibrated now when ``measure`` (the Estimate time button). Settings
    that raise one of ``errors`` say nothing here (they are not valid yet; Launch says why)."""
    try:
        specs = list(make_specs())
        if measure:
            with st.spinner("Timing a few steps of this job on this device…"):
                found = estimate_many(specs)
        else:
            found = estimate_many(specs, calibrate_if_needed=False)
    except errors:
        return
    if found is None:
        st.caption("Estimated time: not measured yet for these settings on this device — **Estimate time** "
                   "times a few steps of the job, then says how long the whole run takes.")
    else:
        st.info(f"Estimated time: {found.text}.", icon=":material/timer:")
