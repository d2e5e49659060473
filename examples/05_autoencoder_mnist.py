"""Course topic: CNN, encoder-decoder and GAN (the encoder-decoder).

A convolutional autoencoder on MNIST: the encoder squeezes each 28x28 digit into --code
numbers, the decoder rebuilds the image from them, and the loss is how far the rebuilt image
is from the original. Reconstruction losses are reported each epoch, outputs/reconstructions.png
shows test digits (top row) above their reconstructions, and the autoencoder is saved: its
model answers an image of shape (1, 28, 28), values 0..1, with its reconstruction.

    labtrain run examples/05_autoencoder_mnist.py --dataset mnist -- --epochs 3
    python examples/05_autoencoder_mnist.py --data mnist.npz          # outside labtrain
"""

import argparse

import numpy as np
import torch
from PIL import Image
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=2e-3)
parser.add_argument("--code", type=int, default=16, help="numbers per image in the bottleneck")
parser.add_argument("--limit", type=int, default=6000, help="training images used (MNIST has 60000)")
parser.add_argument("--data", default=labtrain_job.dataset_path(), help="mnist.npz (default: the job's data set)")
args = parser.parse_args()
if args.data is None:
    parser.error("no MNIST here: run it as a job with --dataset mnist, or give --data path/to/mnist.npz")

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"

with np.load(args.data) as data:  # images as (n, 1, 28, 28) floats in 0..1: channels first, as PyTorch wants
    x_train = torch.tensor(data["x_train"][: args.limit, None] / 255.0, dtype=torch.float32)
    x_test = torch.tensor(data["x_test"][:1000, None] / 255.0, dtype=torch.float32)


class Autoencoder(nn.Module):
    def __init__(self, code: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),  # 16 x 14 x 14
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),  # 32 x 7 x 7
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, code),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, 32 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),  # 16 x 14 x 14
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),  # 1 x 28 x 28
            nn.Sigmoid(),  # pixels in 0..1
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))


model = Autoencoder(args.code).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.BCELoss()  # each pixel as the probability of ink; nn.MSELoss() works too

for epoch in range(1, args.epochs + 1):
    model.train()
    total = 0.0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        x = x_train[batch].to(device)
        loss = loss_fn(model(x), x)  # the target is the input itself
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    model.eval()
    with torch.no_grad():
        rebuilt = model(x_test.to(device))
        val_loss = loss_fn(rebuilt, x_test.to(device)).item()
        val_mse = ((rebuilt - x_test.to(device)) ** 2).mean().item()
    labtrain_job.report(epoch=epoch, loss=total / len(x_train), val_loss=val_loss, val_mse=val_mse, epochs=args.epochs)

pairs = np.concatenate([x_test[:10, 0].numpy(), rebuilt[:10, 0].cpu().numpy()], axis=1)  # (10, 56, 28)
strip = (pairs.transpose(1, 0, 2).reshape(56, 10 * 28) * 255).astype(np.uint8)
Image.fromarray(strip).resize((560, 112), Image.Resampling.NEAREST).save(
    labtrain_job.outputs_dir() / "reconstructions.png"
)
labtrain_job.save_model(model, x_test[:64], task="output")
