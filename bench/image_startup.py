"""The container image's size and start-up time.

Size is ``docker image inspect``'s Size.  Start-up is measured RUNS times on a
fresh container (and a fresh anonymous volume) each: from ``docker start`` to
the ``rapidmq ready`` line on the attached output, as the host sees it, and from
the container's StartedAt to the ready line's log timestamp, as the container
sees it (Python, imports, data dir recovery, listeners).

    .venv/bin/python bench/image_startup.py --image rapidmq:dev --runs 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from datetime import datetime


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def _timestamp(text: str) -> datetime:
    # Docker gives nanoseconds ("2026-12-07T18:44:16.319692196Z"); keep microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{frac[:6].ljust(6, '0')}+00:00")


def start_once(image: str) -> tuple[float, float]:
    """(seconds from `docker start` to the ready line, seconds inside the container)."""
    name = _docker("create", image).strip()
    try:
        started = time.monotonic()
        attached = subprocess.Popen(
            ["docker", "start", "--attach", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert attached.stdout is not None
        for line in attached.stdout:
            if line.startswith("rapidmq ready "):
                break
        host_s = time.monotonic() - started
        state = json.loads(_docker("inspect", name))[0]["State"]
        logs = _docker("logs", "--timestamps", name).splitlines()
        ready_at = next(line.split(" ", 1)[0] for line in logs if " rapidmq ready " in line)
        inside_s = (_timestamp(ready_at) - _timestamp(state["StartedAt"])).total_seconds()
        _docker("stop", name)
        attached.wait()
        return host_s, inside_s
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="rapidmq:dev")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", args.image))
    print(f"image {args.image}: {size / 1e6:.1f} MB ({size} bytes)")
    runs = [start_once(args.image) for _ in range(args.runs)]
    for label, values in (("host", [r[0] for r in runs]), ("inside", [r[1] for r in runs])):
        print(
            f"start to ready ({label}): median {statistics.median(values):.3f} s, "
            f"min {min(values):.3f} s, max {max(values):.3f} s "
            f"over {len(values)} runs: " + " ".join(f"{v:.3f}" for v in values)
        )


if __name__ == "__main__":
    main()
