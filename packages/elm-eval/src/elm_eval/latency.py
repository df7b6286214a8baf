"""Latency, parameter count and peak memory of a model or of a single block.

Latency is the median wall-clock time of ``repeats`` calls after ``warmup`` untimed calls (the
median resists the outliers a shared machine produces), in eval mode under ``inference_mode``,
with ``torch.cuda.synchronize`` around each call on a GPU. The torch thread count in force is
recorded with every measurement, because CPU latency depends on it more than on anything else.

Peak memory is the most memory torch held at once during one forward call, over what was held
before it (so weights are excluded; they are reported as ``parameter_bytes``):

* on CUDA, ``torch.cuda.max_memory_allocated`` after resetting the peak, minus the allocation
  before the call;
* on CPU, the allocation and free events that the torch profiler records with
  ``profile_memory=True``, summed in time order. This counts exactly torch's own tensors, which
  ``tracemalloc`` cannot see, and unlike an RSS delta it is not blurred by the C allocator keeping
  freed pages or by other threads of the process.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt
from tqdm.auto import tqdm

from elm_eval.errors import ElmEvalError
from elm_eval.loading import (
    Head,
    ModelSource,
    check_device,
    evaluation_mode,
    forward_kwargs,
    is_pretrained,
    load_model,
    model_name,
    reload_with_head,
    resolve_device,
)
from elm_eval.results import LatencyEntry, LatencyResult, LatencyStats

CPU_MEMORY_METHOD = (
    "torch profiler allocation events (CPU): peak bytes live during one forward, weights excluded"
)
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated during one forward minus bytes allocated before it"

ExampleInputs = torch.Tensor | Sequence[Any] | Mapping[str, Any]


class LatencyConfig(BaseModel):
    """The grid and protocol of a whole-model measurement.

    ``head`` says which part is timed. ``"base"`` (the default) times the body without task head:
    a directory is loaded with ``AutoModel``, and an in-memory model with a head is saved and
    reloaded the same way, so both routes time the same network (for BERT this includes the
    pooler). Other values load that head from a directory (random weights are fine for timing)
    and time an in-memory model as given.
    """

    model_config = ConfigDict(extra="forbid")
    head: Head = "base"
    batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1, 8], min_length=1)
    seq_lengths: list[PositiveInt] = Field(default_factory=lambda: [32, 128], min_length=1)
    warmup: int = Field(3, ge=0)
    repeats: int = Field(10, ge=1)
    device: Annotated[str, AfterValidator(check_device)] = "auto"
    num_threads: int | None = Field(None, ge=1, description="torch threads; None keeps the current setting")
    measure_memory: bool = True
    seed: int = 0
    progress: bool = True
    trust_remote_code: bool = Field(False, description="run modelling code saved in the model directory")


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters, trainable or not; tied weights (shared tensors) count once."""
    return sum(p.numel() for p in model.parameters())


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers, each shared tensor once."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[int]:
    """Run with ``num_threads`` torch threads (None: unchanged) and restore the previous count."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_device(item, device) for item in value)
    return value


def _caller(module: torch.nn.Module, inputs: ExampleInputs) -> Callable[[], Any]:
    if isinstance(inputs, torch.Tensor):
        return lambda: module(inputs)
    if isinstance(inputs, Mapping):
        return lambda: module(**inputs)
    return lambda: module(*inputs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], *, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append((time.perf_counter() - start) * 1000.0)
    return times


def _stats(times: list[float], warmup: int, device: torch.device) -> LatencyStats:
    return LatencyStats(
        median_ms=statistics.median(times),
        mean_ms=statistics.fmean(times),
        std_ms=statistics.pstdev(times),
        min_ms=min(times),
        max_ms=max(times),
        repeats=len(times),
        warmup=warmup,
        device=str(device),
        num_threads=torch.get_num_threads(),
    )


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes torch allocates during one call of ``fn`` beyond what it held before (module docstring)."""
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            torch.cuda.synchronize(device)
            return int(torch.cuda.max_memory_allocated(device) - before)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
        ) as prof:
            fn()
    events = prof.profiler.kineto_results.events() if prof.profiler.kineto_results is not None else []
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak


def measure_module_latency(
    module: torch.nn.Module,
    example_inputs: ExampleInputs,
    *,
    warmup: int = 3,
    repeats: int = 10,
    device: str = "auto",
    num_threads: int | None = None,
) -> LatencyStats:
    """Latency of ``module(*example_inputs)`` (a tensor, tuple of args, or dict of kwargs).

    For per-block tables: pass one block and a hidden-state tensor of the shape it sees in the model.
    The module is moved to ``device`` and left there, in its original train/eval mode.
    """
    target = resolve_device(device)
    inputs = _to_device(example_inputs, target)
    with torch_threads(num_threads), evaluation_mode(module, target):
        times = time_calls(_caller(module, inputs), warmup=warmup, repeats=repeats, device=target)
        return _stats(times, warmup, target)


def block_latency_table(
    blocks: Mapping[str, torch.nn.Module],
    example_inputs: ExampleInputs,
    *,
    warmup: int = 3,
    repeats: int = 10,
    device: str = "auto",
    num_threads: int | None = None,
    progress: bool = False,
) -> dict[str, LatencyStats]:
    """:func:`measure_module_latency` of each named block on the same inputs (a search latency table)."""
    return {
        key: measure_module_latency(
            block, example_inputs, warmup=warmup, repeats=repeats, device=device, num_threads=num_threads
        )
        for key, block in tqdm(blocks.items(), desc="block latency", disable=not progress)
    }


def _vocab_and_positions(model: torch.nn.Module) -> tuple[int, int | None]:
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if vocab is None:
        raise ElmEvalError(
            f"{type(model).__name__} has no config.vocab_size; cannot make token inputs for it"
        )
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(vocab), positions


def measure_latency(
    model: ModelSource, config: LatencyConfig | None = None, *, name: str | None = None
) -> LatencyResult:
    """Latency (and peak memory) of a whole HF model on random token ids for each batch x length pair."""
    config = config or LatencyConfig()
    module = load_model(model, config.head, require_head=False, trust_remote_code=config.trust_remote_code)
    if config.head == "base" and is_pretrained(module) and module.base_model is not module:
        # exactly what AutoModel gives for its directory
        module = reload_with_head(module, "base", trust_remote_code=config.trust_remote_code)
    vocab, positions = _vocab_and_positions(module)
    too_long = [n for n in config.seq_lengths if positions is not None and n > positions]
    if too_long:
        raise ElmEvalError(f"seq_lengths: {too_long} exceed the model's {positions} position embeddings")
    target = resolve_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    grid = [(b, n) for b in config.batch_sizes for n in config.seq_lengths]
    entries = []
    with torch_threads(config.num_threads) as threads, evaluation_mode(module, target):
        for batch_size, seq_length in tqdm(grid, desc="latency", disable=not config.progress):
            ids = torch.randint(vocab, (batch_size, seq_length), generator=generator)
            inputs = forward_kwargs(module, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
            call = _caller(module, _to_device(inputs, target))
            times = time_calls(call, warmup=config.warmup, repeats=config.repeats, device=target)
            memory = peak_memory_bytes(call, target) if config.measure_memory else None
            entries.append(
                LatencyEntry(
                    batch_size=batch_size,
                    seq_length=seq_length,
                    stats=_stats(times, config.warmup, target),
                    peak_memory_bytes=memory,
                )
            )
    return LatencyResult(
        model=model_name(model, name),
        device=str(target),
        num_threads=threads,
        num_parameters=count_parameters(module),
        parameter_bytes=parameter_bytes(module),
        peak_memory_method=CUDA_MEMORY_METHOD if target.type == "cuda" else CPU_MEMORY_METHOD,
        entries=entries,
    )
