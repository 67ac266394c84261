"""Streamlit-free helpers behind the app's views.

Everything here is plain Python (pandas, plotly, numpy) so it can be tested
without a browser: the setup of one audit (:mod:`~fairaudit.ui.setup`), the
background pass that produces its predictions (:mod:`~fairaudit.ui.runner`,
:mod:`~fairaudit.ui.background`), tables and checks derived from an
:class:`~fairaudit.metrics.AuditReport` (:mod:`~fairaudit.ui.tables`), plotly
figures (:mod:`~fairaudit.ui.charts`), sample galleries
(:mod:`~fairaudit.ui.gallery`) and uploads that loaders read from disk
(:mod:`~fairaudit.ui.uploads`). The app's pages only lay these out.
"""
