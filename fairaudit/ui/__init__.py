"""Streamlit-free helpers behind the app's views.

Everything here is plain Python (pandas, plotly, numpy) so it can be tested
without a browser: the setup of one audit (:mod:`~fairaudit.ui.setup`), the
background pass that produces its predictions (:mod:`~fairaudit.ui.runner`,
:mod:`~fairaudit.ui.background`), tables and checks derived from an
:class:`~fairaudit.metrics.AuditReport` (:mod:`~fairaudit.ui.tables`), plotly
figures (:mod:`~fairaudit.ui.charts`) and sample galleries
(:mod:`~fairaudit.ui.gallery`). The app's pages only lay these out.
"""
