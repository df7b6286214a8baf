"""The ``elm-train`` command: run the pipeline, one stage, or check a config.

With no arguments, ``elm-train run`` runs the embedded ``demo`` preset (Penn Treebank, the
pretrained MiniLM-L6 teacher, the tweet-sentiment task) in ``runs/demo``.
"""

from __future__ import annotations

import os

from elm_train.runtime.threads import SPIN_ENV

for _key, _value in SPIN_ENV.items():  # before anything loads torch's OpenMP runtime
    os.environ.setdefault(_key, _value)

import argparse
import contextlib
import json
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from elm_eval import ElmEvalError
from elm_search.constraints import ConstraintError
from elm_search.latency import LatencyTableError
from elm_search.state import SearchStateError
from elm_space import SpaceError
from elm_train.config import ConfigError, RunConfig, load_config
from elm_train.models.configuration_elm import ElmModelError
from elm_train.presets import PRESETS, preset
from elm_train.runtime.errors import ElmTrainError

if TYPE_CHECKING:
    from elm_train.pipeline import Run

USER_ERRORS: tuple[type[BaseException], ...] = (
    ElmTrainError,
    ElmModelError,
    ValidationError,
    ElmEvalError,
    SpaceError,
    ConstraintError,
    LatencyTableError,
    SearchStateError,
)
"""Bad input, reported on one line. Anything else is a bug and keeps its traceback."""


def _config(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config) if args.config else preset(args.preset)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--preset", default="demo", help=f"a built-in config: {', '.join(PRESETS)} (default: demo)"
    )
    group.add_argument("--config", type=Path, help="a YAML run config (may start from 'preset: NAME')")
    parser.add_argument("--run-dir", type=Path, help="where outputs go (default: runs/<config name>)")


def preflight(config: RunConfig) -> None:
    """Everything about a config that can be checked before a run directory is touched: the
    local corpus files, and the budgets when the vocabulary is known from the config."""
    from elm_train.data import check_corpus
    from elm_train.search.fitness import check_fitness_name
    from elm_train.search.searching import check_budgets

    check_corpus(config.data)
    check_fitness_name(config.search.fitness)  # after the config's plugins registered theirs
    for hub_id, mirror in config.hub_mirrors.items():
        if not Path(mirror).expanduser().is_dir():
            raise ConfigError(f"hub_mirrors: the local copy of {hub_id!r}, {mirror}, is not a directory")
    if config.tokenizer_source == "bpe":
        space = config.search_space(vocab_size=config.tokenizer.vocab_size)
        check_budgets(space, config.search, config.data.block_size)
    _check_layer_maps(config)


def _check_layer_maps(config: RunConfig) -> None:
    """Explicit layer maps against the teacher's depth, when its config is on this machine (a
    hub teacher is checked as soon as it loads)."""
    from elm_train.training.kd import layer_maps

    if not any(isinstance(m, list) for m in layer_maps(config).values()):
        return  # 'last' and 'first' fit any teacher
    from elm_train import teacher
    from elm_train.training.kd import check_layer_maps

    spec = config.teacher
    if spec.train is not None:
        depth: int | None = spec.train.layers
    else:
        assert spec.name_or_path is not None  # the config's validator says so
        depth = teacher.depth_on_disk(config.hub_source(spec.name_or_path))
    if depth is not None:
        check_layer_maps(config, depth)


def machine_check(config: RunConfig) -> None:
    """What this machine must be able to do for the config, checked before any stage runs (not
    by ``--plan`` or ``config validate``: a config may be written for another machine)."""
    if config.deepspeed.precision != "fp32":
        from elm_train.runtime.precision import check_precision

        check_precision(config.deepspeed.precision)


def _open(args: argparse.Namespace, config: RunConfig, stack: contextlib.ExitStack) -> Run:
    """The run directory, checked and locked for this process (rank 0 holds the lock for all)."""
    from elm_train.pipeline import Run, RunLayout  # torch loads only for commands that train
    from elm_train.runtime.distributed import rank
    from elm_train.runtime.lock import RunLock

    preflight(config)
    machine_check(config)
    run_dir = args.run_dir or Path("runs") / config.name
    layout = RunLayout(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir}: exists and is not a directory")
    resume = getattr(args, "resume", None)
    if resume and not layout.config.is_file():
        raise ConfigError(
            f"--resume: {run_dir} holds no run to resume (no {layout.config.name}); "
            "start the run without --resume, or name the right --run-dir"
        )
    if resume is False and layout.config.is_file():
        raise ConfigError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another --run-dir"
        )
    try:
        if rank() == 0:
            stack.enter_context(RunLock(run_dir))
        return Run.open(config, run_dir)
    except PermissionError as err:
        raise ConfigError(
            f"--run-dir {run_dir}: cannot write there ({err.strerror}: {err.filename})"
        ) from err


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.plan:
        from elm_train.pipeline.plan import format_plan, make_plan

        preflight(config)
        print(format_plan(make_plan(config, args.run_dir)), end="")
        return 0
    if args.dry_run:
        from elm_train.dryrun import dry_run

        machine_check(config)
        print(json.dumps(dry_run(config), indent=2))
        return 0
    from elm_train.pipeline import run_all
    from elm_train.runtime.distributed import rank

    with contextlib.ExitStack() as stack:
        run = _open(args, config, stack)
        info = run_all(run, echo=print if rank() == 0 else lambda _: None)
    if rank() == 0:
        print(f"[elm-train] report: {info['report']['report']}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from elm_train.pipeline import run_stage
    from elm_train.runtime.distributed import rank

    with contextlib.ExitStack() as stack:
        run = _open(args, _config(args), stack)
        info = run_stage(run, args.name, force=args.force, echo=print if rank() == 0 else lambda _: None)
    if rank() == 0:
        print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "validate":
        config = load_config(args.file)
        preflight(config)
        print(f"{args.file}: valid run config {config.name!r} (space {config.search_space().name})")
    else:
        print(_config(args).to_yaml(), end="")
    return 0


def _add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per process (default: this process's share of the cores that are not "
        "busy with other work when the run starts)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elm-train", description="ELM: elastic architecture search for efficient language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage (skipping finished ones)")
    _add_config_args(run)
    run.add_argument("--resume", action="store_true", help="continue the run already in --run-dir")
    _add_threads_arg(run)
    run.add_argument(
        "--plan",
        action="store_true",
        help="print each stage's steps, tokens and disk, and what will be downloaded; run nothing",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="build the full-size supernet and take two steps on random tokens",
    )
    run.set_defaults(func=cmd_run)
    from elm_train.pipeline.stages import STAGES  # the stage modules declare themselves

    listing = "\n".join(
        f"  {s.name:<10} {s.summary}" + (f" (settings: {', '.join(s.settings)})" if s.settings else "")
        for s in STAGES
    )
    stage = sub.add_parser(
        "stage",
        help="run one stage on an existing or new run directory",
        epilog=f"stages, in the order a run takes them:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stage.add_argument("name", help=", ".join(s.name for s in STAGES))
    _add_config_args(stage)
    stage.add_argument("--force", action="store_true", help="run the stage again even if it finished")
    _add_threads_arg(stage)
    stage.set_defaults(func=cmd_stage)
    config = sub.add_parser("config", help="validate a config file, or print a preset as YAML")
    config_sub = config.add_subparsers(dest="action", required=True)
    validate = config_sub.add_parser("validate")
    validate.add_argument("file", type=Path)
    show = config_sub.add_parser("show")
    _add_config_args(show)
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command. Run from the command line it owns its process and picks torch's threads
    (:mod:`elm_train.runtime.threads`); called with ``argv`` from Python it leaves the caller's thread
    setting alone unless ``--threads`` is given."""
    owns_process = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["run"]
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        threads = getattr(args, "threads", None)
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        if threads is not None or (owns_process and args.command in ("run", "stage")):
            from elm_train.runtime import threads as thread_policy

            thread_policy.configure(threads)
        return args.func(args)
    except USER_ERRORS as err:
        print(f"elm-train: error: {err}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print(
            "elm-train: internal error: the traceback above is a bug in the ELM toolkit, not in your "
            "input; please report it with the command you ran",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
