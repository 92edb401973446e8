"""Build the bundled examples: a small trained classifier exported to ONNX, and VNN-LIB specs.

    python examples/make_examples.py            # writes examples/*.onnx and examples/*.vnnlib

The classifier is an MLP (2 inputs -> 16 Tanh -> 16 Sigmoid -> 16 ReLU -> 3 classes) trained for a
few seconds on three Gaussian blobs, so it is small, deterministic and has real nonlinearities.
Specs are VNN-COMP style L-inf robustness queries around points of the data set:
``toy_robust.vnnlib`` (radius 0.05, provable) and ``toy_attackable.vnnlib`` (radius 1.5, around a
point near the decision boundary, where a counterexample exists).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def make_data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    labels = torch.arange(3).repeat_interleave(n // 3)
    x = centres[labels] + torch.randn(len(labels), 2, generator=g) * 0.8
    return x, labels


def train(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(),
        torch.nn.Linear(16, 16), torch.nn.Sigmoid(),
        torch.nn.Linear(16, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )
    x, y = make_data()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return model.eval()


def robustness_vnnlib(centre: list[float], radius: float, label: int, n_classes: int) -> str:
    """Unsafe region: some other class scores at least as high as ``label`` (VNN-COMP form)."""
    lines = [f"; L-inf robustness of class {label} around {centre}, radius {radius}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(centre))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_classes)]
    for i, c in enumerate(centre):
        lines.append(f"(assert (>= X_{i} {c - radius!r}))")
        lines.append(f"(assert (<= X_{i} {c + radius!r}))")
    terms = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(n_classes) if j != label)
    lines.append(f"(assert (or {terms}))")
    return "\n".join(lines) + "\n"


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    model = train()
    path = HERE / "toy.onnx"
    torch.onnx.export(model, (torch.zeros(1, 2),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    with torch.no_grad():
        centre = [-2.0, 0.0]
        label = int(model(torch.tensor([centre])).argmax())
        (HERE / "toy_robust.vnnlib").write_text(robustness_vnnlib(centre, 0.05, label, 3))
        near = [0.0, 0.6]
        label_near = int(model(torch.tensor([near])).argmax())
        (HERE / "toy_attackable.vnnlib").write_text(robustness_vnnlib(near, 1.5, label_near, 3))
    print(f"wrote {path.name}, toy_robust.vnnlib, toy_attackable.vnnlib in {HERE}")


if __name__ == "__main__":
    main()
