"""A PyTorch tensor pipeline with sigmanet in the middle: tensors in, tensors out, no copies.

    pip install torch   # the CPU build is enough
    python examples/embedding_torch_pipeline.py [--epochs 60]

The data are made, normalised and split by PyTorch; sigmanet trains on the
tensors themselves (a float64 CPU tensor is read through DLPack, without a
copy) and ``predict`` answers with a tensor that PyTorch goes on with. The
last part lets ``torch.optim`` drive the training: ``loss_and_gradients``
returns the gradient as tensors of the parameters' shapes, which become
the ``.grad`` of PyTorch parameters for an Adam step, and the result goes
back into the network.
"""

import argparse

import torch

import sigmanet as sn


def make_data(n, generator):
    """Three classes of points in the plane (spirals' arms), one-hot targets: all PyTorch tensors."""
    label = torch.randint(0, 3, (n,), generator=generator)
    radius = torch.rand(n, generator=generator, dtype=torch.float64)
    angle = label * (2 * torch.pi / 3) + 2.5 * radius + 0.2 * torch.randn(n, generator=generator, dtype=torch.float64)
    X = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return X, torch.nn.functional.one_hot(label, 3).to(torch.float64), label


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--epochs", type=int, default=60, help="epochs of mini-batches for sigmanet's own fit")
    p.add_argument("--torch-steps", type=int, default=100, help="steps of torch.optim.Adam on sigmanet's gradients")
    args = p.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    X, Y, label = make_data(3000, g)
    X = (X - X.mean(dim=0)) / X.std(dim=0)  # PyTorch does the preprocessing
    train, test = slice(0, 2000), slice(2000, None)

    net = sn.Network([2, 32, 3], backend=args.backend, seed=0, bias=True, output="softmax")
    net.fit(X[train], Y[train], iterations=args.epochs * 20, batch_size=100, shuffle=True, optimizer="adam",
            learning_rate=0.01, reduction="mean", report_every=None)  # fmt: skip
    probabilities = net.predict(X[test])  # a torch.Tensor, float64
    accuracy = (probabilities.argmax(dim=1) == label[test]).double().mean().item()
    kind = f"{type(probabilities).__module__}.{type(probabilities).__name__} {tuple(probabilities.shape)}"
    print(f"sigmanet's fit: predict gave a {kind}; held-out accuracy {accuracy:.3f}")

    # torch.optim drives sigmanet's gradients: the parameters live in PyTorch
    params = [torch.nn.Parameter(torch.from_numpy(a)) for a in net.weights + net.biases]
    n_weights = len(net.weights)
    optimizer = torch.optim.Adam(params, lr=0.003)
    first = None
    for _ in range(args.torch_steps):
        with torch.no_grad():
            detached = [q.detach() for q in params]  # DLPack shares no tensor that requires grad
            loss, weight_grads, bias_grads = sn.loss_and_gradients(
                detached[:n_weights], detached[n_weights:], X[train], Y[train], backend=args.backend,
                output="softmax", reduction="mean",
            )  # fmt: skip
        first = loss if first is None else first
        for q, grad in zip(params, weight_grads + bias_grads):
            q.grad = grad  # tensors already: the host result shared, not copied
        optimizer.step()
    net.set_weights([q.detach().numpy() for q in params[:n_weights]], [q.detach().numpy() for q in params[n_weights:]])
    tuned = (net.predict(X[test]).argmax(dim=1) == label[test]).double().mean().item()
    print(f"torch.optim.Adam on sigmanet's gradients: loss {first:.4f} -> {loss:.4f}, held-out accuracy {tuned:.3f}")
    return accuracy, tuned, first, loss


if __name__ == "__main__":
    main()
