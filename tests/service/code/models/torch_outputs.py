"""A PyTorch model defined in the student's own module (shapes.py), trained briefly on random
data and saved with save_model; the inputs and the model's own outputs go to outputs/ so a
test can compare them with what the API's ONNX model answers."""

import numpy as np
import torch
from shapes import SmallNet  # importing it leaves a trace (see shapes.py)

import labtrain_job

torch.manual_seed(0)
x = torch.randn(300, 1, 8, 8)
y = (x.mean(dim=(1, 2, 3)) > 0).long()
model = SmallNet()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(1, 4):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    labtrain_job.report(epoch=epoch, loss=loss.item())
model.eval()
check = torch.randn(100, 1, 8, 8)
with torch.no_grad():
    expected = model(check).numpy()
np.savez(labtrain_job.outputs_dir() / "check.npz", x=check.numpy(), y=expected)
labtrain_job.save_model(model, check[:10], task="output")
