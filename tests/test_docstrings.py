"""Every Examples section in a public docstring runs, as a doctest, and says what it shows."""

import doctest
import importlib

import pytest

MODULES = ["sigmanet.network", "sigmanet.sklearn"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name == "sigmanet.sklearn":
        pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'sigmanet[sklearn]')")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no Examples to run"
    assert result.failed == 0
