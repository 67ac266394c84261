"""fairaudit: group-fairness auditing for vision and tabular models.

The engine is importable without Streamlit; the app (``app.py``) and the CLI
(``python -m fairaudit``) call the same functions.
"""

__version__ = "0.1.0"
