"""The CuPy backend's package: the backend and trainers (``backend``), the CUDA wrappers (``_cuda``).

Importing this package imports nothing: CuPy is imported when the backend is
first asked for, and the kernels are compiled when a trainer first needs them.
"""
