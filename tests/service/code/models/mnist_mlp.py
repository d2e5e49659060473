"""The course's 784-input MLP on MNIST digits (x / 255.0), saved with save_model: it answers
predict with JSON rows of 784 values and with pictures of digits."""

import numpy as np
import torch

import labtrain_job

with np.load(labtrain_job.dataset_path()) as data:
    x = torch.tensor(data["x_train"][:3000].reshape(-1, 784) / 255.0, dtype=torch.float32)
    y = torch.tensor(data["y_train"][:3000], dtype=torch.long)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(1, 6):
    for start in range(0, len(x), 100):
        loss = torch.nn.functional.cross_entropy(model(x[start : start + 100]), y[start : start + 100])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    labtrain_job.report(epoch=epoch, loss=loss.item())
labtrain_job.save_model(model, x[:8], classes=[str(d) for d in range(10)])
