"""Course topic: PyTorch basics (after scikit-learn).

A network written as an `nn.Module` (28x28 -> 512 -> 512 -> 10, the PyTorch quickstart's),
trained on MNIST with autograd (`loss.backward()` fills every parameter's `.grad`, the
optimizer steps) and evaluated under `torch.no_grad()` (no graph is recorded). Each epoch is
reported; the trained network is saved, so its model page classifies digits you draw.

    labtrain run examples/02_pytorch_basics.py --dataset mnist -- --epochs 3
    python examples/02_pytorch_basics.py --data mnist.npz          # outside labtrain
"""

import argparse

import numpy as np
import torch
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--limit", type=int, default=6000, help="training images used (MNIST has 60000)")
parser.add_argument("--data", default=labtrain_job.dataset_path(), help="mnist.npz (default: the job's data set)")
args = parser.parse_args()
if args.data is None:
    parser.error("no MNIST here: run it as a job with --dataset mnist, or give --data path/to/mnist.npz")

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"

with np.load(args.data) as data:  # the Keras layout: uint8 images (n, 28, 28), labels (n,)
    x_train = torch.tensor(data["x_train"][: args.limit] / 255.0, dtype=torch.float32)
    y_train = torch.tensor(data["y_train"][: args.limit], dtype=torch.long)
    x_test = torch.tensor(data["x_test"][:2000] / 255.0, dtype=torch.float32)
    y_test = torch.tensor(data["y_test"][:2000], dtype=torch.long)


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.layers = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),  # logits: cross_entropy applies the softmax
        )

    def forward(self, x):
        return self.layers(self.flatten(x))


model = NeuralNetwork().to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()
print(model)

for epoch in range(1, args.epochs + 1):
    model.train()
    total_loss, correct = 0.0, 0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        x, y = x_train[batch].to(device), y_train[batch].to(device)
        logits = model(x)  # forward: autograd records each operation
        loss = loss_fn(logits, y)
        optimizer.zero_grad()  # gradients add up unless cleared
        loss.backward()  # backward: d loss / d parameter for every parameter
        optimizer.step()
        total_loss += loss.item() * len(batch)
        correct += (logits.argmax(1) == y).sum().item()

    model.eval()
    with torch.no_grad():  # evaluation: no graph, less memory, faster
        test_logits = model(x_test.to(device))
        val_loss = loss_fn(test_logits, y_test.to(device)).item()
        val_accuracy = (test_logits.argmax(1) == y_test.to(device)).float().mean().item()
    labtrain_job.report(
        epoch=epoch,
        loss=total_loss / len(x_train),
        accuracy=correct / len(x_train),
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        epochs=args.epochs,
    )

# The model takes (n, 28, 28) floats in 0..1: its page prepares drawn digits that way.
labtrain_job.save_model(model, x_test[:64], classes=[str(d) for d in range(10)])
