#!/usr/bin/env bash
# The GPU image's install line resolves to the pinned vLLM (issue: an unpinned vllm made pip
# backtrack to an old, untested engine). Takes the last `pip install ... ".[gpu]"` line of
# images/Dockerfile.gpu verbatim and resolves it with `pip install --dry-run --report`:
#   1. the whole set for this machine's Python, with no local wheel folder (find-links) and no
#      machine-wide constraints: what the image build sees (a package mirror, if configured,
#      serves the same files as PyPI);
#   2. every resolved wheel built for this interpreter only (e.g. cp311-cp311) again for the image's
#      interpreter and glibc (CPython 3.12, manylinux up to 2.39: ubuntu 24.04), --no-deps,
#      binary only, so a pin without a wheel there fails here too. Pure-Python and abi3 wheels fit
#      CPython 3.12 as they are, and a wheel for this machine's older glibc fits 2.39.
# Then checks the report: vllm, torch (not a +cpu build), transformers equal constraints/gpu.txt.
# Needs PyPI; about 1-2 minutes. PYTHON: the interpreter whose pip is used (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
IMAGE_PY=3.12
IMAGE_GLIBC_MINOR=39
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

line=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' images/Dockerfile.gpu | grep -v '^\s*#' \
  | grep -o 'pip install [^&;]*"\.\[gpu\]"' | tail -1)
[ -n "$line" ] || { echo "check_gpu_resolve: no pip install of \".[gpu]\" in images/Dockerfile.gpu" >&2; exit 1; }
echo "GPU image install line: $line"
eval "set -- ${line#pip install }"

mkdir "$work/no-links" && : >"$work/no-constraints.txt"
clean_pip() {  # pip without local wheel folders or machine-wide constraints (they win over pip.conf)
  env -u PIP_NO_INDEX PIP_FIND_LINKS="$work/no-links" PIP_CONSTRAINT="$work/no-constraints.txt" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip "$@"
}

start=$(date +%s)
clean_pip install --dry-run --ignore-installed --quiet --report "$work/report.json" "$@" >"$work/pip.log" 2>&1 \
  || { grep -v '^  ' "$work/pip.log" | tail -30 >&2; echo "check_gpu_resolve: the GPU install line does not resolve" >&2; exit 1; }

"$PY" - "$work/report.json" constraints/gpu.txt "$work/wheels.txt" <<'EOF'
import json
import re
import sys

report, constraints, wheels_out = sys.argv[1:]
pins = {}
for line in open(constraints):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
own_tag = f"-cp{sys.version_info[0]}{sys.version_info[1]}-cp{sys.version_info[0]}{sys.version_info[1]}-"
got, wheels = {}, []
for item in json.load(open(report))["install"]:
    name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
    version = item["metadata"]["version"]
    got[name] = version
    url = item["download_info"]["url"]
    if url.endswith(".whl") and own_tag in url.rsplit("/", 1)[-1]:
        wheels.append(f"{name}=={version}")
problems = [f"{n}: resolved {got.get(n)}, constraints/gpu.txt pins {v}" for n, v in pins.items() if got.get(n) != v]
if "+" in got.get("torch", ""):
    problems.append(f"torch resolved to a local build {got['torch']} (the image needs PyPI's CUDA wheel)")
if problems:
    sys.exit("check_gpu_resolve: " + "; ".join(problems))
open(wheels_out, "w").write("\n".join(sorted(wheels)) + "\n")
print(f"resolved {len(got)} packages: " + ", ".join(f"{n}=={got[n]}" for n in ("vllm", "torch", "transformers")))
EOF

platforms=()
for minor in $(seq 17 "$IMAGE_GLIBC_MINOR"); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64)
clean_pip install --dry-run --ignore-installed --quiet --no-deps --only-binary=:all: \
  --python-version "$IMAGE_PY" "${platforms[@]}" -r "$work/wheels.txt" >"$work/pip312.log" 2>&1 \
  || { grep -v '^  ' "$work/pip312.log" | tail -20 >&2
       echo "check_gpu_resolve: a resolved wheel has no build for CPython $IMAGE_PY / manylinux_2_$IMAGE_GLIBC_MINOR" >&2; exit 1; }
echo "check_gpu_resolve: OK ($(wc -l <"$work/wheels.txt") interpreter-specific wheels also exist for CPython $IMAGE_PY; $(( $(date +%s) - start )) s)"
