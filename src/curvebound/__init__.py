"""curvebound: a verifier for neural networks with general nonlinearities."""

__version__ = "0.1.0"
