"""Calibrate test_pinned.py's tolerance across CPU kernels, and record its values.

    python tests/calibrate_pinned.py calibrate DIR   # every (ATEN_CPU_CAPABILITY, threads) below, then compare
    python tests/calibrate_pinned.py observe OUT.json  # one configuration, as the environment sets it
    python tests/calibrate_pinned.py compare A.json B.json ...  # deviations of B... from A, by kind of value
    python tests/calibrate_pinned.py record A.json  # the PINNED and LOSS_GOLDEN literals of an observation

Each observation runs the pinned runs in a fresh directory (its own teacher fine-tune, heads and cache) in a new
process, so the kernels are chosen at its start. `compare` prints, per run and kind of value (losses, metrics,
attention, tensor statistics, loss functions), the largest relative deviation from the first file, and whether
the exact facts agree; the tolerance in test_pinned.py should sit well above the first and well below what a real
change of behaviour does (try one: edit a term weight and observe again).
"""

from __future__ import annotations

import json
import os
import pprint
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import test_pinned as pinned  # noqa: E402

CONFIGURATIONS = [("", 1), ("", 2), ("avx2", 1), ("avx2", 2), ("default", 1), ("default", 2)]  # "": the CPU's own


def observe(out: Path) -> None:
    torch.set_num_threads(int(os.environ.get("XKD_PINNED_THREADS", "1")))
    os.environ.setdefault("ACCELERATE_USE_CPU", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in pinned.RUNS:
            directory = Path(tmp) / name
            directory.mkdir()
            os.environ["XKD_CACHE_DIR"] = str(directory / "xkd-cache")
            os.chdir(directory)
            result[name] = pinned.observe_run(name, directory)
    result["losses"] = pinned.loss_values()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    print(f"{out}: {result['capability']}, {result['threads']} thread(s)")


def leaves(value, where: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{where}[{i}]")
    else:
        yield where, value


def pinned_close(close: dict) -> dict:
    """An observation's close values as the test compares them (observations made before a parameter was found
    to hold only rounding noise still list it)."""
    tensors = {n: v for n, v in close["tensors"].items() if not pinned.ROUNDING_ONLY.search(n)}
    return {**close, "tensors": tensors}


def compare(paths: list[Path]) -> float:
    """Print the deviations of each observation from the first; return the largest run deviation."""
    base, *others = [json.loads(p.read_text()) for p in paths]
    worst = 0.0
    for path, other in zip(paths[1:], others, strict=True):
        print(f"{path.name} ({other['capability']}, {other['threads']} thread(s)) against {paths[0].name}:")
        for name in pinned.RUNS:
            exact = list(pinned.differences(other[name]["exact"], base[name]["exact"], "exact", None))
            kinds: dict[str, float] = {}
            close = [pinned_close(o[name]["close"]) for o in (other, base)]
            for where, _, deviation in pinned.differences(*close, "", -1.0):  # tolerance -1: every float's deviation
                kind = where.split(".")[1].split("[")[0]
                kinds[kind] = max(kinds.get(kind, 0.0), deviation)
            worst = max(worst, *kinds.values())
            shown = ", ".join(f"{k} {v:.1e}" for k, v in kinds.items())
            print(f"  {name}: exact {'equal' if not exact else exact[:3]}; {shown}")
        losses = max(pinned.deviation_of(other["losses"][k], v) for k, v in base["losses"].items())
        print(f"  loss functions: {losses:.1e}")
    print(f"largest run deviation: {worst:.2e} (tolerance {pinned.RUN_TOLERANCE:.0e})")
    return worst


def record(path: Path) -> None:
    """Print an observation as test_pinned.py's literals (then `ruff format` the file they are pasted into)."""
    observed = json.loads(path.read_text())
    runs = {n: {"exact": observed[n]["exact"], "close": pinned_close(observed[n]["close"])} for n in pinned.RUNS}
    print("LOSS_GOLDEN =", pprint.pformat(observed["losses"], sort_dicts=False))
    print("PINNED: dict[str, dict] =", pprint.pformat(runs, sort_dicts=False, width=118))


def calibrate(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for capability, threads in CONFIGURATIONS:
        env = {**os.environ, "XKD_PINNED_THREADS": str(threads)}
        env.pop("ATEN_CPU_CAPABILITY", None)
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        path = directory / f"{capability or 'own'}-{threads}.json"
        subprocess.run([sys.executable, __file__, "observe", str(path)], env=env, check=True)
        paths.append(path)
    compare(paths)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"observe": lambda: observe(Path(args[0]).resolve()), "compare": lambda: compare([Path(a) for a in args]),
     "record": lambda: record(Path(args[0])), "calibrate": lambda: calibrate(Path(args[0]))}[command]()  # fmt: skip
