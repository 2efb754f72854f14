"""The API's published description: every operation answers a typed schema, docs/openapi.json is what
the app serves, and each response model shows its record's fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.service.docs import openapi_text
from counterscan.service.schemas import RecordModel

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "openapi.json"
SCRIPT = ROOT / "scripts" / "write_openapi.py"

OPERATIONS = {
    ("get", "/v1/me"),
    ("get", "/v1/brands"),
    ("get", "/v1/brands/{brand}"),
    ("get", "/v1/brands/{brand}/assets"),
    ("post", "/v1/brands/{brand}/assets"),
    ("delete", "/v1/assets/{asset_id}"),
    ("get", "/v1/results"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("delete", "/v1/webhooks/{webhook_id}"),
    ("get", "/v1/webhooks/deliveries"),
    ("post", "/v1/check"),
    ("post", "/v1/check/signals"),
    ("get", "/v1/check/{check_id}"),
}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = Settings.load(home=tmp_path / "home", db_url=f"sqlite:///{tmp_path / 'api.sqlite'}", environ={})
    made = create_app(settings)
    yield made
    made.state.service.store.close()


def _typed(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """A named object with fields, or an array of them: not ``{}``, not an object of anything."""
    if "$ref" in schema:
        return bool(components[schema["$ref"].rsplit("/", 1)[-1]].get("properties"))
    if schema.get("type") == "array":
        return _typed(schema.get("items", {}), components)
    return schema.get("type") == "object" and bool(schema.get("properties"))


def test_every_operation_answers_a_typed_schema(app: FastAPI) -> None:
    document = app.openapi()
    components = document["components"]["schemas"]
    operations = {
        (method, path): item for path, methods in document["paths"].items() for method, item in methods.items()
    }
    assert set(operations) == OPERATIONS
    for (method, path), operation in operations.items():
        answers = {status: found for status, found in operation["responses"].items() if status.startswith("2")}
        assert len(answers) == 1, (method, path, answers)
        (answer,) = answers.values()
        schema = answer["content"]["application/json"]["schema"]
        assert _typed(schema, components), (method, path, schema)
        refused = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert components[refused["$ref"].rsplit("/", 1)[-1]]["required"] == ["detail"], (method, path)
    upload = operations[("post", "/v1/brands/{brand}/assets")]["responses"]
    assert set(upload) >= {"201", "401", "403", "404", "411", "413", "415"}
    # Absent rather than null: the check's answer documents these as optional and never null.
    check_answer = components["CheckAnswerOut"]
    assert "stored" not in check_answer["required"] and "anyOf" not in check_answer["properties"]["stored"]


def test_the_committed_document_is_what_the_app_serves(app: FastAPI) -> None:
    served = openapi_text(app)
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert committed == served, "docs/openapi.json is stale: run `python scripts/write_openapi.py` and commit it"
    assert json.loads(served)["info"]["version"] == app.version


@pytest.mark.slow
def test_the_script_writes_the_document_and_checks_a_stale_one(app: FastAPI, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    target = tmp_path / "openapi.json"

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(SCRIPT), "--target", str(target), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)

    assert script().returncode == 0
    assert target.read_text(encoding="utf-8") == openapi_text(app)
    stale = json.loads(target.read_text(encoding="utf-8"))
    del stale["paths"]["/v1/results"]
    stale["components"]["schemas"]["MemberOut"]["title"] = "Somebody"
    target.write_text(json.dumps(stale), encoding="utf-8")
    checked = script("--check")
    assert checked.returncode == 1
    assert "run: python scripts/write_openapi.py" in checked.stderr
    assert "+ path /v1/results" in checked.stderr and "~ schemas MemberOut" in checked.stderr


def _record_models(base: type[RecordModel] = RecordModel) -> Iterator[type[RecordModel]]:
    for model in base.__subclasses__():
        yield model
        yield from _record_models(model)


def test_each_record_model_shows_its_records_fields_in_order() -> None:
    models = list(_record_models())
    assert len(models) >= 10
    for model in models:
        shown = [name for name in model.model_fields if name not in model.extra_fields]
        kept = [field.name for field in fields(model.record_type) if field.name not in model.hidden_fields]
        assert shown == kept, f"{model.__name__} no longer matches {model.record_type.__name__}: decide what to show"
        assert list(model.model_fields)[len(shown) :] == list(model.extra_fields), model.__name__
