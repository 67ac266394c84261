"""The user-facing error type: one sentence, and catchable the way scikit-learn users catch bad input."""

from __future__ import annotations

import pytest

from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import get_method, make_config


def test_bad_input_is_a_value_error_as_in_scikit_learn():
    with pytest.raises(ValueError, match=r"^setting 'p' of 'label_flip' must lie in \[0, 1\], got -0.1\.$"):
        make_config(get_method("label_flip"), {"p": "-0.1"})
    assert issubclass(FairauditError, ValueError)
