"""How many files and returns a reader meets following `elm-train stage search` (issue 27).

Usage (with the test environment's python, e.g. `hatch run hatch-test.py3.11:python`):
  python scripts/reading_path.py --repo . --run-dir /tmp/tiny-run --out reading.json
JSON goes to stdout and --out; a summary and the stage's own output to stderr.

--run-dir: a finished `elm-train run --preset tiny --threads 1` directory (made here if it does not
exist; never changed), or one with at least data, teacher, supernet and multitask done. Each trace
runs in a fresh subprocess (the repo's packages/*/src first on sys.path) on a temporary copy of it
without the search stage and the ones after, so that `elm-train stage search` re-runs the search,
in-process under sys.setprofile.
A reader reads each function once: only the FIRST call of each code object counts, in call order;
consecutive functions in one file are one stop; returns = stops - distinct files.
Not counted: code run while importing (module and class bodies), lambdas and comprehensions (read
with the function around them), generated code (its file is not under the measured packages), and
validators that pydantic calls while building or dumping a model, with everything they call.
Variants, for scope elm_train and for all five packages: "all" = everything called under
cli.main; "K=n" = the measured frames above the search stage's `execute` (cli, runner) plus the
functions at most n measured frames below it (frames of other packages/libraries are passed
through, not counted); "K=unlimited" = the same without the depth limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

PACKAGES = ("elm_space", "elm_distill", "elm_search", "elm_eval", "elm_train")
EARLIER_STAGES = ("data", "teacher", "supernet", "multitask")  # kept; the search reads them
LATER_STAGES = ("search", "heads", "retrain", "tasks", "evaluate", "report", "results")
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
SCOPES = ("elm_train", "all-packages")
DEPTHS = (1, 2, 3, None)  # None: unlimited
PYDANTIC = os.sep + "pydantic" + os.sep


def src_dirs(repo: Path) -> list[str]:
    return [str(repo / "packages" / p.replace("_", "-") / "src") for p in PACKAGES]


def trace_child(repo: Path, run_dir: str, scope: str, out: str) -> None:
    """In a fresh process: run `stage search` under sys.setprofile and write the call records."""
    roots = [
        os.path.join(s, p) + os.sep
        for s, p in zip(src_dirs(repo), PACKAGES, strict=True)
        if scope != "elm_train" or p == "elm_train"
    ]
    from elm_train import cli

    assert cli.__file__.startswith(str(repo) + os.sep), f"elm_train was imported from {cli.__file__}"
    names: dict = {}  # code -> "pkg/module.py" when measured, else None
    best: dict = {}  # code -> smallest depth below execute recorded so far (None: never below it)
    records: list = []  # [key, file, depth], when a code is first called or first called shallower
    path: list = []  # keys of the measured frames from cli.main down to execute
    state = {"in_execute": False}

    def name(code):
        if code not in names:
            f = code.co_filename
            root = next((r for r in roots if f.startswith(r)), None)
            measured = root is not None and not code.co_name.startswith("<")
            names[code] = os.path.basename(root[:-1]) + "/" + f[len(root) :] if measured else None
        return names[code]

    def key(code) -> str:
        return f"{name(code)}:{code.co_firstlineno}:{code.co_qualname}"

    def is_execute(code) -> bool:
        return code.co_name == "execute" and code.co_filename.replace(os.sep, "/").endswith(
            "stages/search.py"
        )

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "return" and is_execute(code):
            state["in_execute"] = False
        if event != "call" or name(code) is None:
            return
        if code in best and (not state["in_execute"] or (best[code] is not None and best[code] <= 1)):
            return  # this call cannot be a first one nor a shallower one
        depth, f = 0, frame  # depth: measured frames from this one up to execute
        while f is not stop:
            if f.f_code.co_name == "<module>":
                return  # import-time code
            if name(f.f_code) is not None and PYDANTIC in f.f_back.f_code.co_filename:
                return  # a validator (or what it calls) that pydantic runs, not a call a reader follows
            if is_execute(f.f_code):
                break
            depth += name(f.f_code) is not None
            f = f.f_back
        else:
            depth = None
        if is_execute(code):
            state["in_execute"] = True
            if not path:  # the first time: the measured frames from cli.main down to execute
                f = frame
                while f is not stop:
                    if name(f.f_code) is not None:
                        path.insert(0, key(f.f_code))
                    f = f.f_back
        if code in best and (depth is None or (best[code] is not None and best[code] <= depth)):
            return
        best[code] = depth
        records.append([key(code), name(code), depth])

    stop = sys._getframe()
    sys.setprofile(profile)
    try:
        rc = cli.main(["stage", "search", "--preset", "tiny", "--run-dir", run_dir, "--threads", "1"])
    finally:
        sys.setprofile(None)
    assert rc == 0 and path, f"stage search failed (exit {rc}) or never reached the search's execute"
    Path(out).write_text(json.dumps({"records": records, "path": path}))


def variant(records: list, path: set, limit: int) -> dict:
    """First call of each kept function, in order; runs of one file collapsed into stops.
    Kept: with ``path`` empty everything, else the path's functions and those <= limit below it."""
    seen: set = set()
    stops: list = []  # [file, [functions read there]]
    for k, file, depth in records:
        keep = not path or k in path or (depth is not None and depth <= limit)
        if k in seen or not keep:
            continue
        seen.add(k)
        if not stops or stops[-1][0] != file:
            stops.append([file, []])
        stops[-1][1].append(k.rsplit(":", 1)[1])
    entries = Counter(file for file, _ in stops)
    return {
        "stops": len(stops),
        "files": len(entries),
        "returns": len(stops) - len(entries),
        "functions": len(seen),
        "entries": dict(entries),  # file -> times entered, in order of first entry
        "sequence": [f"{file}: {', '.join(fns)}" for file, fns in stops],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=SCOPES, help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repo, run_dir = args.repo.resolve(), args.run_dir.resolve()
    if args.child:
        return trace_child(repo, str(run_dir), args.child, args.records)
    path = os.pathsep.join(src_dirs(repo) + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = {**os.environ, **OFFLINE, "PYTHONPATH": path}
    if not run_dir.exists():
        cmd = [sys.executable, "-m", "elm_train.cli", "run", "--preset", "tiny", "--run-dir", str(run_dir)]
        cmd += ["--threads", "1"]
        subprocess.run(cmd, env=env, cwd=repo, stdout=sys.stderr, check=True)
    unfinished = [s for s in EARLIER_STAGES if not (run_dir / s / "done.json").is_file()]
    if unfinished:  # `stage search` would run them too, inside the trace
        sys.exit(f"{run_dir}: stages {', '.join(unfinished)} have not finished; give a finished tiny run")
    result: dict = {"repo": str(repo), "run_dir": str(run_dir), "commit": git_head(repo), "variants": {}}
    for scope in SCOPES:
        with tempfile.TemporaryDirectory(dir=run_dir.parent, prefix="reading-path-") as tmp:
            copy, records = Path(tmp) / "run", Path(tmp) / "records.json"
            shutil.copytree(run_dir, copy, ignore=lambda d, _: LATER_STAGES if Path(d) == run_dir else ())
            cmd = [sys.executable, __file__, "--child", scope, "--repo", str(repo), "--run-dir", str(copy)]
            cmd += ["--records", str(records)]
            subprocess.run(cmd, env=env, cwd=repo, stdout=sys.stderr, check=True)
            data = json.loads(records.read_text())
        result["variants"][f"{scope} all"] = variant(data["records"], set(), 0)
        for limit in DEPTHS:
            label = f"{scope} K={limit or 'unlimited'}"
            result["variants"][label] = variant(data["records"], set(data["path"]), limit or sys.maxsize)
        result[f"{scope} path to execute"] = data["path"]
    result["summary"] = [
        f"{label}: {v['stops']} stops in {v['files']} files, {v['returns']} returns ({v['functions']} functions)"
        for label, v in result["variants"].items()
    ]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print("\n".join(result["summary"]), file=sys.stderr)


def git_head(repo: Path) -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, check=True).stdout

    return git("rev-parse", "HEAD").strip() + (
        " (with uncommitted changes)" if git("status", "--porcelain") else ""
    )


if __name__ == "__main__":
    main()
