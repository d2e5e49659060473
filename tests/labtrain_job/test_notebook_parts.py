"""The job-side parts of notebooks and saved models, without a service: Colab's lines, the
parameters cell, the sanitizer the rendered page goes through, and save_model on a laptop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labtrain_job import colab, models
from labtrain_job.notebook import first_line, inject_parameters
from labtrain_job.render import clean_html

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("words", "names"),
    [
        (["numpy"], ["numpy"]),
        (["-q", "scikit-learn==1.5", "torch>=2", "--upgrade"], ["scikit-learn", "torch"]),
        (["-i", "https://example.org/simple", "Pillow[extra]", "-U"], ["Pillow"]),
        (["git+https://github.com/x/y"], ["git"]),  # a URL names no package we could have; it is "missing"
    ],
)
def test_pip_arguments_give_the_package_names(words, names):
    assert colab._requirements(words) == names


def test_a_requirements_file_is_read(tmp_path):
    (tmp_path / "req.txt").write_text("# pinned\nnumpy==2.0  # arrays\n\nrequests\n")
    assert colab._requirements(["-r", str(tmp_path / "req.txt"), "pandas"]) == ["numpy", "requests", "pandas"]


def test_pip_install_of_what_is_installed_says_so_and_of_what_is_not_lists_what_is(capsys):
    colab.pip_magic("install -q NumPy")
    assert "already installed: NumPy " in capsys.readouterr().out
    with pytest.raises(colab.PackageNotInstalled) as refused:
        colab.pip_magic("install numpy surely-not-a-package-here")
    message = str(refused.value)
    assert message.startswith("surely-not-a-package-here is not installed here, and jobs have no network")
    assert "numpy" in message.split("Installed here: ")[1]


def test_shell_pip_lines_become_the_magic():
    lines = ["!pip install torch\n", "  !pip3 -q install x\n", "print('!pip')\n"]
    assert colab._pip_lines_to_magic(lines)[0].startswith("%pip")
    assert colab._pip_lines_to_magic(lines)[2] == "print('!pip')\n"


def test_google_colab_cannot_be_imported_and_the_message_says_what_to_do():
    sys.meta_path.insert(0, colab._NoColab())
    try:
        with pytest.raises(ModuleNotFoundError) as refused:
            __import__("google.colab.drive")
    finally:
        sys.meta_path.pop(0)
    assert "dataset_path()" in str(refused.value)


def test_parameters_go_in_a_cell_after_the_tagged_one():
    book = new_notebook(
        cells=[new_code_cell("import x"), new_code_cell("lr = 0.1", metadata={"tags": ["parameters"]}), new_code_cell()]
    )
    inject_parameters(book, {"lr": 0.5, "name": "it's"})
    assert [c.source.splitlines()[0] for c in book.cells[:3]] == [
        "import x",
        "lr = 0.1",
        "# Parameters given to this job",
    ]
    injected = book.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    namespace: dict = {}
    exec(injected.source, namespace)  # the values come back exactly, quotes and all
    assert (namespace["lr"], namespace["name"]) == (0.5, "it's")


def test_without_a_parameters_cell_they_go_first_and_without_values_nothing_is_added():
    book = new_notebook(cells=[new_code_cell("a = 1")])
    inject_parameters(book, {})
    assert len(book.cells) == 1
    inject_parameters(book, {"a": 2})
    assert book.cells[0].source.endswith("a = 2") and book.cells[1].source == "a = 1"


def test_a_cells_first_line_skips_blank_lines_and_is_short():
    assert first_line("\n\n   x = 1\ny = 2") == "x = 1"
    assert len(first_line("z = '" + "a" * 500 + "'")) <= 200


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<iframe src='https://example.org'></iframe>",
        "<a href='javascript:alert(1)'>x</a>",
        "<svg><script>alert(1)</script></svg>",
        "<img src='http://127.0.0.1:8000/track.png'>",
        "<form action='/api/v1/jobs'><input name=a></form>",
        "<div style='background:url(http://evil/)'>x</div>",
        "<object data='x.swf'></object><embed src='x'>",
        "<math><mi xlink:href='javascript:alert(1)'>x</mi></math>",
        "<base href='http://evil/'><meta http-equiv='refresh' content='0;url=http://evil/'>",
    ],
)
def test_the_sanitizer_leaves_nothing_that_runs_or_fetches(markup):
    cleaned = clean_html(markup).lower()
    for danger in (
        "<script",
        "onerror",
        "<iframe",
        "javascript:",
        "http://",
        "https://",
        "<form",
        "<object",
        "<embed",
        "<base",
        "<meta",
    ):
        if danger in ("http://", "https://"):
            assert f'src="{danger}' not in cleaned and "url(" not in cleaned, cleaned
        else:
            assert danger not in cleaned, cleaned


def test_the_sanitizer_keeps_documents_and_embedded_pictures():
    markup = (
        "<h2>Results</h2><table><tr><th>acc</th></tr><tr><td>0.9</td></tr></table>"
        "<img src='data:image/png;base64,iVBORw0KGgo=' alt='curve'><a href='https://pytorch.org'>docs</a>"
    )
    cleaned = clean_html(markup)
    for kept in (
        "<h2>Results</h2>",
        "<td>0.9</td>",
        'src="data:image/png;base64,iVBORw0KGgo="',
        'href="https://pytorch.org"',
    ):
        assert kept in cleaned


def test_save_model_on_a_laptop_writes_a_scikit_learn_model_and_its_manifest(tmp_path, monkeypatch):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    monkeypatch.chdir(tmp_path)
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)
    models.save_model(model, x[:5], classes=["setosa", "versicolor", "virginica"])
    manifest = json.loads((tmp_path / "outputs" / "model" / "model.json").read_text())
    assert manifest["format"] == "skops" and manifest["trained_with"] == "sklearn"
    assert manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert (tmp_path / "outputs" / "model" / manifest["file"]).stat().st_size > 0


def test_save_model_says_in_the_job_that_a_function_will_not_be_served(tmp_path, monkeypatch):
    """labtrain loads scikit-learn's classes only: a function (even a numpy ufunc, which skops
    trusts by default) is refused here, with the fix, before the worker refuses it."""
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    monkeypatch.chdir(tmp_path)
    x, y = np.random.default_rng(0).random((40, 4)), np.arange(40) % 2
    for model, named in (
        (make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()), "numpy.log1p"),
        (make_pipeline(SelectKBest(f_classif, k=2), LogisticRegression()), "f_classif"),
    ):
        with pytest.raises(models.ModelExportError) as refused:
            models.save_model(model.fit(x, y), x[:5])
        assert named in str(refused.value) and "best_estimator_" in str(refused.value)
    models.save_model(LogisticRegression().fit(x, y), x[:5])  # the control: the estimator alone is saved


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: models.save_model(object(), np.zeros((2, 3))), "save_model takes a torch.nn.Module"),
        (lambda: models.save_model(None, np.zeros((2, 3)), preprocess={"colour": 1}), "preprocess must be a dict"),
    ],
)
def test_save_model_refuses_what_it_cannot_serve_and_says_why(call, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(models.ModelExportError) as refused:
        call()
    assert says in str(refused.value)


def test_a_torch_module_is_exported_with_the_modules_own_outputs(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")  # in every install (the cpu extra); absent only on a bare client
    import onnxruntime

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 3)
    )
    example = torch.rand(8, 1, 28, 28)
    models.save_model(net, example, classes=["a", "b", "c"])
    manifest = json.loads((tmp_path / "outputs" / "model" / "model.json").read_text())
    assert manifest["input"] == {"shape": [1, 28, 28], "dtype": "float32"} and manifest["output"]["shape"] == [3]
    session = onnxruntime.InferenceSession(str(tmp_path / "outputs" / "model" / "model.onnx"))
    batch = np.random.default_rng(1).random((100, 1, 28, 28), dtype=np.float32)  # 100 inputs, not the example
    with torch.no_grad():
        own = net(torch.from_numpy(batch)).numpy()
    onnx_outputs = session.run(None, {session.get_inputs()[0].name: batch})[0]
    np.testing.assert_allclose(onnx_outputs, own, rtol=1e-5, atol=1e-5)


def test_the_rendered_page_of_a_notebook_carries_no_script_and_forbids_requests():
    from labtrain_job.render import notebook_html

    book = new_notebook(
        cells=[
            new_code_cell(
                "x",
                outputs=[
                    nbformat.v4.new_output("display_data", data={"text/html": "<script>alert(1)</script><b>ok</b>"})
                ],
            )
        ]
    )
    page = notebook_html(book)
    assert "<script" not in page.lower() and "<b>ok</b>" in page
    assert "default-src 'none'" in page  # the page's own Content-Security-Policy


def test_the_template_ships_with_the_package():
    templates = Path(models.__file__).with_name("templates") / "labtrain"
    assert {p.name for p in templates.iterdir()} >= {"conf.json", "index.html.j2"}
