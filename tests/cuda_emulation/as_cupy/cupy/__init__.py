"""``import cupy`` gives the emulated CuPy (fake_cupy) for this whole process: a whole program runs on it.

    PYTHONPATH=tests/cuda_emulation/as_cupy:tests/cuda_emulation:src python3 some_script.py

(benchmarks/gpu_check.sh's dry run on the emulator uses it: GPU_CHECK_SMALL=1, see there.)
The kernels are built in $SN_EMULATOR_CACHE (default: the temporary folder's sigmanet-cuda-emulator).
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import fake_cupy

_folder = Path(os.environ.get("SN_EMULATOR_CACHE", Path(tempfile.gettempdir()) / "sigmanet-cuda-emulator"))
# Held by fake_cupy, which outlives this package module: once sys.modules holds the fake instead, this
# module is collected, and a context held only here would be closed (putting this module back).
fake_cupy.process_context = fake_cupy.installed(library=fake_cupy.session_library(_folder), build_dir=_folder)
sys.modules["cupy"] = fake_cupy.process_context.__enter__()  # `import cupy` binds what sys.modules holds then
