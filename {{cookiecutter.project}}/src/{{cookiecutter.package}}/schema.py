"""Request schema of the service, derived from the FeatureSpec the model was trained with.

A request is `{"records": [{<feature>: <value>, ...}, ...]}`. Each record names every
feature: numbers must be finite, categories must be ones seen in training, and unknown
fields are rejected, so a malformed request fails validation naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from .model_card import Feature, FeatureSpec

# Numbers arrive as JSON numbers: strict refuses "1.5" strings and booleans, accepts ints.
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _annotation(feature: Feature) -> Any:
    if feature.kind == "numeric":
        return FiniteFloat
    if not feature.categories:
        raise ValueError(f"categorical feature {feature.name!r} has no known categories")
    return Literal[tuple(feature.categories)]


def record_model(spec: FeatureSpec) -> type[BaseModel]:
    """One record: a field per feature, required unless the feature had missing values.

    Python names are positional (`f0`, `f1`, ...) and the feature names are aliases, so any
    column name works, even one that would shadow a BaseModel attribute such as `copy`.
    """
    fields: dict[str, Any] = {}
    for index, feature in enumerate(spec.features):
        annotation = _annotation(feature)
        if feature.nullable:
            fields[f"f{index}"] = (annotation | None, Field(None, alias=feature.name))
        else:
            fields[f"f{index}"] = (annotation, Field(alias=feature.name))
    return create_model(
        "Record",
        __config__=ConfigDict(extra="forbid", populate_by_name=False),
        **fields,
    )


def request_model(spec: FeatureSpec, max_batch_size: int) -> type[BaseModel]:
    """The body of POST /predict: 1..max_batch_size records."""
    record = record_model(spec)
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        # A model built at run time: valid for pydantic, not a static type for mypy.
        records=(list[record], Field(min_length=1, max_length=max_batch_size)),  # type: ignore[valid-type]
    )


def response_model(spec: FeatureSpec) -> type[BaseModel]:
    """The body /predict answers: one prediction per record (and, for classifiers, the
    probability of each class in `spec.classes` order).

    A concrete model rather than a `dict` return type: it documents the answer in the
    OpenAPI schema, and BentoML serialises it without building a JSON schema per response.
    """
    if spec.task == "regression":
        return create_model("PredictResponse", predictions=(list[float], ...))
    return create_model(
        "PredictResponse",
        predictions=(list[int | str], ...),
        probabilities=(list[list[float]], ...),
    )


def records_to_rows(records: list[BaseModel], spec: FeatureSpec) -> list[list[Any]]:
    """Validated records as rows of values in training order (`features.to_matrix` input)."""
    fields = [f"f{index}" for index in range(len(spec.features))]
    return [[getattr(record, field) for field in fields] for record in records]
