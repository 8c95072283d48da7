#!/usr/bin/env bash
# Real-hardware check of the GPU agent: run on a host with an NVIDIA GPU and driver.
# Samples for ~12 s under a matmul load (PyTorch), alongside nvidia-smi for comparison,
# and checks that the agent process never loaded DuckDB, Arrow, pandas or pydantic.
# Output goes to $OUT (default: a new temporary folder).
set -u
OUT="${OUT:-$(mktemp -d)}"
echo "output in $OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L
nvidia-smi --query-gpu=timestamp,name,uuid,pci.bus_id,utilization.gpu,utilization.memory,memory.total,memory.used,power.draw --format=csv -l 1 > "$OUT/gpu-h200-smi.csv" &
SMI=$!
python3 - <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 9
while time.time() < end:
    (a @ a).sum().item()
PY
LOAD=$!
sleep 2
python3 - <<PY
import sys, json
from finops.cli import app
try:
    app(["agent", "gpu", "--out", "$OUT/spool", "--interval", "1s", "--count", "12", "--rotate-minutes", "0.1"], standalone_mode=False)
except SystemExit as exc:
    print("exit", exc.code)
print("heavy modules in the agent process:", [m for m in ("duckdb", "pyarrow", "pandas", "pydantic") if m in sys.modules])
from finops.collectors.nvml import read_gpus
from datetime import UTC, datetime
print(json.dumps(read_gpus(now=datetime.now(UTC)), indent=1))
PY
wait $LOAD
sleep 2
kill $SMI
python3 -c "import pynvml; pynvml.nvmlInit(); print('driver', pynvml.nvmlSystemGetDriverVersion())"
ls -la "$OUT/spool"
wc -l "$OUT"/spool/* "$OUT/gpu-h200-smi.csv"
