"""Bias-mitigation methods, one registry; each plugs into the shared trainer and attack module."""

from fairaudit.mitigation.base import (METHODS, MethodContext, MitigationMethod, MitigationResult, config_help,
                                       get_method, make_config, recorded_method, register_method, register_rename)

__all__ = ["METHODS", "MethodContext", "MitigationMethod", "MitigationResult", "config_help", "get_method",
           "make_config", "recorded_method", "register_method", "register_rename"]

from fairaudit.mitigation import faap  # noqa: E402,F401  (registers the method)
from fairaudit.mitigation import baselines  # noqa: E402,F401  (registers the methods)
from fairaudit.mitigation import aeda  # noqa: E402,F401  (registers the methods)
from fairaudit.mitigation import asac  # noqa: E402,F401  (registers the method)
from fairaudit.mitigation import froc  # noqa: E402,F401  (registers the methods)
from fairaudit.mitigation import froc_pre  # noqa: E402,F401  (registers the method)
