"""Deployment files for any HF model: an ONNX graph, its int8 twin, and an ONNX Runtime wrapper.

``export_onnx`` traces the model with the legacy TorchScript exporter (``dynamo=False``: seconds
on a small encoder, no onnxscript build of the graph) with dynamic batch and sequence axes and the
head the directory was saved with (``masked-lm``, ``causal-lm``, ``sequence-classification``;
``base`` exports the last hidden state). The example batch it traces on is *padded* (its second row
ends in padding): a model that skips its attention mask when the mask is all ones (ELM does, to
save the work) would otherwise be traced without the mask, and the graph would ignore padding.
After export the graph is run on the example batch and on a batch of another shape, and the largest
absolute difference of its output from PyTorch's is recorded (and must be below ``tolerance``).

``quantize_int8`` is ONNX Runtime's dynamic quantisation: int8 weights for the matrix
multiplications, activations quantised per call; no calibration data. ``OrtModel`` wraps an
``InferenceSession`` as a torch module returning ``.logits``, so the existing evaluators
(``masked_lm_perplexity``, ``causal_lm_perplexity``, task prediction) score an ONNX file by the same
code as the PyTorch model. ``onnx`` and ``onnxruntime`` are the ``elm-eval[onnx]`` extra.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from elm_eval.errors import ElmEvalError
from elm_eval.latency import (
    LatencyConfig,
    _stats,
    count_parameters,
    measure_latency,
    time_calls,
    torch_threads,
)
from elm_eval.loading import Head, ModelSource, load_model, model_name
from elm_eval.results import LatencyEntry, LatencyResult

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
META_FILE = "onnx_export.json"
ORT_MEMORY_METHOD = "not measured: ONNX Runtime's allocations are invisible to torch's profiler"
RUNTIMES = ("pytorch-fp32", "onnxruntime-fp32", "onnxruntime-int8")


class OnnxExport(BaseModel):
    """What :func:`export_onnx` wrote, and how closely the fp32 graph reproduces PyTorch."""

    model_config = ConfigDict(extra="forbid")
    model: str
    head: Head
    directory: Path
    fp32: Path
    int8: Path | None
    inputs: list[str]
    opset: int
    num_parameters: int
    vocab_size: int
    max_positions: int | None
    max_abs_diff: float = Field(description="largest |ONNX fp32 - PyTorch| output over the check batches")
    export_seconds: float

    def files(self) -> dict[str, Path]:
        out = {"onnx-fp32": self.fp32}
        if self.int8 is not None:
            out["onnx-int8"] = self.int8
        return out


def _require_runtime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # the optional extra is missing
        raise ElmEvalError("ONNX export needs onnx and onnxruntime: pip install 'elm-eval[onnx]'") from exc
    return onnxruntime


class _LogitsOnly(torch.nn.Module):
    """The model with keyword inputs in a fixed order and one tensor out (what tracing needs)."""

    def __init__(self, model: torch.nn.Module, names: list[str], head: Head) -> None:
        super().__init__()
        self.model, self.names, self.head = model, names, head
        params = inspect.signature(model.forward).parameters
        self.extra = {"use_cache": False} if "use_cache" in params else {}

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, tensors, strict=True)), **self.extra)
        return out.last_hidden_state if self.head == "base" else out.logits


def _input_names(model: torch.nn.Module) -> list[str]:
    """input_ids and attention_mask, and token_type_ids where the model embeds segments."""
    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params and (getattr(model.config, "type_vocab_size", 0) or 0) > 1:
        names.append("token_type_ids")
    return names


def _example(names: list[str], vocab: int, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids; every row but the first ends in padding (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(5, vocab - 1), vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, length - 1 - (row % max(1, length - 1)) :] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    if batch > 1:
        values["token_type_ids"][-1, length // 2 :] = 1
    return {name: values[name] for name in names}


def _session(path: Path, num_threads: int | None = None) -> Any:
    ort = _require_runtime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_diff(session: Any, wrapped: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    with torch.inference_mode():
        expected = wrapped(*batch.values()).float().numpy()
    feeds = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    got = session.run(None, feeds)[0]
    if got.shape != expected.shape:
        raise ElmEvalError(f"ONNX export: output shape {got.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(got - expected).max())


def quantize_int8(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``source`` (weights int8, activations per call)."""
    _require_runtime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs each tensor it leaves in float to the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(target)


def export_onnx(
    model: ModelSource,
    out_dir: str | os.PathLike[str],
    head: Head = "masked-lm",
    *,
    quantize: bool = True,
    opset: int = 17,
    tolerance: float = 1e-4,
    trust_remote_code: bool = False,
    name: str | None = None,
) -> OnnxExport:
    """Write ``model.onnx`` (and ``model.int8.onnx``) plus ``onnx_export.json`` into ``out_dir``.

    The files are written to a temporary folder beside ``out_dir`` and moved into place, so a
    failed export leaves no half-written graph. ElmEvalError when the fp32 graph differs from
    PyTorch by more than ``tolerance`` on the check batches.
    """
    _require_runtime()
    module = load_model(model, head, require_head=head != "base", trust_remote_code=trust_remote_code)
    module = module.eval().to("cpu")
    config = module.config
    names = _input_names(module)
    wrapped = _LogitsOnly(module, names, head).eval()
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    vocab = int(config.vocab_size)
    length = min(8, positions or 8)
    example = _example(names, vocab, 2, length, seed=0)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["output"] = {0: "batch"} if head == "sequence-classification" else {0: "batch", 1: "sequence"}
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # the tracer warns of every Python branch on a tensor; the check batches below decide
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                wrapped,
                tuple(example.values()),
                str(tmp / FP32_FILE),
                input_names=names,
                output_names=["output"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        seconds = time.perf_counter() - started
        session = _session(tmp / FP32_FILE)
        other = _example(names, vocab, 3, min(length + 5, positions or length + 5), seed=1)
        diff = max(_max_diff(session, wrapped, example), _max_diff(session, wrapped, other))
        if not diff <= tolerance:
            raise ElmEvalError(
                f"ONNX export of {model_name(model, name)}: outputs differ from PyTorch by {diff:.3g} "
                f"(> {tolerance}); the graph does not reproduce the model"
            )
        if quantize:
            quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE)
        graph_inputs = [i.name for i in session.get_inputs()]
        record = OnnxExport(
            model=model_name(model, name),
            head=head,
            directory=out.resolve(),
            fp32=out.resolve() / FP32_FILE,
            int8=out.resolve() / INT8_FILE if quantize else None,
            inputs=graph_inputs,
            opset=opset,
            num_parameters=count_parameters(module),
            vocab_size=vocab,
            max_positions=positions,
            max_abs_diff=diff,
            export_seconds=seconds,
        )
        (tmp / META_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for file in (FP32_FILE, INT8_FILE, META_FILE):  # the record last: it names complete files
            if (tmp / file).is_file():
                os.replace(tmp / file, out / file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def read_export(directory: str | os.PathLike[str]) -> OnnxExport:
    """The record :func:`export_onnx` left in ``directory``."""
    path = Path(directory) / META_FILE
    try:
        return OnnxExport.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ElmEvalError(f"{path}: not an elm-eval ONNX export ({exc})") from exc


class OrtModel(torch.nn.Module):
    """An ONNX file behind a torch-module face: ``model(input_ids=..., attention_mask=...).logits``.

    It has no parameters; ``.config`` carries what the evaluators check (vocabulary, positions), so
    ``masked_lm_perplexity(OrtModel(...), ...)`` and friends run unchanged. Inputs the graph does
    not take are dropped; outputs come back as CPU float tensors.
    """

    def __init__(self, export: OnnxExport, precision: str = "fp32", num_threads: int | None = None) -> None:
        super().__init__()
        path = export.fp32 if precision == "fp32" else export.int8
        if path is None or not Path(path).is_file():
            raise ElmEvalError(f"{export.directory}: no {precision} ONNX file")
        self.export, self.precision = export, precision
        self.session = _session(Path(path), num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = SimpleNamespace(
            vocab_size=export.vocab_size, max_position_embeddings=export.max_positions
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SimpleNamespace:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if given["attention_mask"] is None:
            given["attention_mask"] = torch.ones_like(input_ids)
        if given["token_type_ids"] is None:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feeds = {n: given[n].detach().cpu().to(torch.int64).numpy() for n in self.input_names}
        logits = torch.from_numpy(self.session.run(None, feeds)[0])
        return SimpleNamespace(logits=logits.to(input_ids.device))


def _file_parameter_bytes(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(len(t.raw_data) for t in graph.initializer)


def measure_onnx_latency(
    export: OnnxExport,
    config: LatencyConfig | None = None,
    precision: str = "fp32",
    *,
    name: str | None = None,
) -> LatencyResult:
    """Latency of the ONNX file on ONNX Runtime's CPU provider, by :func:`measure_latency`'s protocol:
    the same grid, seed, random ids, all-ones mask, warm-up, repeats and statistics. ONNX Runtime
    gets as many intra-op threads as torch has (``config.num_threads``)."""
    config = config or LatencyConfig()
    if config.device not in ("auto", "cpu"):
        raise ElmEvalError(f"device {config.device!r}: ONNX latency is measured on the CPU provider")
    model = OrtModel(export, precision, config.num_threads)
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(config.seed)
    entries = []
    with torch_threads(config.num_threads) as threads:
        for batch_size in config.batch_sizes:
            for seq_length in config.seq_lengths:
                if export.max_positions is not None and seq_length > export.max_positions:
                    raise ElmEvalError(
                        f"seq_lengths: {seq_length} exceeds the model's {export.max_positions} position embeddings"
                    )
                ids = torch.randint(export.vocab_size, (batch_size, seq_length), generator=generator)
                values = {
                    "input_ids": ids,
                    "attention_mask": torch.ones_like(ids),
                    "token_type_ids": torch.zeros_like(ids),
                }
                feeds = {n: values[n].numpy() for n in model.input_names}
                times = time_calls(
                    lambda feeds=feeds: model.session.run(None, feeds),
                    warmup=config.warmup,
                    repeats=config.repeats,
                    device=cpu,
                )
                entries.append(
                    LatencyEntry(
                        batch_size=batch_size, seq_length=seq_length, stats=_stats(times, config.warmup, cpu)
                    )
                )
    path = export.fp32 if precision == "fp32" else export.int8
    assert path is not None  # OrtModel checked it
    return LatencyResult(
        model=name or f"{export.model} (onnxruntime {precision})",
        runtime=f"onnxruntime-{precision}",
        device="cpu",
        num_threads=threads,
        num_parameters=export.num_parameters,
        parameter_bytes=_file_parameter_bytes(Path(path)),
        peak_memory_method=ORT_MEMORY_METHOD,
        entries=entries,
    )


def compare_runtimes(
    model: ModelSource, export: OnnxExport, config: LatencyConfig | None = None, *, name: str | None = None
) -> list[LatencyResult]:
    """Eager PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8 latency of the exported head, in
    that order, by one protocol (the PyTorch model is timed with the head that was exported)."""
    config = (config or LatencyConfig()).model_copy(update={"head": export.head})
    if config.device not in ("auto", "cpu"):
        raise ElmEvalError(f"device {config.device!r}: the runtime comparison runs on the CPU")
    config = config.model_copy(update={"device": "cpu"})
    label = name or export.model
    results = [measure_latency(model, config, name=label)]
    results.append(measure_onnx_latency(export, config, "fp32", name=f"{label} (onnxruntime fp32)"))
    if export.int8 is not None:
        results.append(measure_onnx_latency(export, config, "int8", name=f"{label} (onnxruntime int8)"))
    return results


def export_summary(export: OnnxExport) -> dict[str, Any]:
    """A JSON-ready summary (paths as strings) for reports and model cards."""
    return json.loads(export.model_dump_json())
