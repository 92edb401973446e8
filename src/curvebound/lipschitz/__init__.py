"""Local Lipschitz constants by bound propagation on the graph augmented with its own Jacobian
(design.md e): ``jacobian_graph`` builds the derivative graph, ``lipschitz_bound`` bounds its norm."""

from .certify import LipschitzResult, lipschitz_bound, lipschitz_command
from .jacobian_graph import UnsupportedGradient, jacobian_graph

__all__ = ["LipschitzResult", "UnsupportedGradient", "jacobian_graph", "lipschitz_bound", "lipschitz_command"]
