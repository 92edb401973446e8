"""Build tiny ONNX models, one per operator family, each with a VNN-LIB spec, for tests and examples.

Every model is a few hundred parameters drawn from a fixed seed (no training), exported with
``torch.onnx.export(..., dynamo=False)`` at opset 17 (20 for the ONNX ``Gelu`` op). Each gets an
L-inf box of radius ``eps`` around a fixed centre and either a robustness spec (the unsafe region is
"some other output >= the output largest at the centre") or an output-bound spec ("Y_0 <= a value
slightly below its centre value").

Usage: ``python scripts/make_test_models.py [folder]`` (default ``examples/models/``).
"""

from __future__ import annotations

import argparse
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "examples" / "models"


class Siren(nn.Module):
    """SIREN-style MLP: ``sin(w0 * (W x + b))`` layers."""

    def __init__(self, w0: float = 2.0):
        super().__init__()
        self.w0 = w0
        self.l1, self.l2, self.l3 = nn.Linear(2, 12), nn.Linear(12, 12), nn.Linear(12, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.sin(self.w0 * self.l1(x))
        h = torch.sin(self.l2(h))
        return self.l3(h)


def gelu_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 12), nn.GELU(), nn.Linear(12, 12), nn.GELU(), nn.Linear(12, 3))


def silu_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 12), nn.SiLU(), nn.Linear(12, 12), nn.SiLU(), nn.Linear(12, 3))


class TinyTransformer(nn.Module):
    """One pre-LN block on ``[1, tokens, dim]``: softmax attention (Q K^T, then A V) and a GELU MLP,
    both residual, then a linear head on the flattened tokens."""

    def __init__(self, tokens: int = 3, dim: int = 4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.mlp = nn.Sequential(nn.Linear(dim, 8), nn.ReLU(), nn.Linear(8, dim))
        self.head = nn.Linear(tokens * dim, 2)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln1(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        x = x + self.o(torch.matmul(attn, v))
        x = x + self.mlp(self.ln2(x))
        return self.head(x.flatten(1))


class RecurrentClassifier(nn.Module):
    """LSTM (or GRU) over ``[1, steps, features]`` (batch first); a linear head on the last hidden state."""

    def __init__(self, cell: str = "lstm", features: int = 2, hidden: int = 3):
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


class Bilinear(nn.Module):
    """``W3 ((W1 x) * (W2 x))``: a product of two perturbed tensors."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.l3(self.l1(x) * self.l2(x))


class Gaussian(nn.Module):
    """Radial-basis style units ``exp(-h^2)``."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 10), nn.Linear(10, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.l1(x)
        return self.l2(torch.exp(-(h * h)))


class ConvexMix(nn.Module):
    """Exp, Log, Reciprocal, Sqrt and Pow on domains that stay valid for every input:
    ``log(1 + exp(a))``, ``1 / (1 + b^2)``, ``sqrt(1 + c^2)`` and ``(1 + d^2)^1.5``."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 16), nn.Linear(16, 2)

    def forward(self, x: Tensor) -> Tensor:
        a, b, c, d = self.l1(x).split(4, dim=-1)
        parts = [
            torch.log(1 + torch.exp(a)),
            1 / (1 + b * b),
            torch.sqrt(1 + c * c),
            torch.pow(1 + d * d, 1.5),
        ]
        return self.l2(torch.cat(parts, dim=-1))


@dataclass(frozen=True)
class ModelSpec:
    """How to build one test model: constructor, input shape (with the ONNX batch dim), opset, the
    spec kind ("robust" or "bound"), the box radius, and the IR operator class names the import
    must (``expect_kinds``) and must not (``forbid_kinds``) produce."""

    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    opset: int = 17
    spec: str = "robust"
    eps: float = 0.05
    expect_kinds: tuple[str, ...] = ()
    forbid_kinds: tuple[str, ...] = ()


MODELS: dict[str, ModelSpec] = {
    "siren": ModelSpec(Siren, (1, 2), spec="bound", eps=0.05, expect_kinds=("Sin",)),
    "gelu_erf": ModelSpec(gelu_mlp, (1, 4), 17, expect_kinds=("Gelu",), forbid_kinds=("Erf", "Mul2")),
    "gelu_op": ModelSpec(gelu_mlp, (1, 4), 20, expect_kinds=("Gelu",), forbid_kinds=("Erf", "Mul2")),
    "transformer": ModelSpec(TinyTransformer, (1, 3, 4), eps=0.02,
                             expect_kinds=("MatMul2", "Exp", "Reciprocal", "Sqrt")),
    "lstm": ModelSpec(lambda: RecurrentClassifier("lstm"), (1, 3, 2), eps=0.05,
                      expect_kinds=("Sigmoid", "Tanh", "Mul2")),
    "gru": ModelSpec(lambda: RecurrentClassifier("gru"), (1, 3, 2), eps=0.05,
                     expect_kinds=("Sigmoid", "Tanh", "Mul2")),
    "bilinear": ModelSpec(Bilinear, (1, 4), eps=0.05, expect_kinds=("Mul2",)),
    "gaussian": ModelSpec(Gaussian, (1, 3), spec="bound", eps=0.05, expect_kinds=("Exp", "Square"),
                          forbid_kinds=("Mul2",)),
    "silu": ModelSpec(silu_mlp, (1, 4), expect_kinds=("Silu",), forbid_kinds=("Sigmoid", "Mul2")),
    "convex_mix": ModelSpec(ConvexMix, (1, 3), eps=0.05,
                            expect_kinds=("Exp", "Log", "Reciprocal", "Sqrt", "Pow", "Square")),
}


def make_model(name: str, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """The model (float32, eval mode, weights from ``seed``) and its box centre ``[*input_shape]``."""
    spec = MODELS[name]
    torch.manual_seed(seed)
    model = spec.build().eval()
    centre = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(seed + 1)) * 0.5
    return model, centre


def export_onnx(model: nn.Module, centre: Tensor, path: Path, opset: int) -> None:
    """``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``), fixed input shape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        torch.onnx.export(model, (centre,), buffer, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"])
    path.write_bytes(buffer.getvalue())


def vnnlib_text(centre: np.ndarray, eps: float, output: np.ndarray, kind: str) -> str:
    """An L-inf box of radius ``eps`` around ``centre`` and the unsafe output region of ``kind``."""
    lines = [f"; L-inf box, eps={eps}, {kind} spec", ""]
    x = centre.reshape(-1).astype(np.float64)
    y = output.reshape(-1).astype(np.float64)
    lines += [f"(declare-const X_{i} Real)" for i in range(len(x))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(len(y))]
    lines.append("")
    for i, v in enumerate(x):
        lines.append(f"(assert (>= X_{i} {v - eps:.9f}))")
        lines.append(f"(assert (<= X_{i} {v + eps:.9f}))")
    if kind == "robust":
        top = int(np.argmax(y))
        others = " ".join(f"(and (>= Y_{j} Y_{top}))" for j in range(len(y)) if j != top)
        lines.append(f"(assert (or {others}))")
    else:  # unsafe: Y_0 drops below its centre value minus a margin
        lines.append(f"(assert (<= Y_0 {y[0] - 0.5:.9f}))")
    return "\n".join(lines) + "\n"


def build_model(name: str, folder: Path) -> tuple[Path, Path]:
    """Write ``<name>.onnx`` and ``<name>.vnnlib`` into ``folder``; returns both paths."""
    spec = MODELS[name]
    folder.mkdir(parents=True, exist_ok=True)
    model, centre = make_model(name)
    onnx_path, vnnlib_path = folder / f"{name}.onnx", folder / f"{name}.vnnlib"
    export_onnx(model, centre, onnx_path, spec.opset)
    with torch.no_grad():
        output = model(centre).numpy()
    vnnlib_path.write_text(vnnlib_text(centre.numpy(), spec.eps, output, spec.spec))
    return onnx_path, vnnlib_path


def build_all(folder: Path, names: list[str] | None = None) -> dict[str, tuple[Path, Path]]:
    return {name: build_model(name, folder) for name in (names or list(MODELS))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER))
    args = parser.parse_args()
    for name, (onnx_path, _) in build_all(Path(args.folder)).items():
        print(f"{name:12s} {onnx_path} ({onnx_path.stat().st_size / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
