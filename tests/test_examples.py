"""Every shell and Python block of the README and of docs/ runs as written, so an example cannot rot.

A page's blocks run in order in one working directory (a later block may use what an earlier one made), offline,
beside a small copy of the local assets: `../shared/data` holds the first rows of MR and amazon_sent and the GloVe
words they use, `../shared/hf-hub` is the real hub cache. A marker on the line before a block changes only what it
says, as `;`-separated directives:

    <!-- example: skip: REASON -->          not run, and why (an install, hours of CPU, several GPUs)
    <!-- example: tiny -->                  a tiny BERT classifier for MiniLM (and `--teacher` for a bare `xkd distill`)
    <!-- example: quick -->                 `--max-steps 2` on every command that trains (and `--no-latency`)
    <!-- example: replace: OLD => NEW -->   a literal substitution

A Python block whose first line is a comment naming a file (`# mypkg/gru.py`), and a TOML block likewise, is
written to that file instead of run. `xkd` commands run in-process through click's runner (an `xkd` process costs
seconds of imports); other commands and Python blocks run as processes with the same environment.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from tiny import SHARED, save_tiny

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TRAINING_COMMANDS = {("distill",), ("cache", "build"), ("teacher", "finetune")}
SMALL_SPLITS = {"train": 160, "validation": 60, "test": 60}

pytestmark = pytest.mark.skipif(not (SHARED / "data" / "mr").is_dir(), reason="needs ../shared/data (the local MR)")


@dataclass
class Block:
    page: str
    line: int
    language: str
    code: str
    directives: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    """The fenced blocks of a page with the directives of the marker just above each."""
    lines = (ROOT / page).read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^```(\w+)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        found.append(Block(page, i + 1, opening.group(1), "\n".join(lines[i + 1 : end]), _directives(lines, i)))
        i = end + 1
    return found


def _directives(lines: list[str], fence: int) -> dict[str, list[str]]:
    above = lines[fence - 1].strip() if fence else ""
    marker = re.fullmatch(r"<!-- example: (.*) -->", above)
    directives: dict[str, list[str]] = {}
    for part in marker.group(1).split(";") if marker else []:
        name, _, value = part.strip().partition(":")
        directives.setdefault(name.strip(), []).append(value.strip())
    return directives


def runnable(block: Block) -> bool:
    return block.language in {"bash", "python", "toml"} and "skip" not in block.directives


def test_every_marker_is_understood_and_every_skip_says_why():
    known = {"skip", "tiny", "quick", "replace"}
    for page in PAGES:
        for block in blocks(page):
            assert set(block.directives) <= known, f"{block.where}: unknown directive in {block.directives}"
            assert all(block.directives.get("skip", ["reason"])), f"{block.where}: a skip must name its reason"
            assert block.language != "sh", f"{block.where}: write shell blocks as ```bash"


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """`shared/` (small data, the real hub cache and tools) and `work/` (the examples' directory) side by side."""
    root = tmp_path_factory.mktemp("examples")
    data = root / "shared" / "data"
    words: set[str] = set()
    for task in ("mr", "amazon_sent"):
        (data / task).mkdir(parents=True)
        for split, rows in SMALL_SPLITS.items():
            source = SHARED / "data" / task / f"{split}.tsv"
            header, *body = source.read_text().splitlines()
            lines = [header, *body[:: max(1, len(body) // rows)][:rows]]  # evenly spaced: the files are sorted by label
            (data / task / f"{split}.tsv").write_text("\n".join(lines) + "\n")
            words.update(w for line in lines for w in line.split("\t")[0].split())
    glove = SHARED / "data" / "glove" / "glove.6B.50d.top60k.txt"
    (data / "glove").mkdir()
    with glove.open() as source, (data / "glove" / glove.name).open("w") as small:
        small.writelines(line for line in source if line.split(" ", 1)[0] in words)
    for name in ("hf-hub", "tools"):
        (root / "shared" / name).symlink_to(SHARED / name)
    work = root / "work"
    work.mkdir()
    for name in ("examples", "recipes"):
        (work / name).symlink_to(ROOT / name)
    save_tiny(root / "tiny-minilm")  # 4 layers, width 32
    return root


def test_the_small_assets_keep_the_real_files_layout(assets: Path):
    train = pd.read_csv(assets / "shared/data/mr/train.tsv", sep="\t", quoting=3)
    assert list(train.columns[:2]) == ["sentence", "label"] and len(train) == SMALL_SPLITS["train"]


@pytest.fixture
def registries_restored():
    """A page's plug-ins (the docs' `mypkg`) register in this process: give the registries and modules back after
    it, so the suite's own plug-in tests register theirs under the same names."""
    from xkd.methods.base import METHODS
    from xkd.students.registry import STUDENTS
    from xkd.tasks import TASKS

    saved = [(registry, dict(registry._items)) for registry in (METHODS, STUDENTS, TASKS)]
    modules = set(sys.modules)
    yield
    for registry, items in saved:
        registry._items.clear()
        registry._items.update(items)
    for name in set(sys.modules) - modules:
        if name.split(".")[0] == "mypkg":
            del sys.modules[name]


@pytest.mark.parametrize("page", [p for p in PAGES if any(runnable(b) for b in blocks(p))])
def test_examples_run_as_written(
    page: str, assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registries_restored
):
    work = tmp_path / "work"
    work.mkdir()
    for link in (assets / "work").iterdir():
        (work / link.name).symlink_to(link.resolve())
    (tmp_path / "shared").symlink_to(assets / "shared")
    monkeypatch.chdir(work)
    monkeypatch.setenv("XKD_DATA_DIR", str(tmp_path / "shared" / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(SHARED / "hf-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XKD_CACHE_DIR", str(tmp_path / "cache"))
    for block in blocks(page):
        if runnable(block):
            run_block(block, assets / "tiny-minilm", monkeypatch)


def run_block(block: Block, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = block.code
    for rule in block.directives.get("replace", []):
        old, new = (s.strip() for s in rule.split("=>"))
        assert old in code, f"{block.where}: replace target {old!r} is not in the block"
        code = code.replace(old, new)
    if "tiny" in block.directives:
        code = code.replace(MINILM, str(tiny))
    named = re.match(r"#\s*(\S+\.(?:py|toml))\s*\n", code)
    if named:
        Path(named.group(1)).parent.mkdir(parents=True, exist_ok=True)
        Path(named.group(1)).write_text(code)
    elif block.language == "python":
        _process([sys.executable, "-c", code], block)
    elif block.language == "bash":
        for line in _logical_lines(code):
            for command in line.split(" && "):
                _run_command(command, block, tiny, monkeypatch)


def _logical_lines(code: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _run_command(command: str, block: Block, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    words = shlex.split(os.path.expandvars(command), comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = str(Path(value).resolve()) if value.startswith(".") else value
    if words[0] != "xkd":
        _process(["bash", "-c", command], block, env)
        return
    args = words[1:]
    trains = any(tuple(args[: len(c)]) == c for c in TRAINING_COMMANDS)
    bare = not {"--teacher", "--teacher-outputs"} & set(args)
    if trains and "tiny" in block.directives and args[0] != "teacher" and bare:
        args += ["--teacher", str(tiny)]
    if trains and "quick" in block.directives:
        args += ["--max-steps", "2", *(["--no-latency"] if args[0] == "distill" else [])]
    from click.testing import CliRunner

    from xkd.cli.main import cli

    with monkeypatch.context() as scoped:
        for name, value in env.items():
            scoped.setenv(name, value)
        started = time.perf_counter()
        result = CliRunner().invoke(cli, args)
    print(f"{block.where} {time.perf_counter() - started:6.1f} s  xkd {' '.join(args)[:120]}")
    assert result.exit_code == 0, (
        f"{block.where}: `{command.strip()}` exited {result.exit_code}:\n{result.output[-3000:]}"
    )


def _process(argv: list[str], block: Block, env: dict[str, str] | None = None) -> None:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this environment's
    done = subprocess.run(
        argv, env={**os.environ, "PATH": path, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        f"{block.where}: `{' '.join(argv)[:200]}` exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
