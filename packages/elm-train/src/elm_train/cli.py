"""The ``elm-train`` command (placeholder until the pipeline lands: shows the demo space)."""

from __future__ import annotations

import argparse

import elm_space


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elm-train", description="ELM: elastic architecture search.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline on a preset")
    run.add_argument("--preset", default="demo")
    args = parser.parse_args(argv)
    space = elm_space.preset(args.preset)
    arch = elm_space.sample(space, 0)
    print(f"space {space.name}: {space.size()} architectures, mean {elm_space.mean_params(space):,.0f} parameters")
    print(f"sampled: {arch}  ({elm_space.count_params(arch):,} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
