"""sigmanet: the sigmoid network of "Build a Neural Net in 4 Minutes", made fast.

    import sigmanet as sn
    net = sn.Network([3, 4, 1], backend="auto", seed=1, init="legacy")
    hist = net.fit(X, y, iterations=60000)

Importing sigmanet imports NumPy only; numba and CuPy are imported when their
backend is first asked for.
"""

from ._version import __version__
from .backends import available_backends, backend_status
from .embedding import loss_and_gradients
from .errors import BackendUnavailableError, DivergenceError, ModelFileError, SigmanetError
from .network import History, Network, StuckWarning, load
from .numerics import sigmoid

__all__ = [
    "BackendUnavailableError",
    "DivergenceError",
    "History",
    "ModelFileError",
    "Network",
    "SigmanetError",
    "StuckWarning",
    "__version__",
    "available_backends",
    "backend_status",
    "load",
    "loss_and_gradients",
    "sigmoid",
]
