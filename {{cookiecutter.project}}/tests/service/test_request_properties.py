"""Property-based: generated requests against the running bento.

Valid records always get 200 and one prediction each; each kind of invalid record gets a
400 naming the field (or 415 for a wrong Content-Type), never a 5xx; the server answers a
valid request afterwards. Example counts stay modest: every example is a real HTTP call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package }}.model_card import Feature

pytestmark = pytest.mark.service

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FINITE = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
NOT_A_NUMBER = st.one_of(
    st.text(max_size=8), st.booleans(), st.lists(st.integers(), max_size=2), st.just({})
)


def value(feature: Feature) -> st.SearchStrategy:
    """A value the schema accepts for `feature`."""
    known = st.sampled_from(feature.categories) if feature.categories else FINITE
    return st.one_of(known, st.none()) if feature.nullable else known


def records_for(spec, min_size: int = 1, max_size: int = 5) -> st.SearchStrategy:
    record = st.fixed_dictionaries({f.name: value(f) for f in spec.features})
    return st.lists(record, min_size=min_size, max_size=max_size)


def assert_named(response: httpx.Response, loc: list) -> list[dict]:
    """A 400 whose details include one at `loc`; returns those details."""
    assert response.status_code == 400, response.text
    found = [d for d in response.json()["detail"] if d["loc"] == loc]
    assert found, response.text
    return found


@pytest.fixture(scope="module")
def predict(server) -> Iterator[Callable[..., httpx.Response]]:
    """`predict(body, content_type)` POSTs to the served /predict on one kept-alive client:
    a client made per request (connection and TLS context) cost ~20 ms, most of an example."""
    with httpx.Client(base_url=server, timeout=30) as client:

        def post(content: bytes, content_type: str = "application/json") -> httpx.Response:
            return client.post("/predict", content=content, headers={"Content-Type": content_type})

        yield post


@pytest.fixture(scope="module")
def spec(model):
    return model.spec


@pytest.fixture(scope="module")
def still_serving(predict, spec):
    """Check a valid one-record request still gets its prediction."""
    record = {f.name: (f.categories[0] if f.categories else 1.0) for f in spec.features}

    def check() -> None:
        response = predict(json.dumps({"records": [record]}).encode())
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 1

    return check


@PROPERTY
@given(data=st.data())
def test_valid_records_get_one_prediction_each(predict, spec, data):
    records = data.draw(records_for(spec))

    response = predict(json.dumps({"records": records}).encode())

    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["predictions"]) == len(records)
    if spec.classes is not None:
        assert set(answer["predictions"]) <= set(spec.classes)
        assert all(math.isclose(sum(row), 1.0) for row in answer["probabilities"])
    else:
        assert all(math.isfinite(v) for v in answer["predictions"])


@PROPERTY
@given(data=st.data())
def test_a_missing_feature_is_named(predict, spec, still_serving, data):
    required = [f.name for f in spec.features if not f.nullable]
    if not required:
        pytest.skip("every feature of this model may be missing")
    records = data.draw(records_for(spec))
    index = data.draw(st.integers(0, len(records) - 1))
    name = data.draw(st.sampled_from(required))
    del records[index][name]

    response = predict(json.dumps({"records": records}).encode())

    assert_named(response, ["records", index, name])
    still_serving()


@PROPERTY
@given(data=st.data())
def test_an_unknown_field_is_named(predict, spec, still_serving, data):
    records = data.draw(records_for(spec))
    index = data.draw(st.integers(0, len(records) - 1))
    name = data.draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in spec.names))
    records[index][name] = data.draw(FINITE)

    response = predict(json.dumps({"records": records}).encode())

    assert_named(response, ["records", index, name])
    still_serving()


@PROPERTY
@given(data=st.data())
def test_a_wrong_type_for_a_numeric_feature_is_named(predict, spec, still_serving, data):
    numeric = [f.name for f in spec.features if f.kind == "numeric"]
    records = data.draw(records_for(spec))
    index = data.draw(st.integers(0, len(records) - 1))
    name = data.draw(st.sampled_from(numeric))
    records[index][name] = data.draw(NOT_A_NUMBER)

    response = predict(json.dumps({"records": records}).encode())

    assert_named(response, ["records", index, name])
    still_serving()


@PROPERTY
@given(data=st.data(), token=st.sampled_from(["NaN", "Infinity", "-Infinity"]))
def test_a_non_finite_number_is_named(predict, spec, still_serving, data, token):
    # Python's json writes the non-standard NaN/Infinity literals that some clients send.
    numeric = [f.name for f in spec.features if f.kind == "numeric"]
    records = data.draw(records_for(spec))
    index = data.draw(st.integers(0, len(records) - 1))
    name = data.draw(st.sampled_from(numeric))
    records[index][name] = {"NaN": math.nan, "Infinity": math.inf}.get(token, -math.inf)

    response = predict(json.dumps({"records": records}).encode())

    [detail] = assert_named(response, ["records", index, name])
    assert detail["type"] == "finite_number"
    still_serving()


@PROPERTY
@given(data=st.data())
def test_an_unseen_category_is_named(predict, spec, still_serving, data):
    categorical = [f for f in spec.features if f.kind == "categorical"]
    if not categorical:
        pytest.skip("this model has no categorical feature (tests/model/test_own_data.py has)")
    records = data.draw(records_for(spec))
    index = data.draw(st.integers(0, len(records) - 1))
    feature = data.draw(st.sampled_from(categorical))
    records[index][feature.name] = data.draw(
        st.text().filter(lambda v: v not in feature.categories)
    )

    response = predict(json.dumps({"records": records}).encode())

    assert_named(response, ["records", index, feature.name])
    still_serving()


@settings(PROPERTY, max_examples=10)
@given(data=st.data())
def test_an_empty_or_oversized_batch_is_refused(predict, spec, params, still_serving, data):
    limit = params.serving.max_batch_size
    size = data.draw(st.sampled_from([0, limit + 1, limit + data.draw(st.integers(2, 50))]))
    record = data.draw(records_for(spec, min_size=1, max_size=1))[0]

    response = predict(json.dumps({"records": [record] * size}).encode())

    [detail] = assert_named(response, ["records"])
    assert detail["type"] == ("too_short" if size == 0 else "too_long")
    still_serving()


def _not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


@PROPERTY
@given(body=st.binary(min_size=1, max_size=200).filter(_not_json))
def test_a_body_that_is_not_json_gets_400(predict, still_serving, body):
    response = predict(body)

    assert response.status_code == 400, response.text
    assert response.json()["detail"], response.text
    still_serving()


@PROPERTY
@given(
    data=st.data(),
    media_type=st.sampled_from(
        ["text/plain", "text/csv", "application/xml", "application/x-www-form-urlencoded",
         "multipart/form-data", "application/octet-stream", "image/png"]
    ),
)  # fmt: skip
def test_a_wrong_content_type_gets_415_naming_it(predict, spec, still_serving, data, media_type):
    records = data.draw(records_for(spec, max_size=2))

    response = predict(json.dumps({"records": records}).encode(), media_type)

    assert response.status_code == 415, response.text
    assert media_type in response.json()["error"]
    still_serving()
