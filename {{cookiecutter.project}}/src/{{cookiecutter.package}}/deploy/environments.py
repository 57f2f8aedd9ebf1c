"""The deployment environments: environments/*.yaml, validated and ordered by `requires`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import Paths

# Shifts every environment's port, so two checkouts (or CI jobs) can deploy side by side.
PORT_OFFSET_VARIABLE = "DEPLOY_PORT_OFFSET"


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewers: int = Field(0, ge=0)
    prevent_self_review: bool = False
    wait_timer_minutes: int = Field(0, ge=0)
    branches: list[str] = Field(default_factory=list)


class LoadTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: int = Field(gt=0)
    seconds: int = Field(gt=0)


class Gates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, float] = Field(default_factory=dict)
    latency_p99_ms: float = Field(gt=0)
    min_rps: float = Field(ge=0)
    load_test: LoadTest


class Deploy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["local", "kubernetes"] = "local"
    port: int = Field(gt=0, lt=65536)


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    requires: str | None = None
    promotion: Literal["auto", "semi-auto", "manual"] = "manual"
    approval: Approval | None = None
    gates: Gates
    deploy: Deploy

    @property
    def port(self) -> int:
        """The port on 127.0.0.1 the local target serves this environment on."""
        offset = os.environ.get(PORT_OFFSET_VARIABLE, "0") or "0"
        try:
            return self.deploy.port + int(offset)
        except ValueError:
            raise ValueError(
                f"${PORT_OFFSET_VARIABLE} must be an integer, not {offset!r}"
            ) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"field {'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
        for item in error.errors()
    )


def load(file: Path) -> Environment:
    """One environment file, validated; errors name the file and the field."""
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{file}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{file}: expected a mapping of fields, got {type(document).__name__}")
    try:
        environment = Environment.model_validate(document)
    except ValidationError as error:
        raise ValueError(f"{file}: {_describe(error)}") from None
    if environment.name != file.stem:
        raise ValueError(
            f"{file}: field name: {environment.name!r} must match the file name {file.stem!r}"
        )
    return environment


def load_all(paths: Paths) -> dict[str, Environment]:
    """Every environment, each after the one it `requires` (test, preprod, production)."""
    folder = paths.root / "environments"
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no environment files (*.yaml) in {folder}")
    found = {file.stem: load(file) for file in files}
    for environment in found.values():
        if environment.requires is not None and environment.requires not in found:
            raise ValueError(
                f"{folder / (environment.name + '.yaml')}: field requires: no environment "
                f"named {environment.requires!r} (known: {', '.join(sorted(found))})"
            )
    ordered: dict[str, Environment] = {}
    while len(ordered) < len(found):
        ready = [
            env
            for name, env in found.items()
            if name not in ordered and (env.requires is None or env.requires in ordered)
        ]
        if not ready:
            cycle = sorted(set(found) - set(ordered))
            raise ValueError(f"{folder}: field requires forms a cycle between {', '.join(cycle)}")
        ordered.update((env.name, env) for env in ready)
    return ordered


def get(paths: Paths, name: str) -> Environment:
    """The environment called `name`; the error lists the ones that exist."""
    environments = load_all(paths)
    if name not in environments:
        raise ValueError(
            f"no environment {name!r}: environments/ defines {', '.join(environments)}"
        )
    return environments[name]
