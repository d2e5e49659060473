"""The student's own module. Importing it writes a marker file: the API must never import it."""

import os
from pathlib import Path

import torch

MARKER = Path(os.environ.get("MARKER_DIR", "/tmp")) / "labtrain-student-module-imported"
MARKER.write_text("imported\n")


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))
