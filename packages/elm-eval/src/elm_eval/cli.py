"""The ``elm-eval`` command: ``lm``, ``task``, ``latency`` and ``report`` subcommands.

Options left out fall back to the pydantic config defaults, so defaults live in one place. Bad
input (missing files, unknown columns, label mismatches, empty data, invalid settings) ends with a
one-paragraph ``elm-eval: error: ...`` message and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from elm_eval.errors import ElmEvalError


def _given(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    """Config fields for the options the user actually gave (``mapping``: option dest -> field)."""
    return {field: getattr(args, dest) for dest, field in mapping.items() if getattr(args, dest) is not None}


def _read_texts(paths: Sequence[Path], objective: str) -> list[str]:
    texts: list[str] = []
    for path in paths:
        if not path.is_file():
            raise ElmEvalError(f"text file {str(path)!r} not found")
        content = path.read_text(encoding="utf-8")
        if objective == "causal-lm":
            texts.append(content)  # a long stream per file; files are joined with the config's joiner
        else:
            texts.extend(line for line in content.splitlines() if line.strip())
    return texts


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

    texts = _read_texts(args.text, args.objective)
    if args.max_texts is not None:
        texts = texts[: args.max_texts]
    common = _given(args, {"max_length": "max_length", "batch_size": "batch_size", "device": "device"})
    common["progress"] = not args.no_progress
    tokenizer = args.tokenizer or args.model
    if args.objective == "masked-lm":
        masking = MaskingConfig(**_given(args, {"mask_prob": "mask_prob", "seed": "seed"}))
        config = MaskedLMConfig(masking=masking, **common)
        result = masked_lm_perplexity(args.model, tokenizer, texts, config, name=args.name)
    else:
        config_c = CausalLMConfig(**common, **_given(args, {"stride": "stride"}))
        result = causal_lm_perplexity(args.model, tokenizer, texts, config_c, name=args.name)
    _emit(result, args.out)


def _run_task(args: argparse.Namespace) -> None:
    from elm_eval.finetune import FinetuneConfig, finetune
    from elm_eval.tasks import get_task, load_task_spec

    if (args.task is None) == (args.task_spec is None):
        raise ElmEvalError("give exactly one of --task NAME or --task-spec FILE")
    spec = get_task(args.task) if args.task else load_task_spec(args.task_spec)
    spec = spec.capped(args.max_train, args.max_validation, args.max_test)
    config = FinetuneConfig(
        progress=not args.no_progress,
        **_given(
            args,
            {
                "epochs": "epochs",
                "learning_rate": "learning_rate",
                "batch_size": "batch_size",
                "max_length": "max_length",
                "seed": "seed",
                "device": "device",
            },
        ),
    )
    result, model = finetune(args.model, args.tokenizer or args.model, spec, config, name=args.name)
    if args.save_model is not None:
        model.save_pretrained(args.save_model)
    _emit(result, args.out)


def _run_latency(args: argparse.Namespace) -> None:
    from elm_eval.latency import LatencyConfig, measure_latency

    config = LatencyConfig(
        measure_memory=not args.no_memory,
        progress=not args.no_progress,
        **_given(
            args,
            {
                "batch_sizes": "batch_sizes",
                "seq_lengths": "seq_lengths",
                "warmup": "warmup",
                "repeats": "repeats",
                "threads": "num_threads",
                "device": "device",
                "head": "head",
            },
        ),
    )
    _emit(measure_latency(args.model, config, name=args.name), args.out)


def _run_report(args: argparse.Namespace) -> None:
    from elm_eval.report import load_result, write_report

    results = [load_result(path) for path in args.results]
    files = write_report(results, args.out, latency_at=tuple(args.latency_at) if args.latency_at else None)
    print(files.summary_markdown.read_text(encoding="utf-8"))
    for path in files.model_dump().values():
        if path is not None:
            print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elm-eval", description="Evaluate any Hugging Face model.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="save_pretrained directory or hub id")
        p.add_argument("--name", help="label for reports (default: the directory name)")
        p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
        p.add_argument("--out", type=Path, help="folder for the result JSON and Markdown")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

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
        "--task", help="predefined task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, tweet-sentiment"
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
    task.add_argument("--save-model", type=Path, help="save the fine-tuned model here")
    task.set_defaults(run=_run_task)

    latency = sub.add_parser("latency", help="median latency and peak memory over batch sizes x lengths")
    model_options(latency)
    latency.add_argument("--batch-sizes", type=int, nargs="+")
    latency.add_argument("--seq-lengths", type=int, nargs="+")
    latency.add_argument("--warmup", type=int)
    latency.add_argument("--repeats", type=int)
    latency.add_argument("--threads", type=int, help="torch thread count (default: torch's current)")
    latency.add_argument("--head", choices=["base", "masked-lm", "causal-lm", "sequence-classification"])
    latency.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    latency.set_defaults(run=_run_latency)

    report = sub.add_parser("report", help="combine result JSON files into tables and plots")
    report.add_argument("results", type=Path, nargs="+", help="result JSON files from lm/task/latency")
    report.add_argument("--out", type=Path, required=True, help="folder for summary and PNG plots")
    report.add_argument("--latency-at", type=int, nargs=2, metavar=("BATCH", "SEQ"))
    report.set_defaults(run=_run_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return 0 on success and 2 on bad input (message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ElmEvalError, ValidationError) as exc:
        print(f"elm-eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
