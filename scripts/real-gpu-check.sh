#!/usr/bin/env bash
# Read-only validation of gpubox on a machine with a real NVIDIA GPU (no deploy, no GPU settings
# changed: no clock lock, no persistence change, no reset). Writes everything into $OUT:
#   probe.json         gpubox probe --json against the real driver
#   spec.json          a spec of this machine written from what it is (name, bus ids, links)
#   checks.json/.xml   the quick tier run locally against that spec
#   nvml-real.json     every NVML answer the simulator models, flat (compare with the simulator)
#   bandwidthTest.log  bandwidthTest (built here with nvcc from CUDA samples sources in
#                      $SAMPLES, if given) run through gpubox's wrapper, and its parsed JSON
# Usage: OUT=dir [SAMPLES=cuda-samples-root] bash scripts/real-gpu-check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to a folder}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ]; then  # a machine without network: the dependencies travel as wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site || exit 1
fi
nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1
python3 -m gpubox probe --json > "$OUT/probe.json" 2> "$OUT/probe.err"; echo "probe rc=$?"
python3 - "$OUT" <<'PY'
import json, sys
from gpubox.spec import NodeSpec
out = sys.argv[1]
snap = json.load(open(f"{out}/probe.json"))
gpus = [g for g in snap["gpus"] if not g["lost"]]
nvlink = "unsupported" if all(g["nvlink"] == "not_supported" for g in gpus) else "active"
data = {
    "software": {"driver_version": snap["driver_version"]},
    "gpu_name": gpus[0]["name"],
    "gpu_memory_mib": gpus[0]["memory_total_mib"],
    "gpus": [{"bus_id": g["bus_id"], "pcie": {"min_width": g["pcie"]["width_max"]}} for g in gpus],
    "nvlink": nvlink,
    "bench": {"tools_dir": "/tmp/tools"},
}
spec = NodeSpec.from_data(data, host="h100")
json.dump({"host": "h100", **spec.to_data()}, open(f"{out}/spec.json", "w"), indent=2)
print("spec written:", data["gpu_name"], [g["bus_id"] for g in data["gpus"]], "nvlink", nvlink)
PY
python3 -m pytest checks/ -m quick --node-spec "$OUT/spec.json" -p no:cacheprovider -q -rA \
    --results-json "$OUT/checks.json" --junitxml "$OUT/checks.xml" 2>&1 | tail -40
python3 - > "$OUT/nvml-real.json" <<'PY'
import json, pynvml
from gpubox import probe
from gpubox.sim import nvml
probe._load(None)  # $GPUBOX_NVML_LIBRARY if set, else the driver's library
pynvml.nvmlInit()
print(json.dumps(nvml.snapshot(), indent=1, default=str))
PY
echo "nvml dump rc=$?"
if [ -n "${SAMPLES:-}" ] && command -v nvcc >/dev/null; then
    mkdir -p /tmp/tools
    for t in 1_Utilities/bandwidthTest 5_Domain_Specific/p2pBandwidthLatencyTest; do
        n=$(basename "$t")
        # CUDA 13 dropped cudaDeviceProp.computeMode, which the 12.x samples read once.
        sed 's/deviceProp\.computeMode == cudaComputeModeProhibited/false/' \
            "$SAMPLES/Samples/$t/$n.cu" > "/tmp/$n.cu"
        nvcc -O2 -I "$SAMPLES/Common" -gencode=arch=compute_90,code=sm_90 -o "/tmp/tools/$n" \
            "/tmp/$n.cu" > "$OUT/build-$n.log" 2>&1; echo "build $n rc=$?"
    done
    timeout 120 python3 -m gpubox bench run --spec "$OUT/spec.json" --tools bandwidthTest \
        --json --log-dir /tmp/benchlogs > "$OUT/bench.json" 2> "$OUT/bench.err"; echo "bench rc=$?"
    cp /tmp/benchlogs/*/bandwidthTest*.log "$OUT/" 2>/dev/null || find /tmp/benchlogs -type f | head
fi
ls -la "$OUT"
