"""Image-folder data sets (a zip of class_name/image.png folders) through the API: what an
upload is described as and where it is stored; hostile or unusable archives refused with a
4xx that names the entry and leaves nothing on disk; network specs on such a data set."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from service.core import storage
from service.data import image_folders
from service.data.image_folders import read_image_folder
from tests.service.api.test_api_datasets_models import upload
from tests.service.data.test_images import _png_claiming
from tests.support.api import assert_error
from tests.support.shape_images import encode, shape_files, zipped

pytestmark = pytest.mark.fast

IMAGES = shape_files(per_class=3, side=8)
PNG = IMAGES["circle/0000.png"]
CNN = [
    {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
    {"type": "flatten"},
    {"type": "dense", "units": 2},
]


def uploads_on_disk(settings) -> list[str]:
    folder = settings.artifact_dir / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_an_upload_is_described_and_stored_without_its_top_folder_and_junk(client, alice, bob, settings):
    files = {f"shapes/{name}": data for name, data in IMAGES.items()}
    files["shapes/square/wide.png"] = encode(Image.new("L", (12, 6), 200))  # another size, and grey
    junk = {"__MACOSX/shapes/circle/._0000.png": b"junk", "shapes/.DS_Store": b"junk", "shapes/circle/Thumbs.db": b"x"}
    archive = zipped({**files, **junk}, folders=("shapes/", "shapes/circle/", "shapes/square/", "__MACOSX/"))
    created = upload(client, alice, archive, "shapes.zip")
    assert created.status_code == 201, created.get_json()
    dataset = created.get_json()
    assert dataset["kind"] == "images" and dataset["rows"] == 7 and dataset["task"] == "classification"
    assert dataset["classes"] == ["circle", "square"] and dataset["class_counts"] == {"circle": 3, "square": 4}
    assert dataset["image_size"] == [8, 8] and dataset["sizes_vary"] is True and dataset["color"] == "rgb"
    assert dataset["shape"] == [8, 8, 3]

    folder = storage.dataset_dir(settings, dataset["id"])
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(
        name.removeprefix("shapes/") for name in files
    )
    assert (folder / "square" / "wide.png").read_bytes() == files["shapes/square/wide.png"]
    assert client.get(f"/api/v1/datasets/{dataset['id']}", headers=alice).get_json() == dataset
    assert dataset["id"] in [d["id"] for d in client.get("/api/v1/datasets", headers=alice).get_json()["items"]]
    assert_error(client.get(f"/api/v1/datasets/{dataset['id']}", headers=bob), 404, "id")

    x, y, names = read_image_folder(folder, [4, 6], "grayscale")
    assert x.shape == (7, 4, 6, 1) and x.dtype == np.uint8 and names == ["circle", "square"]
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_grey_images_get_a_grey_input_no_larger_than_64_pixels_a_side(client, alice):
    grey = {f"{c}/{i}.png": encode(Image.new("L", (80, 100), 40 * i)) for c in ("a", "b") for i in range(2)}
    dataset = upload(client, alice, zipped(grey), "grey.zip").get_json()
    assert dataset["color"] == "grayscale" and dataset["image_size"] == [100, 80] and not dataset["sizes_vary"]
    assert dataset["shape"] == [64, 51, 1]


def test_a_top_folder_may_share_its_name_with_a_class(client, alice, settings):
    files = {f"shapes/{name}": data for name, data in IMAGES.items()} | {"shapes/shapes/0.png": PNG}
    dataset = upload(client, alice, zipped(files), "shapes.zip").get_json()
    assert dataset["classes"] == ["circle", "shapes", "square"]
    assert (storage.dataset_dir(settings, dataset["id"]) / "shapes" / "0.png").read_bytes() == PNG


def test_a_zip_without_a_suffix_is_told_from_an_npz_by_its_entries(client, alice):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    assert upload(client, alice, buffer.getvalue(), "arrays").get_json()["kind"] == "npz"
    assert upload(client, alice, zipped(IMAGES), "shapes").get_json()["kind"] == "images"
    assert upload(client, alice, buffer.getvalue(), "arrays.npz").get_json()["kind"] == "npz"


@pytest.mark.parametrize(
    "archive,entry,says",
    [
        (zipped({**IMAGES, "../evil.png": PNG}), "../evil.png", "climbs out"),
        (zipped({**IMAGES, "/etc/evil.png": PNG}), "/etc/evil.png", "absolute"),
        (zipped({**IMAGES, "circle\\..\\..\\evil.png": PNG}), "circle\\\\..", "backslash"),
        (zipped(IMAGES, links={"circle/link.png": "/etc/passwd"}), "circle/link.png", "link"),
        (zipped(IMAGES, devices=("circle/tty",)), "circle/tty", "not a file or a folder"),
        (zipped({**IMAGES, "circle/notes.png": b"just some text\n"}), "circle/notes.png", "not a PNG, JPEG or BMP"),
        (zipped({**IMAGES, "circle/cat.gif": encode(Image.new("L", (8, 8)), "GIF")}), "circle/cat.gif", "not a PNG"),
        (zipped({**IMAGES, "circle/cut.png": PNG[:-20]}), "circle/cut.png", "damaged or truncated"),
        (zipped({**IMAGES, "stray.png": PNG}), "stray.png", "not in a class folder"),
        (zipped({**IMAGES, "circle/big/0.png": PNG}), "circle/big/0.png", "nested too deep"),
        (zipped({**IMAGES, f"circle/{'é' * 130}.png": PNG}), "circle/éé", "overlong"),
        (zipped(IMAGES, folders=("triangle/",)), "triangle/", "holds no images"),
        (zipped({"circle/0.png": PNG, "circle/1.png": PNG}), "circle", "at least two class folders"),
        (zipped({"__MACOSX/._a.png": b"junk", ".DS_Store": b"junk"}), "", "holds no images"),
        (b"PK\x03\x04 not really a zip", "", "not a readable zip"),
    ],
    ids=[
        "dotdot",
        "absolute",
        "backslash",
        "symlink",
        "device",
        "text",
        "gif",
        "truncated",
        "no-class",
        "too-deep",
        "long-name",
        "empty-class",
        "one-class",
        "only-junk",
        "broken",
    ],
)
def test_hostile_or_unusable_archives_are_refused_naming_the_entry(client, alice, settings, archive, entry, says):
    error = assert_error(upload(client, alice, archive, "shapes.zip"), 422, "file", "invalid_dataset")
    assert says in error["message"] and entry in error["message"], error["message"]
    assert uploads_on_disk(settings) == []
    assert [d for d in client.get("/api/v1/datasets", headers=alice).get_json()["items"] if not d["builtin"]] == []


@pytest.fixture
def small_limits(app, settings):
    services = app.extensions["labtrain"]
    services.settings = dataclasses.replace(
        settings, max_dataset_images=7, max_dataset_bytes=200_000, max_image_pixels=10_000
    )
    return services.settings


@pytest.mark.parametrize(
    "files,entry,says",
    [
        ({**IMAGES, "square/extra.png": PNG, "square/extra2.png": PNG}, "", "more than 7 files"),
        ({**IMAGES, "square/zeros.png": bytes(5_000_000)}, "", "says it unpacks to 50"),
        ({**IMAGES, "square/big.png": encode(Image.new("L", (101, 100)))}, "square/big.png", "101x100 pixels"),
        ({**IMAGES, "square/bomb.png": _png_claiming(50_000, 50_000)}, "square/bomb.png", "declares more than"),
    ],
    ids=["too-many-images", "zip-bomb", "too-many-pixels", "pixel-bomb"],
)
def test_archives_past_the_limits_are_413_before_anything_is_decoded(client, alice, small_limits, files, entry, says):
    error = assert_error(upload(client, alice, zipped(files), "shapes.zip"), 413, "file", "invalid_dataset")
    assert says in error["message"] and entry in error["message"], error["message"]
    assert uploads_on_disk(small_limits) == []


def test_a_zip_that_lies_about_its_sizes_is_refused_naming_the_entry(client, alice, settings):
    honest = zipped({**IMAGES, "square/padded.png": PNG + bytes(10_000)})
    # The central directory claims the entry is 10 bytes; its deflated stream holds more.
    lying = honest.replace((len(PNG) + 10_000).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    error = assert_error(upload(client, alice, lying, "shapes.zip"), 422, "file", "invalid_dataset")
    assert "square/padded.png" in error["message"]
    assert uploads_on_disk(settings) == []


@pytest.fixture
def shapes(client, alice) -> str:
    return upload(client, alice, zipped(IMAGES), "shapes.zip").get_json()["id"]


def network(dataset: str, **fields) -> dict:
    return {"dataset": {"id": dataset}, "framework": "pytorch", "network": {"layers": CNN}, **fields}


def test_a_network_spec_resizes_to_the_common_size_unless_it_names_one(client, alice, shapes):
    job = client.post("/api/v1/jobs", json=network(shapes), headers=alice).get_json()
    assert job["spec"]["image"] == {"size": [8, 8], "color": "rgb"} and job["spec"]["input_shape"] == [8, 8, 3]
    asked = network(shapes, image={"size": [6, 10], "color": "grayscale"}, framework="tensorflow")
    job = client.post("/api/v1/jobs", json=asked, headers=alice).get_json()
    assert job["spec"]["image"] == {"size": [6, 10], "color": "grayscale"} and job["spec"]["input_shape"] == [6, 10, 1]
    lenet = client.post("/api/v1/jobs", json=network(shapes, network={"preset": "lenet"}), headers=alice)
    assert lenet.status_code == 201, lenet.get_json()


@pytest.mark.parametrize(
    "change,field",
    [
        ({"image": {"size": [0, 8]}}, "image.size.0"),
        ({"image": {"size": [8, 600]}}, "image.size.1"),
        ({"image": {"size": [8]}}, "image.size"),
        ({"image": {"color": "cmyk"}}, "image.color"),
        ({"image": {"colour": "rgb"}}, "image.colour"),
        ({"network": {"layers": [*CNN[:2], {"type": "dense", "units": 3}]}}, "network.layers.2"),
    ],
)
def test_bad_image_options_are_422_naming_the_field(client, alice, shapes, change, field):
    assert_error(client.post("/api/v1/jobs", json=network(shapes, **change), headers=alice), 422, field)


def test_image_options_need_an_image_folder_and_classic_jobs_refuse_one(client, alice, shapes, monkeypatch):
    on_digits = {**network(shapes, image={"size": [8, 8]}), "dataset": "digits"}
    assert_error(client.post("/api/v1/jobs", json=on_digits, headers=alice), 422, "image")
    classic = {"dataset": {"id": shapes}, "algorithm": "knn"}
    assert_error(client.post("/api/v1/jobs", json=classic, headers=alice), 422, "dataset.id")
    monkeypatch.setattr(image_folders, "MAX_ARRAY_BYTES", 1000)
    error = assert_error(client.post("/api/v1/jobs", json=network(shapes), headers=alice), 422, "image.size")
    assert "smaller image.size" in error["message"]
