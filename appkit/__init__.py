"""Streamlit widgets and session state shared by the app's pages (views only; the logic is in ``fairaudit``)."""
