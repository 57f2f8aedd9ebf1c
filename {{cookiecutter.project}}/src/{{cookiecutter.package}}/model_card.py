"""What the model card (models/model.json) records and every layer reads without loading
the model: the feature spec, and the files of a packaged model.

Kept free of LightGBM and pandas: `bentoml serve` imports the service module in its
arbiter process only to read the service's definition, and that module needs the spec
(the request schema) but not the model, which loads in the worker that predicts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# The files of a packaged model, inside its BentoML model folder (package.save_model writes
# them; the service, batch scoring and the deploy checks read them).
MODEL_FILE, CARD_FILE, EVALUATION_FILE = "model.txt", "model.json", "evaluation.json"


class Feature(BaseModel):
    name: str
    kind: Literal["numeric", "categorical"]
    categories: list[str] | None = None  # categorical only, in training order
    nullable: bool = False


class FeatureSpec(BaseModel):
    """What the model expects: written to models/model.json and packed into the bento."""

    task: Literal["binary", "multiclass", "regression"]
    target: str
    features: list[Feature]
    classes: list[int | str] | None = None  # classification labels, index = class id
    id_columns: list[str] = []

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def class_labels(self) -> list[int | str]:
        """`classes`, for code that only runs for classifiers."""
        if self.classes is None:
            raise ValueError(f"spec.classes: a {self.task} model has no class labels")
        return self.classes
