"""Summarise py-spy ``--format raw`` collapsed stacks: top functions by self and total samples.

    python -m bench.profile_summary bench/results/profile-mom-engine.txt [--top 25] [--filter salt_redis_syndic]
"""

from __future__ import annotations

import argparse
import collections
import sys


def summarise(path: str, top: int, needle: str | None) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            samples += n
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
    lines = [f"{samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        lines.append(f"-- top by {title} --")
        shown = 0
        for frame, n in counter.most_common():
            if needle and needle not in frame:
                continue
            lines.append(f"{100.0 * n / max(samples, 1):6.1f}%  {frame}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default=None)
    args = parser.parse_args(argv)
    print(summarise(args.path, args.top, args.filter))
    return 0


if __name__ == "__main__":
    sys.exit(main())
