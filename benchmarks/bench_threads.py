"""Benchmark 7: a stage alone and next to one other CPU-bound process, before and after the
thread policy (elm_train.runtime.threads).

"Before" is what elm-train did until now: torch's default (one thread per core) and OpenMP's
default spinning. "After" is the elm-train command's default: threads by the cores other work
leaves free when the run starts, and a short OpenMP spin. The other process is a pure-Python busy
loop on one core, started a few seconds before the stage, as a job already running would be.
Each setting runs the demo's supernet stage (40 steps, no growth) in a fresh process via the real
command line; the stage's own timing from the run's metrics is reported. The fair share next to one busy process on 2 cores is the stage's
time on one core alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import yaml

NAME = "threads"
CONFIG = {
    "preset": "demo",
    "supernet": {
        "optim": {"epochs": 1, "max_steps_per_epoch": 40, "lr": 5e-4},
        "dynamic": {"enabled": False},
    },
}
SMOKE = {
    "supernet": {"optim": {"epochs": 1, "max_steps_per_epoch": 4, "lr": 5e-4}, "dynamic": {"enabled": False}}
}


def stage_seconds(config: Path, run_dir: Path, env: dict[str, str], threads: list[str]) -> float:
    cmd = [sys.executable, "-m", "elm_train.cli", "stage", "supernet", "--config", str(config)]
    cmd += ["--run-dir", str(run_dir), *threads]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(
        r["seconds"] for r in reversed(rows) if r.get("event") == "stage_done" and r["stage"] == "supernet"
    )


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.add_argument("--warmup", type=float, default=5.0, help="seconds the busy process runs first")
    args = p.parse_args()
    info = _common.machine(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    config = work / "run.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, **(SMOKE if args.smoke else {})}))
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    cores = len(os.sched_getaffinity(0))
    settings = {
        # torch's default thread count and OpenMP's default spin, as before the policy
        "before": ({**base, "GOMP_SPINCOUNT": "300000"}, ["--threads", str(cores)]),
        "after": (base, []),  # the command's own default
        "one_thread": (base, ["--threads", "1"]),  # the fair-share yardstick
    }
    subprocess.run(  # tokenise once, so each timed stage finds its blocks
        [sys.executable, "-m", "elm_train.cli", "stage", "data", "--config", str(config), "--run-dir", str(work / "data")],
        check=True, capture_output=True,
    )  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    for load in ("alone", "busy"):
        busy = None
        if load == "busy":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(2 if args.smoke else args.warmup)
        try:
            for name, (env, threads) in settings.items():
                run_dir = work / f"{name}-{load}"
                subprocess.run(["cp", "-r", str(work / "data"), str(run_dir)], check=True)
                results.setdefault(name, {})[load] = stage_seconds(config, run_dir, env, threads)
                print(name, load, results[name][load], flush=True)
        finally:
            if busy is not None:
                busy.kill()
    fair = results["one_thread"]["alone"]
    summary = {
        name: {
            **times,
            "busy_over_alone": round(times["busy"] / times["alone"], 2),
            "busy_over_fair_share": round(times["busy"] / fair, 2),
        }
        for name, times in results.items()
    }
    result = {**_common.provenance(NAME, args, info), "config": CONFIG, "cores": cores, "results": summary}
    rows = "\n".join(
        f"| {name} | {s['alone']:.1f} | {s['busy']:.1f} | {s['busy_over_alone']} | {s['busy_over_fair_share']} |"
        for name, s in summary.items()
    )
    text = (
        "Seconds of the demo's supernet stage (40 steps) alone and next to one CPU-bound process.\n\n"
        "| setting | alone | busy | busy / alone | busy / fair share |\n|---|---|---|---|---|\n" + rows
    )
    _common.write(_common.output_path(args, NAME), result, text)


if __name__ == "__main__":
    main()
