"""The code family's record in the job-family registry."""

from __future__ import annotations

from typing import Any

from service.code import search
from service.code.predict import OnnxPredictor
from service.code.spec import CodeRun, CodeSpec, Resources
from service.code.validate import validate_code
from service.core.config import Settings
from service.core.schema import describe_params
from service.jobs.families import Family, register


def catalog() -> dict[str, Any]:
    settings = Settings.from_env()
    return {
        "resources": describe_params(Resources),
        "defaults": {"memory_mb": settings.code_memory_mb, "cpus": 1},
        "limits": {
            "memory_mb": settings.max_memory_mb,
            "cpus": settings.max_cpus,
            "outputs_mb": settings.max_outputs_mb,
            "disk_mb": settings.max_job_disk_mb,
            "files": settings.code_max_files,
        },
        "sources": ["py", "ipynb", "zip", "tar.gz"],
        "job_module": {
            "import": "labtrain_job",
            "functions": ["report", "checkpoint_dir", "outputs_dir", "dataset_path", "keras_callback", "save_model"],
        },
    }


FAMILY = register(
    Family(
        name="code",
        key="code",
        summary="code (your own script)",
        title="Your own script or notebook",
        request_model=CodeSpec,
        run_model=CodeRun,
        validate=validate_code,
        catalog_key="code",
        catalog=catalog,
        kind=lambda spec: "code",
        trainer="workers.trainers.code",
        preemptible=True,  # the script is signalled (labtrain_job.preempted()) and stopped after the grace
        makes_model=False,
        no_model="a code job that saved no model (labtrain_job.save_model(model, example_input) saves one to "
        "serve); what it wrote to outputs/ is in its artifacts (GET /api/v1/jobs/<id>/artifacts)",
        predictors={"onnx": OnnxPredictor()},
        search=search.HOOKS,
        gpu_memory_mb=lambda settings: settings.gpu_memory_code_mb,
    )
)
