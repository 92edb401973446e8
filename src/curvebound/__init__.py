"""curvebound: a verifier for neural networks with general nonlinearities.

``curvebound.verify(model, spec, timeout=...) -> Result`` is the entry point (see ``api``).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["verify", "Result", "Options", "__version__"]


def __getattr__(name: str):
    # imported lazily so that `curvebound --help` does not pay for importing torch
    if name in ("verify", "Result", "Options"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
