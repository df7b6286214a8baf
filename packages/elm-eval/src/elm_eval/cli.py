"""The ``elm-eval`` command: ``lm``, ``task``, ``qa``, ``latency``, ``onnx`` and ``report`` subcommands.

``qa`` is its own command rather than a kind of ``task``: a QA task's rows, model head,
features (windows over the context), post-processing and metric all differ from a sentence
classifier's, so it has its own spec (:class:`elm_eval.QATaskSpec`) and options.

Options left out fall back to the pydantic config defaults, so defaults live in one place. Bad
input (missing or unreadable files, unknown columns, label mismatches, empty data, invalid settings,
a model and tokenizer that do not fit) ends with one line, ``elm-eval <command>: error: <file or
option>: <what is wrong>``, and exit status 2, not a traceback. Whatever can be checked before the
work starts (options, output folders, data files, the model against the tokenizer and
``--max-length``) is checked first, so a long fine-tuning run never fails at its end on a bad
``--out``. Only ElmEvalError (and pydantic's ValidationError) are caught: a bug still shows its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from elm_eval.errors import ElmEvalError, describe_validation_error, one_line
from elm_eval.files import check_output_dir, read_text

#: Files whose presence means a folder already holds a saved model.
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _config(cls: type[BaseModel], args: argparse.Namespace, fields: dict[str, str], **fixed: Any) -> Any:
    """``cls`` built from the options the user gave (``fields``: config field -> option dest) and
    ``fixed`` values; a validation error names the option (``--max-length: ...``)."""
    values = {field: getattr(args, dest) for field, dest in fields.items() if getattr(args, dest) is not None}
    try:
        return cls(**values, **fixed)
    except ValidationError as exc:
        names = {field: _option(dest) for field, dest in fields.items()}
        raise ElmEvalError(describe_validation_error(exc, names)) from None


def _positive(args: argparse.Namespace, *dests: str) -> None:
    for dest in dests:
        value = getattr(args, dest)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is not None and item < 1:
                raise ElmEvalError(f"{_option(dest)}: must be at least 1 (got {item})")


def _read_texts(paths: Sequence[Path], objective: str, encoding: str) -> list[str]:
    texts: list[str] = []
    for path in paths:
        content = read_text(path, "text file", encoding, hint="; pass --encoding (e.g. latin-1) to read it")
        if objective == "causal-lm":
            texts.append(content)  # a long stream per file; files are joined with the config's joiner
        else:
            texts.extend(line for line in content.splitlines() if line.strip())
    return texts


def _check_out(args: argparse.Namespace) -> None:
    if getattr(args, "out", None) is not None:
        check_output_dir(args.out, "--out")


def _check_save_model(target: Path, inputs: Sequence[str | None], overwrite: bool) -> None:
    """Refuse, before fine-tuning, a --save-model folder that would overwrite an input model (never
    allowed) or a model saved earlier (allowed with --overwrite)."""
    resolved = target.expanduser().resolve()
    for source in inputs:
        folder = Path(source).expanduser() if source else None
        if folder is not None and folder.is_dir() and folder.resolve() == resolved:
            raise ElmEvalError(
                f"--save-model {target}: this is the input model folder; saving the fine-tuned classifier "
                "there would replace its weights, so choose another folder"
            )
    check_output_dir(target, "--save-model")
    held = [name for name in MODEL_FILES if (target / name).exists()] if target.is_dir() else []
    if held and not overwrite:
        raise ElmEvalError(
            f"--save-model {target}: already holds a saved model ({', '.join(held)}); "
            "pass --overwrite to replace it"
        )


def _emit(result: Any, out: Path | None) -> None:
    from elm_eval.report import result_markdown, write_result

    print(result_markdown(result))
    if out is not None:
        json_path, md_path = write_result(result, out)
        print(f"wrote {json_path} and {md_path}")


def _run_lm(args: argparse.Namespace) -> None:
    from elm_eval.lm import (
        CausalLMConfig,
        MaskedLMConfig,
        MaskingConfig,
        causal_lm_perplexity,
        masked_lm_perplexity,
    )

    _positive(args, "max_texts")
    common = {"max_length": "max_length", "batch_size": "batch_size", "device": "device"}
    run = {"progress": not args.no_progress, "trust_remote_code": args.trust_remote_code}
    if args.objective == "masked-lm":
        masking = _config(MaskingConfig, args, {"mask_prob": "mask_prob", "seed": "seed"})
        config: Any = _config(MaskedLMConfig, args, common, masking=masking, **run)
    else:
        config = _config(CausalLMConfig, args, {**common, "stride": "stride"}, **run)
    _check_out(args)
    texts = _read_texts(args.text, args.objective, args.encoding)
    if args.max_texts is not None:
        texts = texts[: args.max_texts]
    tokenizer = args.tokenizer or args.model
    if args.objective == "masked-lm":
        result = masked_lm_perplexity(args.model, tokenizer, texts, config, name=args.name)
    else:
        result = causal_lm_perplexity(args.model, tokenizer, texts, config, name=args.name)
    _emit(result, args.out)


def _run_task(args: argparse.Namespace) -> None:
    from elm_eval.finetune import FinetuneConfig, finetune
    from elm_eval.tasks import get_task, load_task_spec

    if (args.task is None) == (args.task_spec is None):
        raise ElmEvalError("give exactly one of --task NAME or --task-spec FILE")
    _positive(args, "max_train", "max_validation", "max_test")
    fields = {
        "epochs": "epochs",
        "learning_rate": "learning_rate",
        "batch_size": "batch_size",
        "max_length": "max_length",
        "seed": "seed",
        "device": "device",
    }
    config = _config(
        FinetuneConfig, args, fields, progress=not args.no_progress, trust_remote_code=args.trust_remote_code
    )
    _check_out(args)
    if args.save_model is not None:
        _check_save_model(args.save_model, [args.model, args.tokenizer], args.overwrite)
    spec = get_task(args.task) if args.task else load_task_spec(args.task_spec)
    spec = spec.capped(args.max_train, args.max_validation, args.max_test)
    result, model = finetune(args.model, args.tokenizer or args.model, spec, config, name=args.name)
    if args.save_model is not None:
        try:
            model.save_pretrained(args.save_model)
        except OSError as exc:
            raise ElmEvalError(f"--save-model {args.save_model}: cannot save: {one_line(exc)}") from None
    _emit(result, args.out)


def _run_qa(args: argparse.Namespace) -> None:
    from elm_eval.qa import QAConfig, finetune_qa
    from elm_eval.qa_data import get_qa_task, load_qa_task_spec

    if (args.task is None) == (args.task_spec is None):
        raise ElmEvalError("give exactly one of --task squad|squad_v2 or --task-spec FILE")
    _positive(args, "max_train", "max_validation")
    fields = {
        name: name
        for name in (
            "epochs",
            "learning_rate",
            "batch_size",
            "max_length",
            "doc_stride",
            "max_query_length",
            "max_answer_length",
            "n_best",
            "seed",
            "device",
        )
    }
    config = _config(
        QAConfig, args, fields, progress=not args.no_progress, trust_remote_code=args.trust_remote_code
    )
    _check_out(args)
    if args.save_model is not None:
        _check_save_model(args.save_model, [args.model, args.tokenizer], args.overwrite)
    spec = get_qa_task(args.task) if args.task else load_qa_task_spec(args.task_spec)
    spec = spec.capped(args.max_train, args.max_validation)
    result, model = finetune_qa(args.model, args.tokenizer or args.model, spec, config, name=args.name)
    if args.save_model is not None:
        try:
            model.save_pretrained(args.save_model)
        except OSError as exc:
            raise ElmEvalError(f"--save-model {args.save_model}: cannot save: {one_line(exc)}") from None
    _emit(result, args.out)


def _run_latency(args: argparse.Namespace) -> None:
    from elm_eval.latency import LatencyConfig, measure_latency

    fields = {
        "batch_sizes": "batch_sizes",
        "seq_lengths": "seq_lengths",
        "warmup": "warmup",
        "repeats": "repeats",
        "num_threads": "threads",
        "device": "device",
        "head": "head",
    }
    config = _config(
        LatencyConfig,
        args,
        fields,
        measure_memory=not args.no_memory,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
    )
    _check_out(args)
    if not args.onnx:
        _emit(measure_latency(args.model, config, name=args.name), args.out)
        return
    import tempfile

    from elm_eval.onnx_export import compare_runtimes, export_onnx

    head = args.head or "base"
    with tempfile.TemporaryDirectory(prefix="elm-eval-onnx-") as tmp:
        target = args.onnx_dir or Path(tmp) / "onnx"
        export = export_onnx(
            args.model, target, head, trust_remote_code=args.trust_remote_code, name=args.name
        )
        print(f"ONNX export: {export.fp32} (max |ONNX - PyTorch| {export.max_abs_diff:.2e}), {export.int8}")
        for result in compare_runtimes(args.model, export, config, name=args.name):
            _emit(result, args.out)


def _run_onnx(args: argparse.Namespace) -> None:
    from elm_eval.onnx_export import export_onnx

    check_output_dir(args.out, "--out")
    export = export_onnx(
        args.model,
        args.out,
        args.head,
        quantize=not args.no_int8,
        trust_remote_code=args.trust_remote_code,
        name=args.name,
    )
    print(export.model_dump_json(indent=2))


def _run_report(args: argparse.Namespace) -> None:
    from elm_eval.report import load_result, write_report

    _positive(args, "latency_at")
    _check_out(args)
    results = [load_result(path) for path in args.results]
    files = write_report(results, args.out, latency_at=tuple(args.latency_at) if args.latency_at else None)
    print(files.summary_markdown.read_text(encoding="utf-8"))
    for path in files.model_dump().values():
        if path is not None:
            print(f"wrote {path}")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``elm-eval task: error: argument --epochs: ...``), status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="elm-eval", description="Evaluate any Hugging Face model.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="save_pretrained directory or hub id")
        p.add_argument("--name", help="label for reports (default: the directory name)")
        p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
        p.add_argument("--out", type=Path, help="folder for the result JSON and Markdown")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        p.add_argument(
            "--trust-remote-code",
            action="store_true",
            help="run the modelling code saved in the model folder (only needed for a custom model type "
            "no installed package registers; ELM models load without it where elm-train is installed)",
        )

    lm = sub.add_parser("lm", help="masked-LM or causal-LM perplexity on text files")
    model_options(lm)
    lm.add_argument("--tokenizer", help="tokenizer directory or hub id (default: the model's)")
    lm.add_argument("--objective", choices=["masked-lm", "causal-lm"], required=True)
    lm.add_argument(
        "--text",
        type=Path,
        nargs="+",
        required=True,
        help="masked-LM: one text per line; causal-LM: one stream per file",
    )
    lm.add_argument("--encoding", default="utf-8", help="text files' encoding (default utf-8)")
    lm.add_argument("--max-texts", type=int, help="use only the first N texts")
    lm.add_argument("--max-length", type=int, help="tokens per chunk (masked) or window (causal)")
    lm.add_argument("--stride", type=int, help="causal-LM window stride")
    lm.add_argument("--batch-size", type=int)
    lm.add_argument("--mask-prob", type=float, help="masked-LM: fraction of tokens scored (default 0.15)")
    lm.add_argument("--seed", type=int, help="masked-LM: masking seed")
    lm.set_defaults(run=_run_lm)

    task = sub.add_parser("task", help="fine-tune on a GLUE-style task and score it")
    model_options(task)
    task.add_argument("--tokenizer", help="tokenizer directory or hub id (default: the model's)")
    task.add_argument(
        "--task",
        help="predefined task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, tweet-sentiment, "
        "ptb-word-order",
    )
    task.add_argument("--task-spec", type=Path, help="YAML/JSON TaskSpec file for a task of your own")
    task.add_argument("--max-train", type=int, help="cap the train split (seeded subset)")
    task.add_argument("--max-validation", type=int, help="cap the validation split")
    task.add_argument("--max-test", type=int, help="cap the test split")
    task.add_argument("--epochs", type=int)
    task.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float)
    task.add_argument("--batch-size", type=int)
    task.add_argument("--max-length", type=int)
    task.add_argument("--seed", type=int)
    task.add_argument(
        "--save-model", type=Path, help="save the fine-tuned model here (never the input model's folder)"
    )
    task.add_argument(
        "--overwrite", action="store_true", help="let --save-model replace a model saved there earlier"
    )
    task.set_defaults(run=_run_task)

    qa = sub.add_parser("qa", help="fine-tune extractive question answering (SQuAD) and score EM/F1")
    model_options(qa)
    qa.add_argument("--tokenizer", help="tokenizer directory or hub id (default: the model's; a fast one)")
    qa.add_argument("--task", help="predefined task: squad (v1.1) or squad_v2")
    qa.add_argument("--task-spec", type=Path, help="YAML/JSON QATaskSpec file (local JSON/JSON-lines data)")
    qa.add_argument("--max-train", type=int, help="cap the train split (seeded subset of questions)")
    qa.add_argument("--max-validation", type=int, help="cap the validation split")
    qa.add_argument("--epochs", type=int)
    qa.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float)
    qa.add_argument("--batch-size", type=int)
    qa.add_argument("--max-length", type=int, help="tokens per window (default 384)")
    qa.add_argument("--doc-stride", type=int, help="tokens two windows of one context share (default 128)")
    qa.add_argument("--max-query-length", type=int, help="questions are cut to this many tokens (default 64)")
    qa.add_argument("--max-answer-length", type=int, help="longest answer in tokens (default 30)")
    qa.add_argument("--n-best", type=int, help="candidate spans kept per question (default 20)")
    qa.add_argument("--seed", type=int)
    qa.add_argument(
        "--save-model", type=Path, help="save the fine-tuned model here (never the input model's folder)"
    )
    qa.add_argument(
        "--overwrite", action="store_true", help="let --save-model replace a model saved there earlier"
    )
    qa.set_defaults(run=_run_qa)

    latency = sub.add_parser("latency", help="median latency and peak memory over batch sizes x lengths")
    model_options(latency)
    latency.add_argument("--batch-sizes", type=int, nargs="+")
    latency.add_argument("--seq-lengths", type=int, nargs="+")
    latency.add_argument("--warmup", type=int)
    latency.add_argument("--repeats", type=int)
    latency.add_argument("--threads", type=int, help="torch thread count (default: torch's current)")
    latency.add_argument("--head", choices=["base", "masked-lm", "causal-lm", "sequence-classification"])
    latency.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    latency.add_argument(
        "--onnx",
        action="store_true",
        help="also export the model (with --head) to ONNX fp32 and int8 and time ONNX Runtime beside "
        "eager PyTorch, by the same protocol (needs elm-eval[onnx])",
    )
    latency.add_argument(
        "--onnx-dir", type=Path, help="keep the ONNX files here (default: a temporary folder)"
    )
    latency.set_defaults(run=_run_latency)

    onnx = sub.add_parser("onnx", help="export to ONNX (dynamic batch and sequence axes) and int8 ONNX")
    onnx.add_argument("--model", required=True, help="save_pretrained directory or hub id")
    onnx.add_argument("--out", type=Path, required=True, help="folder for model.onnx, model.int8.onnx")
    onnx.add_argument(
        "--head", choices=["base", "masked-lm", "causal-lm", "sequence-classification"], default="masked-lm"
    )
    onnx.add_argument("--name", help="label for reports (default: the directory name)")
    onnx.add_argument("--no-int8", action="store_true", help="skip the int8 quantised copy")
    onnx.add_argument(
        "--trust-remote-code", action="store_true", help="run modelling code saved in the folder"
    )
    onnx.set_defaults(run=_run_onnx)

    report = sub.add_parser("report", help="combine result JSON files into tables and plots")
    report.add_argument("results", type=Path, nargs="+", help="result JSON files from lm/task/latency")
    report.add_argument("--out", type=Path, required=True, help="folder for summary and PNG plots")
    report.add_argument("--latency-at", type=int, nargs=2, metavar=("BATCH", "SEQ"))
    report.set_defaults(run=_run_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return 0 on success and 2 on bad input (one line on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        args.run(args)
    except ElmEvalError as exc:
        print(f"elm-eval {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"elm-eval {args.command}: error: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
