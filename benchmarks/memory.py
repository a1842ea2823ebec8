"""Memory at scale: what fit, predict and reading a CSV add beyond the data, each in a fresh process.

    python benchmarks/memory.py [--rows 10000000] [--csv-rows 1000000] [--backends numba,numpy]

Each measurement runs in its own Python process: it builds its data, reads
its resident size (VmRSS), resets the resident peak (VmHWM, through
/proc/self/clear_refs), does the one thing, and reports the peak's growth
above that baseline: the memory the operation added beyond the data. Linux
only. The CSV case also reports the read rate and the peak over the parsed
float64 array.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from sigmanet.bench.records import reset_resident_peak, resident_bytes
    kind, backend, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "csv":
        from sigmanet.io import read_csv
        import pyarrow.csv  # imported before the baseline: its code is not the data's memory
        path = sys.argv[4]
        before = resident_bytes()[0]
        reset_resident_peak()
        t = time.perf_counter()
        names, table = read_csv(path)
        seconds = time.perf_counter() - t
        peak = resident_bytes()[1]
        import os
        print(json.dumps({"kind": kind, "rows": table.shape[0], "columns": table.shape[1],
                          "seconds": seconds, "mb_per_s": os.path.getsize(path) / 1e6 / seconds,
                          "parsed_bytes": table.nbytes, "added_bytes": peak - before,
                          "peak_over_parsed": (peak - before) / table.nbytes}))
        sys.exit()
    import sigmanet as sn
    from sigmanet.datasets import make_table
    X, y = make_table(rows, 64, 16, seed=0, dtype="float32")
    net = sn.Network([64, 256, 16], backend=backend, dtype="float32", seed=0)
    net.fit(X[:4096], y[:4096], iterations=2, reduction="mean")  # compile outside the measurement
    before = resident_bytes()[0]
    reset_resident_peak()
    t = time.perf_counter()
    if kind == "fit":
        net.fit(X, y, iterations=1, reduction="mean")
    else:
        out = net.predict(X)
    seconds = time.perf_counter() - t
    peak = resident_bytes()[1]
    print(json.dumps({"kind": kind, "backend": backend, "rows": rows, "data_bytes": X.nbytes + y.nbytes,
                      "added_bytes": peak - before, "seconds": seconds}))
""")


def child(*args):
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"kind": args[0], "backend": args[1], "rows": args[2], "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_csv(path, rows, columns=21):
    import numpy as np

    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write(",".join(f"c{j}" for j in range(columns)) + "\n")
        for start in range(0, rows, 100_000):
            block = rng.random((min(100_000, rows - start), columns))
            np.savetxt(f, block, delimiter=",", fmt="%.6f")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="rows of the 64-256-16 float32 table")
    p.add_argument("--csv-rows", type=int, default=1_000_000)
    p.add_argument("--backends", default="numba")
    p.add_argument("--out", help="write the results here as JSON")
    args = p.parse_args(argv)
    from sigmanet._arrays import cpu_name

    results = []
    for backend in args.backends.split(","):
        for kind in ("fit", "predict"):
            r = child(kind, backend, args.rows)
            results.append(r)
            if "error" in r:
                print(f"{kind:8s} {backend:6s} {args.rows} rows: {r['error']}")
                continue
            print(
                f"{kind:8s} {backend:6s} {r['rows']} rows x 64-256-16 float32: data {r['data_bytes'] / 2**30:.2f} "
                f"GiB, added {r['added_bytes'] / 2**30:.3f} GiB, {r['seconds']:.1f} s",
                flush=True,
            )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "table.csv")
        write_csv(path, args.csv_rows)
        r = child("csv", "-", 0, path)
        results.append(r)
        print(
            f"csv      {r['rows']} rows x {r['columns']} columns, {os.path.getsize(path) / 1e6:.0f} MB: "
            f"{r['mb_per_s']:.0f} MB/s, peak {r['peak_over_parsed']:.2f}x the parsed array",
            flush=True,
        )
    print(cpu_name())
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": cpu_name(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
