"""A tiny image-folder data set for examples/03_cnn_image_folder.py: circles, squares and
triangles drawn with Pillow, each of random size, place and colours, saved as PNGs in one
folder per class and zipped the way a student zips their own pictures:

    shapes/circle/0000.png, shapes/circle/0001.png, ..., shapes/square/..., shapes/triangle/...

    python examples/make_shapes.py shapes.zip --per-class 150 --side 32
    curl -s -X POST $API/datasets -H "Authorization: Bearer $TOKEN" -F file=@shapes.zip   # -> its "id"
    labtrain run examples/03_cnn_image_folder.py --dataset <id> -- --epochs 8

Pillow only (no labtrain, no downloads); `--folder` keeps the unzipped folder too.
"""

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ["circle", "square", "triangle"]


def draw(shape: str, rng: np.random.Generator, side: int) -> Image.Image:
    """One light shape on a dark background, of random size, place and colours."""
    background = tuple(int(v) for v in rng.integers(0, 80, 3))
    colour = tuple(int(v) for v in rng.integers(140, 256, 3))
    img = Image.new("RGB", (side, side), background)
    extent = int(rng.integers(side // 2, side - 1))  # the shape's width and height
    left, top = (int(v) for v in rng.integers(0, side - extent + 1, 2))
    right, bottom = left + extent - 1, top + extent - 1
    pen = ImageDraw.Draw(img)
    if shape == "circle":
        pen.ellipse((left, top, right, bottom), fill=colour)
    elif shape == "square":
        pen.rectangle((left, top, right, bottom), fill=colour)
    else:
        pen.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=colour)
    return img


def make_shapes(per_class: int, side: int, seed: int = 0) -> dict[str, bytes]:
    """{"shapes/circle/0000.png": PNG bytes, ...}"""
    rng = np.random.default_rng(seed)
    files = {}
    for shape in SHAPES:
        for i in range(per_class):
            buffer = io.BytesIO()
            draw(shape, rng, side).save(buffer, format="PNG")
            files[f"shapes/{shape}/{i:04d}.png"] = buffer.getvalue()
    return files


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("zip", type=Path, help="the .zip to write, e.g. shapes.zip")
    parser.add_argument("--per-class", type=int, default=150, help="images per shape")
    parser.add_argument("--side", type=int, default=32, help="image width and height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="also write the images into this folder")
    args = parser.parse_args()

    files = make_shapes(args.per_class, args.side, args.seed)
    with zipfile.ZipFile(args.zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    if args.folder:
        for name, data in files.items():
            path = args.folder / name.split("/", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    print(f"{args.zip}: {len(files)} images, {args.per_class} per class ({', '.join(SHAPES)}), {args.side}x{args.side}")
