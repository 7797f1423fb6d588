"""pytest fixtures for applications that test their guided calls (``-p guided.testing.pytest_plugin``).

``scripted_model(responses=None, **options)`` builds a `ScriptedModel`; ``guided_validate`` is
`guided.validate.validate`, and ``assert_matches`` is `guided.testing.assert_matches`.
"""

from __future__ import annotations

import pytest

from guided.testing import ScriptedModel, assert_matches as _assert_matches
from guided.validate import validate as _validate


@pytest.fixture
def scripted_model():
    """A factory: ``scripted_model(["<answer>"])`` -> a deterministic fake model."""
    return lambda responses=None, **options: ScriptedModel(responses, **options)


@pytest.fixture
def assert_matches():
    return _assert_matches


@pytest.fixture
def guided_validate():
    return _validate
