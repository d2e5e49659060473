"""Course topic: CNN, encoder-decoder and GAN (the GAN).

A generative adversarial network on MNIST digits: a generator turns random noise into
28x28 images, a discriminator tells them from real digits, and each learns against the other
(binary cross-entropy on the discriminator's logits). Both losses are reported each epoch, a
grid of generated digits goes to outputs/samples.png, and the generator is saved: its model
answers noise vectors of --latent numbers with images (values -1..1).

    labtrain run examples/04_gan_mnist.py --dataset mnist -- --epochs 5
    python examples/04_gan_mnist.py --data mnist.npz          # outside labtrain
"""

import argparse

import numpy as np
import torch
from PIL import Image
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=5e-4)
parser.add_argument("--latent", type=int, default=32, help="size of the noise vector")
parser.add_argument("--limit", type=int, default=6000, help="training images used (MNIST has 60000)")
parser.add_argument("--data", default=labtrain_job.dataset_path(), help="mnist.npz (default: the job's data set)")
args = parser.parse_args()
if args.data is None:
    parser.error("no MNIST here: run it as a job with --dataset mnist, or give --data path/to/mnist.npz")

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"

with np.load(args.data) as data:
    images = torch.tensor(data["x_train"][: args.limit] / 127.5 - 1, dtype=torch.float32)  # -1..1, like tanh
images = images.reshape(-1, 28 * 28).to(device)

generator = nn.Sequential(
    nn.Linear(args.latent, 256),
    nn.LeakyReLU(0.2),
    nn.Linear(256, 256),
    nn.LeakyReLU(0.2),
    nn.Linear(256, 28 * 28),
    nn.Tanh(),
    nn.Unflatten(1, (1, 28, 28)),
).to(device)
discriminator = nn.Sequential(
    nn.Flatten(),
    nn.Linear(28 * 28, 256),
    nn.LeakyReLU(0.2),
    nn.Linear(256, 256),
    nn.LeakyReLU(0.2),
    nn.Linear(256, 1),  # a logit: real (1) or generated (0)
).to(device)
g_optimizer = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
fixed_noise = torch.randn(64, args.latent, device=device)  # the same noise each epoch: watch it turn into digits

for epoch in range(1, args.epochs + 1):
    sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
    batches = torch.randperm(len(images), device=device).split(args.batch_size)
    for batch in batches:
        real = images[batch]
        ones, zeros = torch.ones(len(real), 1, device=device), torch.zeros(len(real), 1, device=device)
        fake = generator(torch.randn(len(real), args.latent, device=device))

        # The discriminator: real digits are 1, generated ones 0 (detach: leave the generator alone).
        real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
        d_loss = bce(real_logits, ones) + bce(fake_logits, zeros)
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()

        # The generator: make the discriminator say 1 for its images.
        g_loss = bce(discriminator(fake), ones)
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()

        sums["d_loss"] += d_loss.item()
        sums["g_loss"] += g_loss.item()
        sums["d_real"] += torch.sigmoid(real_logits).mean().item()  # D's belief that real digits are real
        sums["d_fake"] += torch.sigmoid(fake_logits).mean().item()  # ... and that generated ones are
    labtrain_job.report(epoch=epoch, **{k: v / len(batches) for k, v in sums.items()}, epochs=args.epochs)

generator.eval()
with torch.no_grad():
    samples = generator(fixed_noise).cpu().numpy()[:, 0]  # (64, 28, 28), -1..1
grid = ((samples.reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28) + 1) * 127.5).astype(np.uint8)
Image.fromarray(grid).resize((448, 448), Image.Resampling.NEAREST).save(labtrain_job.outputs_dir() / "samples.png")
labtrain_job.save_model(generator, fixed_noise, task="output")
