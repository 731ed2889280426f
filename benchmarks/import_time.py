"""Import time: `import ember`, and `ember.vision` against `fastai.vision.all`, each on top of torch + torchvision.

Every figure comes from fresh interpreters (median of `--repeat`, after one untimed run that warms
the disk cache and writes bytecode, as any installed package has). The clock runs inside the child
around the import statements, so interpreter start-up is shown on its own row, not added in.

Judged figures: ``import ember`` seconds (goal: under 0.3 s) and the seconds ``ember.vision`` adds to
torch + torchvision, next to what ``fastai.vision.all`` adds.

    python benchmarks/import_time.py
    .bench-venv/bin/python benchmarks/import_time.py        # with fastai (make bench-env)
    python benchmarks/import_time.py --importtime           # always list ember's slowest modules
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from _common import cpu_count, fmt_seconds, median, package_version, print_table

GOAL_EMBER_S = 0.3

# Runs in the child: imports each stage's modules in turn and prints the seconds each stage took
# (as JSON), or the error that stopped it, and which heavy libraries ended up loaded. A module
# written "name:*" also has every name in its __all__ looked up, which loads whatever a lazy
# package defers (what `from name import *` would cost).
_CHILD = r"""
import importlib, json, sys, time
stages = json.loads(sys.argv[1])
out = {"seconds": []}
try:
    for mods in stages:
        t0 = time.perf_counter()
        for m in mods:
            name, _, star = m.partition(":")
            mod = importlib.import_module(name)
            if star:
                for attr in getattr(mod, "__all__", []):
                    getattr(mod, attr)
        out["seconds"].append(time.perf_counter() - t0)
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
out["loaded"] = [m for m in ("torch", "torchvision", "timm", "numpy", "pandas", "matplotlib", "PIL", "fastai")
                 if m in sys.modules]
print(json.dumps(out))
"""


@dataclass
class Case:
    """One measurement: stages of imports done in order in one fresh interpreter."""

    label: str
    stages: list[list[str]]
    seconds: list[list[float]] = field(default_factory=list)  # per run, per stage
    walls: list[float] = field(default_factory=list)  # whole child process, per run
    error: str | None = None
    loaded: list[str] = field(default_factory=list)

    def stage(self, i: int) -> float:
        """Median seconds of stage `i` over the runs (NaN when it never completed)."""
        return median(run[i] for run in self.seconds if len(run) > i)


def child_env() -> dict[str, str]:
    """The parent's environment with bytecode writing allowed: an installed package has its .pyc
    files, so timing a source compile on every start would flatter nobody."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(case: Case, python: str, repeat: int) -> None:
    """Run the case once untimed, then `repeat` times; an import error ends it early."""
    stages = json.dumps(case.stages)
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [python, "-c", _CHILD, stages], capture_output=True, text=True, env=child_env(), check=False
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            case.error = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            return
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if "error" in out:
            case.error = out["error"]
            return
        case.loaded = out["loaded"]
        if i > 0:  # the first run only warms caches
            case.seconds.append(out["seconds"])
            case.walls.append(wall)


def slowest_modules(python: str, module: str, prefix: str, n: int = 10) -> list[tuple[str, float, float]]:
    """The `n` modules under `prefix` with the largest cumulative import time in ``python -X importtime``.

    Returns:
        (module, self seconds, cumulative seconds) tuples, slowest first.
    """
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        # "import time:       self [us] |  cumulative | imported package"
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        name = parts[2].strip()
        if name == prefix or name.startswith(prefix + "."):
            rows.append((name, int(parts[0]) / 1e6, int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: r[2], reverse=True)[:n]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="timed interpreters per case (median)")
    p.add_argument("--python", default=sys.executable, help="the interpreter to measure (default: this one)")
    p.add_argument("--importtime", action="store_true", help="list ember's slowest modules even when it is fast")
    p.add_argument("--quick", action="store_true", help="a smoke test: --repeat 1")
    args = p.parse_args(argv)
    if args.quick:
        args.repeat = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = ["torch", "torchvision"]
    cases = {
        "startup": Case("python -c pass", [[]]),
        "ember": Case("import ember", [["ember"]]),
        "torch": Case("import torch, torchvision", [base]),
        "ember.vision": Case("torch, torchvision + ember.vision", [base, ["ember.vision"]]),
        "ember.vision:*": Case("torch, torchvision + ember.vision (all names)", [base, ["ember.vision:*"]]),
        "fastai": Case("torch, torchvision + fastai.vision.all", [base, ["fastai.vision.all"]]),
    }
    print(f"python: {args.python}; cpus: {cpu_count()}; {args.repeat} timed run(s) per case, medians")
    if args.python == sys.executable:
        for pkg in ("torch", "torchvision", "ember", "fastai"):
            print(f"{pkg}: {package_version(pkg) or 'not installed'}")
    for case in cases.values():
        print(f"measuring: {case.label}", flush=True)
        measure(case, args.python, args.repeat)

    rows = []
    for case in cases.values():
        if case.error:
            rows.append([case.label, "not available", "–", "–", case.error[:70]])
            continue
        own = case.stage(len(case.stages) - 1)
        extra = fmt_seconds(own) if len(case.stages) > 1 else "–"
        total = sum(case.stage(i) for i in range(len(case.stages)))
        loaded = ", ".join(case.loaded) or "none"
        rows.append([case.label, fmt_seconds(total), extra, fmt_seconds(median(case.walls)), loaded])
    print()
    columns = ["case", "import s", "extra s", "process wall s", "libraries loaded / error"]
    print_table("Import time (fresh interpreters; medians; extra s = after torch+torchvision)", columns, rows)

    ember, vision, fastai = cases["ember"], cases["ember.vision"], cases["fastai"]
    ember_s = float("nan") if ember.error else ember.stage(0)
    vision_s = float("nan") if vision.error else vision.stage(1)
    fastai_s = float("nan") if fastai.error else fastai.stage(1)
    verdict = "" if ember_s != ember_s else ("  (goal met)" if ember_s < GOAL_EMBER_S else "  (goal missed)")
    print(f"import ember: {fmt_seconds(ember_s)} s   goal < {GOAL_EMBER_S} s{verdict}")
    vision_all = cases["ember.vision:*"]
    vision_txt = "not available" if vision.error else f"{fmt_seconds(vision_s)} s"
    if not vision_all.error:
        vision_txt += f" ({fmt_seconds(vision_all.stage(1))} s with every public name loaded)"
    fastai_txt = "not installed" if fastai.error else f"{fmt_seconds(fastai_s)} s"
    print(f"ember.vision beyond torch+torchvision: {vision_txt}")
    print(f"fastai.vision.all beyond torch+torchvision: {fastai_txt}")
    if not (vision.error or fastai.error) and vision_s > 0:
        print(f"fastai.vision.all / ember.vision (extra seconds): {fastai_s / vision_s:.1f}x")

    if not ember.error and (args.importtime or ember_s >= GOAL_EMBER_S):
        slow = slowest_modules(args.python, "ember", "ember")
        print()
        print_table(
            "Slowest ember modules (python -X importtime, cumulative)",
            ["module", "self s", "cumulative s"],
            [[name, f"{s:.4f}", f"{c:.4f}"] for name, s, c in slow],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
