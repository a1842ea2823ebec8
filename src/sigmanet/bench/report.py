"""Reporting a benchmark run: the table, the machine it ran on, results.json and throughput.png."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np


def format_table(records) -> str:
    head = (
        f"{'backend':12s} {'kind':7s} {'rows':>8s} {'layers':14s} {'dtype':7s} {'it/s':>10s} "
        f"{'samples/s':>10s} {'GFLOP/s':>8s} {'gemm_ratio':>10s} {'compile s':>9s} {'alloc/it':>9s} "
        f"{'peak MiB':>9s} {'+RSS MiB':>9s}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        ratio = "" if r.gemm_ratio is None else f"{r.gemm_ratio:.2f}"
        alloc = "" if r.alloc_per_iteration is None else f"{r.alloc_per_iteration:.0f}"
        peak = "" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f}"
        rss = "" if r.rss_growth_bytes is None else f"{r.rss_growth_bytes / 2**20:.1f}"
        lines.append(
            f"{r.backend:12s} {r.kind:7s} {r.rows:8d} {'-'.join(map(str, r.layers)):14s} {r.dtype:7s} "
            f"{r.iterations_per_second:10.4g} {r.samples_per_second:10.4g} {r.gflops:8.2f} {ratio:>10s} "
            f"{r.compile_seconds:9.2f} {alloc:>9s} {peak:>9s} {rss:>9s}"
        )
    return "\n".join(lines)


def machine_info() -> dict:
    """What the figures were measured on: CPU, BLAS (library, version, kernel), OpenBLAS overrides, date."""
    import datetime
    import os
    import platform

    from .._arrays import cpu_name

    info = {
        "cpu": cpu_name(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [],
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            | {"file": Path(lib["filepath"]).name}
            for lib in threadpool_info()
            if lib.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return info


def _blas_line(info) -> str:
    libs = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in info["blas"]) or "BLAS ?"
    forced = " ".join(f"{k}={v}" for k, v in info["openblas_env"].items())
    return libs + (f" [forced: {forced}]" if forced else "")


def chart_unavailable() -> str | None:
    """Why throughput.png cannot be drawn here (None when it can)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'sigmanet[bench]')"
    return None


def write_results(records, out_dir) -> list[Path]:
    """results.json (the machine, then every record) always; throughput.png where matplotlib is installed.

    The chart has one panel per network, since samples/s of different
    networks are not comparable, and names the machine, BLAS and date.
    Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    (out / "results.json").write_text(json.dumps({"machine": info, "records": [asdict(r) for r in records]}, indent=2))
    written = [out / "results.json"]
    if chart_unavailable() or not records:
        return written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({tuple(r.layers) for r in records}, key=lambda ls: sum(p * q for p, q in zip(ls, ls[1:])))
    fig, axes = plt.subplots(1, len(nets), figsize=(6.5 * len(nets), 4.8), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for (name, kind, dtype), group in _groups([r for r in records if tuple(r.layers) == net]).items():
            group.sort(key=lambda r: r.rows)
            ax.plot(
                [r.rows for r in group],
                [r.samples_per_second for r in group],
                marker="o",
                linestyle="--" if kind == "peer" else "-",
                label=f"{name} ({dtype})" + (" [peer]" if kind == "peer" else ""),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows in the table (full batch)")
        ax.set_ylabel("samples / second (training)")
        ax.set_title(f"network {'-'.join(map(str, net))}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    devices = sorted({r.device for r in records if r.kind == "backend"})
    fig.suptitle(f"sigmanet training throughput, {info['date']}", fontsize=11)
    fig.text(0.01, 0.01, f"{'; '.join(devices)} | {_blas_line(info)}", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(out / "throughput.png", dpi=120)
    plt.close(fig)
    written.append(out / "throughput.png")
    return written


def _groups(records):
    groups: dict = {}
    for r in records:
        groups.setdefault((r.backend, r.kind, r.dtype), []).append(r)
    return groups
