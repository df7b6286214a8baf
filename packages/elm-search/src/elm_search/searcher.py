"""The search loop every algorithm shares: propose, evaluate once, record, checkpoint.

An algorithm only decides which genomes to propose each generation (:meth:`Searcher.propose`)
and, if it keeps an elite, which records survive as parents (:meth:`Searcher.select_parents`).
Both hooks see the search so far through a read-only :class:`SearchView`. This base class owns
what must be identical for all algorithms: constraints are checked before anything is
evaluated, each architecture is evaluated at most once (cache by stable hash), the state is
written after every generation, and a resumed search continues exactly where the saved one
stopped. A new algorithm subclasses :class:`Searcher`, names its settings class in ``Config``
and registers itself with :func:`elm_search.register_searcher`.
"""

from __future__ import annotations

import logging
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PositiveInt
from tqdm.auto import tqdm

from elm_search.constraints import Constraint, ParamBudget
from elm_search.genome import FeasibleSampler, Genome, GenomeCodec
from elm_search.objective import Objective
from elm_search.pareto import first_front, nsga_order
from elm_search.result import (
    EvaluatedArchitecture,
    GenerationSummary,
    ObjectiveSpec,
    Origin,
    SearchResult,
)
from elm_search.state import (
    SearchState,
    SearchStateError,
    read_state,
    rng_from_json,
    rng_to_json,
    write_state,
)
from elm_space import Architecture, SearchSpace, count_params

logger = logging.getLogger("elm_search")

Proposal = tuple[Genome, Origin]


class SearchConfig(BaseModel):
    """Settings every searcher has; an algorithm's own settings class extends it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    generations: PositiveInt = 20
    population: PositiveInt = 50
    """Candidates proposed (and evaluated) per generation."""
    max_evaluations: PositiveInt | None = None
    """Stop once this many distinct architectures were evaluated (the last generation is cut short)."""
    max_tries: PositiveInt = 50
    """Attempts per wanted candidate before giving up (a constraint too tight, a space exhausted)."""


def _constraint_json(c: Constraint) -> dict[str, Any]:
    return {"type": type(c).__name__, **c.model_dump(mode="json")}


class _Progress:
    """The mutable bookkeeping of one search, rebuilt identically from a saved state."""

    def __init__(self, state: SearchState) -> None:
        self.state = state
        self.index = {r.hash: i for i, r in enumerate(state.records)}
        self.genomes = {r.genome for r in state.records}
        self.cache: dict[str, dict[str, float]] = {r.hash: r.values for r in state.records}
        self.cache.update(state.pending)

    def record(self, h: str) -> EvaluatedArchitecture:
        return self.state.records[self.index[h]]


class SearchView:
    """What an algorithm may read of the search so far; it cannot change the state through it.

    Records are frozen pydantic models and the collections are tuples or frozensets, so an
    algorithm's proposals depend only on what it is shown, which keeps resumed searches exact.
    """

    def __init__(self, progress: _Progress) -> None:
        self._progress = progress

    @property
    def generation(self) -> int:
        """Completed generations (0 while proposing the first)."""
        return self._progress.state.generation

    @property
    def records(self) -> tuple[EvaluatedArchitecture, ...]:
        """Every evaluated architecture, in evaluation order."""
        return tuple(self._progress.state.records)

    @property
    def parents(self) -> tuple[EvaluatedArchitecture, ...]:
        """The records the last :meth:`Searcher.select_parents` kept, best first."""
        return tuple(self._progress.record(h) for h in self._progress.state.parents)

    @property
    def evaluated(self) -> frozenset[Genome]:
        """Genomes already evaluated (a proposal among them is discarded)."""
        return frozenset(self._progress.genomes)

    def record(self, architecture_hash: str) -> EvaluatedArchitecture:
        return self._progress.record(architecture_hash)


class Searcher(ABC):
    """Search a space for architectures that do best on ``objectives`` within ``constraints``.

    ``objectives``: one Objective (single-objective search) or several (multi-objective: the
    Pareto front over all of them is kept). ``constraints``: None means the space's own
    ``param_budget`` if it has one; pass ``()`` for none.
    """

    algorithm: ClassVar[str]
    """The registered name, set by :func:`elm_search.register_searcher`."""
    Config: ClassVar[type[SearchConfig]] = SearchConfig
    """The algorithm's settings class (validated before a search starts)."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objective | Sequence[Objective],
        config: SearchConfig,
        constraints: Sequence[Constraint] | None = None,
    ) -> None:
        self.space = space
        self.objectives = (objectives,) if isinstance(objectives, Objective) else tuple(objectives)
        if not self.objectives:
            raise ValueError("at least one Objective is required")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        if constraints is None:
            constraints = [ParamBudget(max_params=space.param_budget)] if space.param_budget else []
        self.constraints = tuple(constraints)
        for c in self.constraints:
            c.check_space(space)
        self.config = config
        self.codec = GenomeCodec(space)
        self.sampler = FeasibleSampler(self.codec, self.constraints, config.max_tries)

    # --- what an algorithm decides -------------------------------------------------------

    @abstractmethod
    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        """New, feasible, not yet evaluated genomes for the next generation, each with an origin
        label of the algorithm's choosing ("mutation", "greedy", ...).

        Use :meth:`try_add` and :meth:`fill_random` to build the batch: they discard genomes that
        break a constraint or were evaluated already. Draw every random choice from ``rng`` (its
        state is saved with the search), so a resumed search proposes what an uninterrupted one
        would.
        """

    def select_parents(self, view: SearchView, pool: list[EvaluatedArchitecture]) -> list[str]:
        """Hashes of the records kept as parents (``pool``: the previous parents and the new
        generation); algorithms without an elite keep none."""
        return []

    # --- helpers for algorithms ------------------------------------------------------------

    def rank(self, records: Sequence[EvaluatedArchitecture]) -> list[int]:
        """Indices of ``records``, best first: by the objective, or by NSGA-II rank and crowding.

        Ties keep the given order, so earlier evaluated records win and ranking is deterministic.
        """
        if len(self.objectives) == 1:
            o = self.objectives[0]
            return sorted(range(len(records)), key=lambda i: (-o.sign() * records[i].values[o.name], i))
        return nsga_order([self._minimised(r) for r in records])

    def _minimised(self, record: EvaluatedArchitecture) -> list[float]:
        return [-o.sign() * record.values[o.name] for o in self.objectives]

    def try_add(self, genome: Genome, origin: Origin, batch: list[Proposal], taken: set[Genome]) -> bool:
        """Add ``genome`` to the batch if it meets the constraints and was never evaluated.

        ``taken`` holds genomes, not hashes: within one space the two identify an architecture
        equally, and most rejected proposals are repeats, which the genome finds without
        building and hashing an Architecture.
        """
        if genome in taken or not self.sampler.feasible(genome):
            return False
        taken.add(genome)
        batch.append((genome, origin))
        return True

    def fill_random(self, rng: random.Random, batch: list[Proposal], taken: set[Genome], size: int) -> None:
        """Add random feasible genomes until the batch holds ``size`` (or the tries run out)."""
        attempts = (size - len(batch)) * self.config.max_tries
        while len(batch) < size and attempts > 0:
            attempts -= 1
            self.try_add(self.sampler.sample(rng), "random", batch, taken)

    # --- the loop --------------------------------------------------------------------------

    def _fresh_state(self) -> SearchState:
        return SearchState(
            algorithm=self.algorithm,
            config=self.config.model_dump(mode="json"),
            space=self.space,
            objectives=tuple(ObjectiveSpec(name=o.name, maximize=o.maximize) for o in self.objectives),
            constraints=[_constraint_json(c) for c in self.constraints],
            rng_state=rng_to_json(random.Random(self.config.seed)),
        )

    def _check_same_search(self, saved: SearchState, path: Path) -> None:
        fresh = self._fresh_state()
        for field in ("algorithm", "config", "space", "objectives", "constraints"):
            if getattr(saved, field) != getattr(fresh, field):
                raise SearchStateError(
                    f"search state {path} was written by a different search: its {field} differs "
                    f"(saved {getattr(saved, field)!r}, now {getattr(fresh, field)!r}); "
                    "use a new state path or the original settings"
                )

    def _load_or_start(self, path: Path | None, resume: bool) -> SearchState:
        if path is None or not path.exists():
            if path is not None and resume:
                logger.info("no search state at %s; starting a new search", path)
            return self._fresh_state()
        if not resume:
            raise SearchStateError(
                f"search state {path} already exists; pass resume=True to continue it or remove it"
            )
        saved = read_state(path)
        self._check_same_search(saved, path)
        logger.info("resuming %s from %s after generation %d", self.algorithm, path, saved.generation)
        return saved

    def _evaluate(self, arch: Architecture) -> dict[str, float]:
        values = {}
        for o in self.objectives:
            value = o(arch)
            if not math.isfinite(value):
                raise ValueError(f"objective {o.name!r} returned {value} for architecture {arch.to_string()}")
            values[o.name] = value
        return values

    def _stop_reason(self, run: _Progress) -> str | None:
        if run.state.generation >= self.config.generations:
            return "generations"
        if self.config.max_evaluations is not None and len(run.state.records) >= self.config.max_evaluations:
            return "max_evaluations"
        return None

    def _generation(self, run: _Progress, rng: random.Random) -> bool:
        """Run one generation; False when nothing new could be proposed."""
        state = run.state
        proposals = self.propose(SearchView(run), rng)
        if self.config.max_evaluations is not None:
            proposals = proposals[: self.config.max_evaluations - len(state.records)]
        if not proposals:
            return False
        new = []
        for genome, origin in proposals:
            arch = self.codec.decode(genome)
            h = arch.stable_hash()
            if h not in run.cache:
                run.cache[h] = state.pending[h] = self._evaluate(arch)
            new.append(
                EvaluatedArchitecture(
                    hash=h,
                    architecture=arch,
                    genome=genome,
                    values=run.cache[h],
                    params=count_params(arch),
                    generation=state.generation,
                    origin=origin,
                )
            )
        for r in new:
            run.index[r.hash] = len(state.records)
            run.genomes.add(r.genome)
            state.records.append(r)
        state.pending = {}
        state.parents = self.select_parents(SearchView(run), [run.record(h) for h in state.parents] + new)
        best = self._best(state.records)
        primary = self.objectives[0].name
        state.generations.append(
            GenerationSummary(
                generation=state.generation,
                new_evaluations=len(new),
                evaluations=len(state.records),
                best=best.values[primary],
                best_hash=best.hash,
            )
        )
        state.generation += 1
        state.rng_state = rng_to_json(rng)
        return True

    def _best(self, records: Sequence[EvaluatedArchitecture]) -> EvaluatedArchitecture:
        o = self.objectives[0]
        return min(enumerate(records), key=lambda ir: (-o.sign() * ir[1].values[o.name], ir[0]))[1]

    def search(
        self,
        state_path: str | Path | None = None,
        *,
        resume: bool = False,
        stop_after: int | None = None,
        progress: bool = True,
    ) -> SearchResult:
        """Search until the configured generations or evaluations are spent.

        ``state_path``: where the state is written after every generation (and, if the fitness
        raises, with the evaluations of the unfinished generation, so none is repeated).
        ``resume``: continue the search saved there. ``stop_after``: run at most this many
        generations in this call (the result then has ``finished=False``).
        """
        path = Path(state_path) if state_path is not None else None
        if stop_after is not None and stop_after < 0:
            raise ValueError(f"stop_after={stop_after} must be >= 0")
        state = self._load_or_start(path, resume)
        run = _Progress(state)
        rng = rng_from_json(state.rng_state)
        done = 0
        bar = tqdm(
            total=self.config.generations,
            initial=state.generation,
            desc=self.algorithm,
            disable=not progress,
            unit="gen",
        )
        try:
            while state.stop_reason is None:
                reason = self._stop_reason(run)
                if reason is None and stop_after is not None and done >= stop_after:
                    break
                if reason is None and not self._generation(run, rng):
                    reason = "exhausted"
                if reason is not None:
                    state.stop_reason = reason
                else:
                    done += 1
                    summary = state.generations[-1]
                    bar.update(1)
                    bar.set_postfix(best=f"{summary.best:.6g}", evals=summary.evaluations)
                    logger.info(
                        "%s generation %d: best %s=%.6g, %d evaluations",
                        self.algorithm,
                        summary.generation,
                        self.objectives[0].name,
                        summary.best,
                        summary.evaluations,
                    )
                if path is not None:
                    write_state(state, path)
        except BaseException:
            if path is not None:
                # the generation counter and RNG state are still those before the failed
                # generation; the evaluations it did finish are saved as pending
                write_state(state, path)
            raise
        finally:
            bar.close()
        return self._result(state)

    def _result(self, state: SearchState) -> SearchResult:
        records = state.records
        best = self._best(records) if records else None
        if len(self.objectives) == 1 or not records:
            front = [r for r in records if best is not None and r.values == best.values]
        else:
            front = [records[i] for i in first_front([self._minimised(r) for r in records])]
            last = self.objectives[-1].name
            front.sort(key=lambda r: (r.values[last], r.hash))
        return SearchResult(
            algorithm=self.algorithm,
            space_name=self.space.name,
            objectives=state.objectives,
            records=tuple(records),
            generations=tuple(state.generations),
            best=best,
            pareto_front=tuple(front),
            finished=state.stop_reason is not None,
            stop_reason=state.stop_reason or "stop_after",
        )
