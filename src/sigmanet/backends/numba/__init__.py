"""The numba backend's package: the step once (``step``), the engines' choice (``strategy``), the backend.

Importing this package imports nothing heavy; numba itself is imported by
``backend``'s probe and ``step``, when the backend is first asked for.
"""
