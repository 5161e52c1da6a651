#!/usr/bin/env bash
# Execute every reader notebook on CUDA in the quick profile: scripts/gpu_check.sh [LOG]
# (make gpu-check).  Fails at once when torch sees no CUDA device; otherwise checks that the
# package really puts models there (training.pick_device, cached_model), then runs nbval over
# notebooks/ with the figures' inline backend, and writes everything to LOG
# (default docs/gpu_check.log) for committing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG=${1:-docs/gpu_check.log}
mkdir -p "$(dirname "$LOG")"
export PMI_PROFILE=quick MPLBACKEND=module://matplotlib_inline.backend_inline PYTHONUNBUFFERED=1
{
  echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  "$PY" - <<'PYEOF'
import sys
import torch
from pmi_tutorial import training
from pmi_tutorial.features import model_device
from pmi_tutorial.profiles import get_profile

if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); "
             "run this on a machine with an NVIDIA GPU and a CUDA build of torch")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
assert training.pick_device().type == "cuda", training.pick_device()
result = training.cached_model("mlp", get_profile("quick"), progress=False)
assert model_device(result.model).type == "cuda", model_device(result.model)
print("cached_model('mlp', quick) is on", model_device(result.model))
PYEOF
  "$PY" -m pytest --nbval-lax --nbval-current-env -p scripts.notebook_timing notebooks/ -q
} 2>&1 | tee "$LOG"
