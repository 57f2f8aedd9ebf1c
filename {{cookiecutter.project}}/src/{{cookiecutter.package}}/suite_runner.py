"""Run an expectation suite with Great Expectations and reduce each result to a record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation


SUITE_NAME = "raw"
VIEWS = f"{__package__}.data_docs"


def _expectations(suite: dict[str, Any]) -> list[Expectation]:
    """Build every expectation, failing loudly: GX would silently drop a malformed one."""
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    built = []
    for number, entry in enumerate(suite.get("expectations", []), start=1):
        fields = {key: entry[key] for key in ("type", "kwargs", "meta", "notes") if key in entry}
        try:
            built.append(ExpectationConfiguration(**fields).to_domain_obj())
        except Exception as error:
            raise ValueError(
                f"expectation #{number} ({entry.get('type')!r}) in the suite is invalid: {error}"
            ) from error
    return built


def run_suite(suite: dict[str, Any], frame: pd.DataFrame, docs: Path) -> dict[str, Any]:
    """Validate `frame` with a throwaway GX context; build its Data Docs site into `docs`."""
    # Imported here: GX takes seconds to import and only this stage needs it.
    import great_expectations as gx
    from great_expectations.checkpoint.actions import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX's tqdm bars would flood CI logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.add_data_docs_site(
        "local",
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs),
            },
            # GX's pages, their templates compiled once (data_docs.py).
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "view": {"module_name": VIEWS, "class_name": "IndexPageView"},
            },
            # SiteBuilder takes it; GX's TypedDict says it "may be incomplete", and is.
            "site_section_builders": {  # type: ignore[typeddict-unknown-key]
                section: {"view": {"module_name": VIEWS, "class_name": "PageView"}}
                for section in ("expectations", "validations")
            },
        },
    )
    batch = (
        context.data_sources.add_pandas("pandas")
        .add_dataframe_asset(SUITE_NAME)
        .add_batch_definition_whole_dataframe("whole dataframe")
    )
    gx_suite = context.suites.add(
        gx.ExpectationSuite(
            name=suite.get("name", SUITE_NAME),
            expectations=_expectations(suite),
            meta=dict(suite.get("meta") or {}),
        )
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=gx_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=SUITE_NAME,
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    (result,) = run.run_results.values()
    result = result.to_json_dict()
    records = [_summarise(entry) for entry in result["results"]]
    for record in records:
        if record["column"] and record["column"] not in frame.columns and not record["success"]:
            record["observed"] = "column is missing"  # clearer than GX's metric error
    # GX reorders results; report them in the suite's order, as a reviewer reads it.
    order = {
        _key(entry["type"], entry["kwargs"]): n for n, entry in enumerate(suite["expectations"])
    }
    records.sort(key=lambda record: order.get(_key(record["expectation"], record["kwargs"]), 0))
    return {
        "success": bool(result["success"]),
        "statistics": result["statistics"],
        "results": records,
    }


def _key(kind: str, kwargs: dict[str, Any]) -> str:
    return json.dumps([kind, kwargs], sort_keys=True, default=str)


def _summarise(result: dict[str, Any]) -> dict[str, Any]:
    """A GX expectation result reduced to what a person needs to act on it."""
    config = result["expectation_config"]
    kwargs = {key: value for key, value in config["kwargs"].items() if key != "batch_id"}
    details = result.get("result") or {}
    record = {
        "expectation": config["type"],
        "column": kwargs.get("column"),
        "success": bool(result["success"]),
        "kwargs": kwargs,
        "observed_value": details.get("observed_value"),
        "unexpected_count": details.get("unexpected_count"),
        "unexpected_percent": details.get("unexpected_percent"),
        # Distinct values, so five rows of the same bad value read as one example.
        "unexpected_examples": _distinct(details.get("partial_unexpected_list") or [])[:5],
    }
    record["observed"] = _observed(record, details, _errors(result.get("exception_info") or {}))
    return record


def _observed(record: dict[str, Any], details: dict[str, Any], errors: list[str]) -> str:
    """What the data showed, in words: the text of the report's `observed` column."""
    mismatched = (details.get("details") or {}).get("mismatched") or {}
    if errors:
        record["error"] = errors[0]
        return f"could not run: {errors[0]}"
    if mismatched:
        record["missing_columns"] = mismatched.get("missing", [])
        record["unexpected_columns"] = mismatched.get("unexpected", [])
        return (
            f"missing columns {record['missing_columns']}, "
            f"unexpected columns {record['unexpected_columns']}"
        )
    if record["expectation"] == "expect_column_to_exist":
        return "present" if record["success"] else "column is missing"
    if record["expectation"] == "expect_table_columns_to_match_set":
        return f"{len(record['observed_value'] or [])} columns as expected"
    count = record["unexpected_count"]
    if count is None:
        return _short(record["observed_value"])
    examples = ", ".join(_short(value) for value in record["unexpected_examples"])
    if "mostly" in record["kwargs"]:
        meeting = 100 - (record["unexpected_percent"] or 0.0)
        text = f"{meeting:.1f}% of values meet it, needs {record['kwargs']['mostly']:.1%}"
    else:
        text = f"{count} unexpected values"
    return text + (f", e.g. {examples}" if count and not record["success"] else "")


def _errors(info: dict[str, Any]) -> list[str]:
    """GX puts one exception at the top level, or several keyed by metric."""
    if "raised_exception" in info:
        entries = [info]
    else:
        entries = [entry for entry in info.values() if isinstance(entry, dict)]
    return [entry["exception_message"] for entry in entries if entry.get("raised_exception")]


def _distinct(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
