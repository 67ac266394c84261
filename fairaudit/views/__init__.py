"""Presentation builders shared by the app and the report, free of Streamlit.

Plain pandas, plotly and numpy, so every table and figure can be tested without
a browser and the HTML report shows exactly what the app shows: tables and
checks derived from an :class:`~fairaudit.metrics.AuditReport`
(:mod:`~fairaudit.views.tables`), plotly figures (:mod:`~fairaudit.views.charts`)
in one group palette (:mod:`~fairaudit.views.palette`), sample galleries
(:mod:`~fairaudit.views.gallery`), the job and run summaries of the Mitigate and
Run pages (:mod:`~fairaudit.views.jobs_view`) and the before/after slice
comparison (:mod:`~fairaudit.views.slices_compare`). The app's session runtime
(setups, background passes, uploads) lives with the app in ``appkit``.
"""
