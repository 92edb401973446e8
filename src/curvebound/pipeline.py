"""The verification pipeline: attack -> CROWN -> alpha-CROWN -> verdict (design.md d.3).

Per input box of the property: a PGD attack hunts a counterexample (replayed on the original ONNX
model with onnxruntime before it counts); then IBP+CROWN bound every row ``C y - rhs`` of every
disjunct; a disjunct is refuted when some row's lower bound is > 0; alpha-CROWN works on the
disjuncts CROWN leaves open. The verdict is ``unsat`` only when every disjunct of every box is
refuted, ``sat`` only with a replayed counterexample, else ``unknown`` (or ``timeout``).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .attack.pgd import pgd_attack
from .bounds.alpha import AlphaOptions, optimize_spec_bound
from .bounds.crown import intermediate_bounds, spec_lower_bound
from .errors import TimeLimitReached
from .graph.ir import Graph
from .io.replay import replay_counterexample
from .ops.base import Interval, UnsupportedInput
from .spec import InputBox, Property

log = logging.getLogger("curvebound")


@dataclass
class Options:
    """Every option has a default that works; nothing needs a config file."""

    timeout: float | None = None  # seconds for the whole run
    device: str = "cpu"
    dtype: torch.dtype = torch.float64  # bounds in float64: rounding cannot flip a verdict
    attack_restarts: int = 10  # first, quick attack; a 5x larger one runs when bounds leave the property open
    attack_steps: int = 50
    alpha: bool = True
    alpha_options: AlphaOptions = field(default_factory=AlphaOptions)
    bab: bool = True  # branch-and-bound on what bounds leave open
    input_split: str = "auto"  # "auto" (few perturbed input dims), "always", "never"
    branching: str = "bbps"  # activation BaB heuristic: "bbps" | "babsr"
    branch_points: str = "optimized"  # "optimized" (lookup table) | "midpoint"
    relu_only: bool = False
    filter_top_k: int = 3  # > 1: pick each split among the k best candidates by bounding their children
    seed: int = 0


@dataclass
class Counterexample:
    x: np.ndarray  # flat input, float64 (the value replayed on onnxruntime)
    y: np.ndarray  # flat onnxruntime output, float64
    box: int
    disjunct: int


@dataclass
class BoxReport:
    """Per disjunct: the best row margin ``max_r (lb_r - rhs_r)`` each method reached (> 0: refuted)."""

    margins: dict[str, list[float]] = field(default_factory=dict)
    refuted: list[bool] = field(default_factory=list)
    note: str = ""
    # what branch-and-bound needs to go on from here (not part of the report)
    region: Interval | None = field(default=None, repr=False)
    bounds: list[Interval | None] | None = field(default=None, repr=False)
    # alpha-CROWN's output relaxation parameters (node -> [k, rows, 1, *shape]) for the rows of
    # ``alpha_disjuncts`` (row r belongs to ``alpha_disjuncts[alpha_groups[r]]``): BaB's warm start
    alpha_params: dict[int, Tensor] | None = field(default=None, repr=False)
    alpha_disjuncts: list[int] = field(default_factory=list, repr=False)
    alpha_groups: Tensor | None = field(default=None, repr=False)
    # alpha-CROWN's (seconds, worst disjunct margin) after each iteration
    alpha_history: list[tuple[float, float]] = field(default_factory=list, repr=False)


@dataclass
class Result:
    verdict: str  # "sat" | "unsat" | "unknown" | "timeout"
    counterexample: Counterexample | None = None
    reason: str = ""
    boxes: list[BoxReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    domains_explored: int = 0  # branch-and-bound domains
    bab_history: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def margin(self) -> float:
        """The worst (over boxes and disjuncts) best-method margin: > 0 for a proved property."""
        worst = np.inf
        for report in self.boxes:
            best = None
            for values in report.margins.values():
                arr = np.asarray(values, dtype=float)
                best = arr if best is None else np.maximum(best, arr)
            if best is not None and len(best):
                worst = min(worst, float(best.min()))
        return worst


class _Clock:
    def __init__(self, timeout: float | None):
        self.start = time.monotonic()
        self.deadline = None if timeout is None else self.start + timeout
        self.timings: dict[str, float] = {}

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeLimitReached()

    def share(self, fraction: float) -> float | None:
        """A deadline ``fraction`` of the remaining time from now (None without a time limit)."""
        if self.deadline is None:
            return None
        now = time.monotonic()
        return now + fraction * max(0.0, self.deadline - now)

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds


def _stack_rows(box: InputBox, which: list[int], dtype, device) -> tuple[Tensor, Tensor, Tensor]:
    """All rows of the chosen disjuncts: ``C [rows, n_out]``, ``rhs [rows]``, ``groups [rows]``."""
    Cs, rhss, groups = [], [], []
    for g, d in enumerate(which):
        dis = box.disjuncts[d]
        Cs.append(np.asarray(dis.C, dtype=np.float64))
        rhss.append(np.asarray(dis.rhs, dtype=np.float64))
        groups.append(np.full(len(dis.rhs), g))
    C = torch.as_tensor(np.concatenate(Cs), dtype=dtype, device=device)
    rhs = torch.as_tensor(np.concatenate(rhss), dtype=dtype, device=device)
    return C, rhs, torch.as_tensor(np.concatenate(groups), device=device)


def _group_max(values: Tensor, groups: Tensor, n: int) -> Tensor:
    out = torch.full((n,), -torch.inf, dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, groups, values, "amax")


class Verifier:
    """Runs the pipeline for one (graph, property) pair; ``onnx_path`` is the model replayed in
    onnxruntime to confirm counterexamples."""

    def __init__(self, graph: Graph, prop: Property, onnx_path: str, options: Options | None = None):
        self.options = options or Options()
        self.graph = graph.to(self.options.device, self.options.dtype)
        # the attack only proposes candidates (onnxruntime decides), so it runs in float32
        self.attack_graph = copy.deepcopy(graph).to(self.options.device, torch.float32)
        self.prop = prop
        self.onnx_path = onnx_path
        if prop.n_inputs != graph.input_size:
            raise ValueError(
                f"{prop.source}: declares {prop.n_inputs} inputs but {graph.source} takes {graph.input_size}"
            )
        if prop.n_outputs != graph.output_size:
            raise ValueError(
                f"{prop.source}: declares {prop.n_outputs} outputs but {graph.source} has {graph.output_size}"
            )

    # ---- stages ----
    def _flat_model(self, x: Tensor) -> Tensor:
        y = self.attack_graph.forward(x.reshape(x.shape[0], *self.graph.input_shape))
        return y.reshape(x.shape[0], -1)

    def _attack(self, index: int, box: InputBox, clock: _Clock, restarts: int, steps: int,
                budget: float | None = None) -> Counterexample | None:
        """PGD on one box (at most ``budget`` seconds, within the overall deadline), then replay."""
        t = time.monotonic()
        deadline = clock.deadline
        if budget is not None:
            deadline = t + budget if deadline is None else min(deadline, t + budget)
        try:
            found = pgd_attack(
                self._flat_model,
                box,
                restarts=restarts,
                steps=steps,
                seed=self.options.seed + index,
                deadline=deadline,
                dtype=torch.float32,
                device=self.options.device,
            )
        finally:
            clock.add("attack", time.monotonic() - t)
        if not found.found:
            log.info("box %d: attack found no violation (best margin %.4g)", index, found.margin)
            return None
        t = time.monotonic()
        replay = replay_counterexample(self.onnx_path, found.x, box)
        clock.add("replay", time.monotonic() - t)
        if not replay.ok:
            log.warning("box %d: candidate counterexample not confirmed by onnxruntime: %s", index, replay.reason)
            return None
        log.info("box %d: counterexample confirmed by onnxruntime (disjunct %s)", index, replay.disjunct)
        return Counterexample(replay.x, replay.y, index, int(replay.disjunct))

    def _bound_box(self, index: int, box: InputBox, clock: _Clock) -> BoxReport:
        opts = self.options
        report = BoxReport()
        dtype, device = opts.dtype, opts.device
        shape = self.graph.input_shape
        lower = torch.as_tensor(box.lower, dtype=dtype, device=device).reshape(1, *shape)
        upper = torch.as_tensor(box.upper, dtype=dtype, device=device).reshape(1, *shape)
        region = Interval(lower, upper)
        n = len(box.disjuncts)
        C, rhs, groups = _stack_rows(box, list(range(n)), dtype, device)
        report.refuted = [False] * n
        report.region = region
        try:
            t = time.monotonic()
            with torch.no_grad():
                bounds = intermediate_bounds(self.graph, region, deadline=clock.deadline)
                crown = spec_lower_bound(self.graph, bounds, C[:, None, :])[:, 0]
            clock.add("crown", time.monotonic() - t)
        except UnsupportedInput as exc:
            report.note = f"cannot bound soundly: {exc}"
            return report
        report.bounds = bounds
        margins = _group_max(crown - rhs, groups, n)
        report.margins["crown"] = margins.tolist()
        report.refuted = (margins > 0).tolist()
        log.info("box %d: CROWN refutes %d of %d disjuncts", index, sum(report.refuted), n)
        clock.check()
        open_ = [d for d in range(n) if not report.refuted[d]]
        if open_ and opts.alpha and opts.bab and self._uses_input_split(region):
            log.info("box %d: few perturbed inputs: skipping alpha-CROWN for input-space branch-and-bound", index)
        elif open_ and opts.alpha:
            C2, rhs2, groups2 = _stack_rows(box, open_, dtype, device)
            rows = torch.cat([torch.nonzero(groups == d).flatten() for d in open_])
            t = time.monotonic()
            try:
                result = optimize_spec_bound(
                    self.graph,
                    region,
                    C2[:, None, :],
                    rhs2,
                    groups2,
                    reference=bounds,
                    initial_lower=crown[rows][:, None],
                    options=opts.alpha_options,
                    # with branch-and-bound to follow, 30% of the time, or up to 70% while the root
                    # still gains fast: BaB inherits the root's intermediate bounds
                    deadline=clock.share(0.7 if opts.bab else 1.0),
                    soft_deadline=clock.share(0.3) if opts.bab else None,
                )
            except UnsupportedInput as exc:
                report.note = f"alpha-CROWN: cannot bound soundly: {exc}"
                return report
            finally:
                clock.add("alpha-crown", time.monotonic() - t)
            alpha_margins = _group_max(result.lower[:, 0] - rhs2, groups2, len(open_))
            all_margins = margins.clone()
            for j, d in enumerate(open_):
                all_margins[d] = max(all_margins[d], alpha_margins[j])
            report.margins["alpha-crown"] = all_margins.tolist()
            report.refuted = (all_margins > 0).tolist()
            report.bounds = result.bounds
            report.alpha_params = {node: value.detach() for (node, start), value in result.params.values.items()
                                   if start == self.graph.output}
            report.alpha_disjuncts, report.alpha_groups = open_, groups2
            report.alpha_history = result.history
            log.info(
                "box %d: alpha-CROWN (%d iterations) refutes %d of %d disjuncts",
                index, result.iterations, sum(report.refuted), n,
            )
        return report

    # ---- the whole run ----
    def run(self) -> Result:
        opts = self.options
        clock = _Clock(opts.timeout)
        torch.manual_seed(opts.seed)
        result = Result("unknown")
        try:
            for i, box in enumerate(self.prop.boxes):
                clock.check()
                cex = self._attack(i, box, clock, opts.attack_restarts, opts.attack_steps)
                if cex is not None:
                    result.verdict, result.counterexample = "sat", cex
                    return self._finish(result, clock)
            unresolved = []
            for i, box in enumerate(self.prop.boxes):
                clock.check()
                report = self._bound_box(i, box, clock)
                result.boxes.append(report)
                if not all(report.refuted):
                    unresolved.append(i)
                    if report.note:
                        result.reason = report.note
            if not unresolved:
                result.verdict = "unsat"
                return self._finish(result, clock)
            # a second, larger attack on the boxes bounds could not settle
            for i in unresolved:
                clock.check()
                remaining = None if clock.deadline is None else clock.deadline - time.monotonic()
                budget = 20.0 if remaining is None else min(20.0, 0.15 * remaining)
                cex = self._attack(i, self.prop.boxes[i], clock, 5 * opts.attack_restarts, 4 * opts.attack_steps,
                                   budget)
                if cex is not None:
                    result.verdict, result.counterexample = "sat", cex
                    return self._finish(result, clock)
            still_open = []
            for i in unresolved if opts.bab else []:
                clock.check()
                outcome = self._branch_and_bound(i, self.prop.boxes[i], result.boxes[i], clock, result)
                if outcome == "sat":
                    return self._finish(result, clock)
                if outcome == "timeout":
                    raise TimeLimitReached()
                if outcome != "verified":
                    still_open.append(i)
            if opts.bab:
                unresolved = still_open
            if not unresolved:
                result.verdict = "unsat"
                return self._finish(result, clock)
            result.verdict = "unknown"
            if not result.reason:
                result.reason = f"{len(unresolved)} of {len(self.prop.boxes)} input boxes not proved"
        except TimeLimitReached:
            result.verdict = "timeout"
            result.reason = "the time limit was reached"
        return self._finish(result, clock)

    def _uses_input_split(self, region: Interval) -> bool:
        from .bab.input_split import input_split_suitable

        mode = self.options.input_split
        return mode == "always" or (mode == "auto" and input_split_suitable(self.graph, region))

    def _branch_and_bound(self, index: int, box: InputBox, report: BoxReport, clock: _Clock, result: Result) -> str:
        """Branch-and-bound on the disjuncts of one box that bounds left open: input splitting when
        the box has few perturbed dimensions, else GenBaB on the activations. Returns "verified",
        "sat" (``result`` holds the replayed counterexample), "timeout" or "unknown"."""
        from .bab.activation_split import GenBabOptions, activation_bab
        from .bab.input_split import input_split_bab

        opts = self.options
        open_ = [d for d, done in enumerate(report.refuted) if not done]
        if report.bounds is None or report.region is None:
            return "unknown"
        C, rhs, groups = _stack_rows(box, open_, opts.dtype, opts.device)
        use_input = self._uses_input_split(report.region)
        t = time.monotonic()
        try:
            if use_input:
                log.info("box %d: input-space branch-and-bound on %d open disjuncts", index, len(open_))
                outcome = input_split_bab(self.graph, report.region, C, rhs, groups, deadline=clock.deadline)
            else:
                log.info("box %d: GenBaB (%s, %s points) on %d open disjuncts", index, opts.branching,
                         opts.branch_points, len(open_))
                bab_options = GenBabOptions(branching=opts.branching, branch_points=opts.branch_points,
                                            relu_only=opts.relu_only, filter_top_k=opts.filter_top_k)
                root_alpha = None
                if report.alpha_params and report.alpha_groups is not None:
                    positions = torch.cat([torch.nonzero(report.alpha_groups == report.alpha_disjuncts.index(d))
                                           .flatten() for d in open_])
                    root_alpha = {node: value[:, positions] for node, value in report.alpha_params.items()}
                outcome = activation_bab(self.graph, report.region, C, rhs, groups, root_bounds=report.bounds,
                                         deadline=clock.deadline, options=bab_options, root_alpha=root_alpha)
        except UnsupportedInput as exc:
            report.note = f"branch-and-bound: cannot bound soundly: {exc}"
            result.reason = report.note
            return "unknown"
        except TimeLimitReached:
            return "timeout"
        except (RuntimeError, ValueError, IndexError) as exc:  # a bug must cost the proof, never soundness
            log.error("box %d: branch-and-bound failed: %s: %s", index, type(exc).__name__, exc)
            result.reason = f"branch-and-bound failed ({type(exc).__name__}: {exc})"
            return "unknown"
        finally:
            clock.add("bab", time.monotonic() - t)
        result.domains_explored += outcome.domains_explored
        result.bab_history.extend(outcome.history)
        log.info("box %d: branch-and-bound %s after %d domains", index, outcome.status, outcome.domains_explored)
        if outcome.status == "verified":
            report.refuted = [True] * len(report.refuted)
            return "verified"
        if outcome.status == "counterexample" and outcome.x is not None:
            replay = replay_counterexample(self.onnx_path, outcome.x, box)
            if replay.ok:
                result.verdict = "sat"
                result.counterexample = Counterexample(replay.x, replay.y, index, int(replay.disjunct))
                return "sat"
            log.warning("box %d: BaB candidate not confirmed by onnxruntime: %s", index, replay.reason)
            return "unknown"
        if outcome.reason:
            result.reason = outcome.reason
        return outcome.status if outcome.status == "timeout" else "unknown"

    def _finish(self, result: Result, clock: _Clock) -> Result:
        clock.timings["total"] = time.monotonic() - clock.start
        result.timings = clock.timings
        return result
