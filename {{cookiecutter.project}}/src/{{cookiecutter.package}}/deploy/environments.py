"""The deployment environments: environments/*.yaml, validated and ordered by `requires`.

The one schema and loader of those files: the CD engine, `make ci-files` (cicd.py, also run
by the Cookiecutter hook), `environments sync` and the pipeline all read them through here,
so a file one of them refuses, every one refuses with the same message. Keep its imports to
pydantic and PyYAML: the hook runs the renderer with those and Jinja2 only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from ..config import Paths

# Shifts every environment's port, so two checkouts (or CI jobs) can deploy side by side.
PORT_OFFSET_VARIABLE = "DEPLOY_PORT_OFFSET"


class Approval(BaseModel):
    """Who must approve a deploy; `environments sync` applies it to GitHub or GitLab."""

    model_config = ConfigDict(extra="forbid")

    # Approvals required. GitHub needs named reviewers and counts one approval from any of them.
    reviewers: int = Field(0, ge=0)
    # GitHub logins / GitLab usernames, and GitHub team slugs / GitLab group paths.
    reviewer_users: list[str] = Field(default_factory=list)
    reviewer_teams: list[str] = Field(default_factory=list)
    prevent_self_review: bool = False
    # GitHub's limit: 30 days.
    wait_timer_minutes: int = Field(0, ge=0, le=43200)
    branches: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_need_a_count(self) -> Approval:
        if (self.reviewer_users or self.reviewer_teams) and self.reviewers == 0:
            raise ValueError(
                "reviewer_users/reviewer_teams are listed but reviewers is 0: "
                "set reviewers to the number of approvals required"
            )
        return self


class LoadTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: int = Field(gt=0)
    # A fraction of a second is allowed: the window starts at the service's first answer.
    seconds: int | float = Field(gt=0)


class Gates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, float] = Field(default_factory=dict)
    latency_p99_ms: float = Field(gt=0)
    min_rps: float = Field(ge=0)
    load_test: LoadTest


class LocalDeploy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["local"] = "local"
    port: int = Field(gt=0, lt=65536)


class HostDeploy(BaseModel):
    """A machine of the environment's own, reached by a CI runner registered on it: the bento
    keeps serving there after the job, under supervisor, behind nginx (see deploy/host.py)."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["host"]
    # GitHub `runs-on` labels / GitLab runner `tags` of the runner on that host.
    runner: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]] = Field(
        min_length=1
    )
    # Where nginx listens on the host; 0.0.0.0 to take traffic from other machines.
    address: str = Field("127.0.0.1", pattern=r"^[0-9a-fA-F.:]+$|^localhost$")
    port: int = Field(gt=0, lt=65536)
    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    # The environment's lasting folder on the host (supervisor, nginx, bentos, venvs).
    state_dir: str = Field(pattern=r"^(/|~/)[A-Za-z0-9_./-]+$")


class Resources(BaseModel):
    """Requests and limits of each pod, in Kubernetes quantities ("500m", "1Gi")."""

    model_config = ConfigDict(extra="forbid")

    cpu: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?([EPTGMk]i?)?$")


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1)
    cpu_percent: int = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class KubernetesDeploy(BaseModel):
    """A cluster: the bento as an image, behind a Deployment, Service and autoscaler."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["kubernetes"]
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    replicas: int = Field(ge=1)
    # The repository only: the tag is always the bento's version.
    image: str = Field(pattern=r"^[a-z0-9][a-z0-9._\-/:]*[a-z0-9]$")
    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    resources: Resources
    autoscaling: Autoscaling
    rollout_timeout_seconds: int = Field(300, gt=0)

    @model_validator(mode="after")
    def _untagged_image(self) -> KubernetesDeploy:
        if ":" in self.image.rsplit("/", 1)[-1]:
            raise ValueError(
                f"image {self.image!r} must be a repository without a tag: "
                "the tag is the bento's version"
            )
        return self


def _target(value: object) -> str:
    """Which target a deploy block is for; `local` when it says nothing."""
    found = value.get("target") if isinstance(value, dict) else getattr(value, "target", None)
    return found if isinstance(found, str) and found in ("kubernetes", "host") else "local"


Deploy = Annotated[
    Annotated[LocalDeploy, Tag("local")]
    | Annotated[KubernetesDeploy, Tag("kubernetes")]
    | Annotated[HostDeploy, Tag("host")],
    Discriminator(_target),
]


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    requires: str | None = None
    # Left out: the strictest mode, so a forgotten field never deploys by itself.
    promotion: Literal["auto", "semi-auto", "manual"] = "manual"
    approval: Approval | None = None
    gates: Gates
    deploy: Deploy

    @property
    def port(self) -> int:
        """The port the local target serves this environment on (the host target: nginx's)."""
        if isinstance(self.deploy, HostDeploy):
            return self.deploy.port
        if not isinstance(self.deploy, LocalDeploy):
            raise ValueError(f"environment {self.name} is on a cluster: it has no port")
        offset = os.environ.get(PORT_OFFSET_VARIABLE, "0") or "0"
        try:
            return self.deploy.port + int(offset)
        except ValueError:
            raise ValueError(
                f"${PORT_OFFSET_VARIABLE} must be an integer, not {offset!r}"
            ) from None

    @property
    def url(self) -> str:
        if isinstance(self.deploy, KubernetesDeploy | HostDeploy):
            return self.deploy.url.rstrip("/")
        return f"http://127.0.0.1:{self.port}"


def _field(location: tuple[int | str, ...]) -> str:
    # Drop the union's tag: `deploy.kubernetes.replicas` is `deploy.replicas` in the file.
    parts = [
        str(part)
        for index, part in enumerate(location)
        if not (index == 1 and location[0] == "deploy" and part in ("local", "kubernetes", "host"))
    ]
    return ".".join(parts) or "(top level)"


def _describe(error: ValidationError) -> str:
    return "; ".join(f"field {_field(item['loc'])}: {item['msg']}" for item in error.errors())


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
