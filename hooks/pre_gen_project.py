"""Reject bad cookiecutter answers before anything is written.

Answers arrive as data (JSON), never pasted into code, so quotes and
non-ASCII text in them cannot break this script.
"""

import json
import keyword
import re
import sys
from typing import Any

ANSWERS: dict[str, Any] = json.loads(
    r"""
{{ cookiecutter | tojson }}
"""
)

# Import names the generated project depends on; a package named like one
# of them would shadow it.
DEPENDENCIES = {
    "bentoml", "great_expectations", "lightgbm", "locust", "matplotlib",
    "mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pytest", "sklearn",
    "typer", "yaml", "hypothesis", "httpx", "requests", "scipy", "packaging",
    "supervisor",
}  # fmt: skip
PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
CHOICES = {
    "ci": ("github+gitlab", "github", "gitlab"),
    "task": ("binary", "multiclass", "regression"),
    "python_version": ("3.11", "3.12"),
}


def check_project_name(value: str) -> str | None:
    """The human name must contain at least one letter or digit."""
    if not any(ch.isalnum() for ch in value):
        return f"project_name must contain a letter or digit, got {value!r}"
    return None


def check_project(value: str) -> str | None:
    """Distribution and directory name: lowercase words joined by hyphens."""
    if not PROJECT_PATTERN.match(value):
        return (
            "project must be lowercase letters and digits in words joined by "
            "single hyphens, starting with a letter (e.g. 'churn-model'), "
            f"got {value!r}"
        )
    return None


def check_package(value: str) -> str | None:
    """Import name: an identifier, not a keyword, not shadowing a module."""
    if not value.isidentifier() or not value.isascii():
        return f"package must be an ASCII Python identifier (e.g. 'churn_model'), got {value!r}"
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"package must not be a Python keyword, got {value!r}"
    if value in DEPENDENCIES or value in sys.stdlib_module_names:
        return (
            f"package {value!r} would shadow the module of the same name that the "
            "project imports; choose another name"
        )
    return None


def check_email(value: str) -> str | None:
    """A plausible address: one @, no spaces, a dot in the domain."""
    if not EMAIL_PATTERN.match(value):
        return f"email must look like name@example.com, got {value!r}"
    return None


def check_choices(answers: dict[str, Any]) -> list[str]:
    """Choice answers given on the command line must still be allowed values."""
    errors = []
    for key, allowed in CHOICES.items():
        if answers.get(key) not in allowed:
            errors.append(
                "{} must be one of {}, got {!r}".format(key, ", ".join(allowed), answers.get(key))
            )
    if not isinstance(answers.get("git_init"), bool):
        errors.append("git_init must be true or false, got {!r}".format(answers.get("git_init")))
    return errors


def validate(answers: dict[str, Any]) -> list[str]:
    """Return every problem with the answers, as messages naming the answer."""
    checks = [
        check_project_name(answers["project_name"]),
        check_project(answers["project"]),
        check_package(answers["package"]),
        check_email(answers["email"]),
    ]
    return [error for error in checks if error] + check_choices(answers)


def main() -> None:
    errors = validate(ANSWERS)
    for error in errors:
        print("ERROR: " + error, file=sys.stderr)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
