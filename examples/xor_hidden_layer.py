"""Why the seed needs a hidden layer: a single-layer perceptron cannot learn XOR.

    python examples/xor_hidden_layer.py [--plot xor.png]

The seed's table: y is the XOR of the first two inputs (the third is the
constant 1 that plays the bias). No single weighted sum of the inputs
separates {(0,1), (1,0)} from {(0,0), (1,1)}, so the perceptron [3, 1] stalls
at an error of 0.5; with four hidden units, [3, 4, 1] drives it toward 0.
"""

import argparse

import sigmanet as sn
from sigmanet.datasets import tutorial_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=60000)
    p.add_argument("--plot", help="write the two error curves to this PNG")
    args = p.parse_args(argv)

    X, y = tutorial_table()
    curves = {}
    for layers in ([3, 1], [3, 4, 1]):
        net = sn.Network(layers, backend="auto", seed=1, init="legacy")
        hist = net.fit(X, y, iterations=args.iterations, report_every=max(1, args.iterations // 300))
        curves[str(layers)] = hist
        print(f"{str(layers):10s} final error {net.error(X, y):.4f}  outputs {net.predict(X).ravel().round(3)}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, hist in curves.items():
            ax.plot(hist.iterations, hist.errors, label=f"layers {name}")
        ax.set_xlabel("iteration")
        ax.set_ylabel("mean |y - output|")
        ax.set_yscale("log")
        ax.set_title("XOR: the perceptron stalls, the hidden layer learns")
        ax.legend()
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return {k: h.errors[-1] for k, h in curves.items()}


if __name__ == "__main__":
    main()
