# Sourced by the scripts that build release binaries (run, bench-*).
#
# Release binaries use AVX2/FMA when this CPU has them (x86-64-v3): Candle's
# quantized matmuls and the compiler's auto-vectorisation depend on it
# (about 2.9x decode speed on the default model, docs/performance.md).
# SKILLKERNEL_PORTABLE=1 builds for baseline x86-64 instead, for binaries
# meant to run on older CPUs.
if [[ "$(uname -m)" == "x86_64" && "${SKILLKERNEL_PORTABLE:-0}" != "1" ]] \
    && grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-cpu=x86-64-v3"
fi
