"""Malformed prediction requests get a 4xx naming what is wrong, never a 5xx."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from {{ cookiecutter.package }} import features, smoke

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def record(params, raw_data, model) -> dict:
    """One valid held-out record."""
    held_out = features.split(raw_data, params)[1]
    return smoke.to_records(held_out.head(1), model.spec.names)[0]


@pytest.fixture(scope="module")
def numeric(model) -> str:
    return next(f.name for f in model.spec.features if f.kind == "numeric")


def post(
    server: str,
    body: dict | bytes | Iterator[bytes],
    content_type: str = "application/json",
    path: str = "/predict",
):
    """POST `body` (a dict as JSON, bytes as they are, an iterator of bytes streamed)."""
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": content_type}
    return httpx.post(f"{server}{path}", content=content, headers=headers, timeout=30)


def error_locations(response: httpx.Response) -> list[list]:
    return [detail["loc"] for detail in response.json()["detail"]]


def assert_still_serving(server: str, record: dict) -> None:
    response = post(server, {"records": [record]})
    assert response.status_code == 200, response.text


def test_a_missing_feature_is_named(server, record, numeric):
    incomplete = {k: v for k, v in record.items() if k != numeric}

    response = post(server, {"records": [record, incomplete]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 1, numeric]]
    assert_still_serving(server, record)


def test_an_unknown_field_is_named(server, record):
    response = post(server, {"records": [{**record, "shoe_size": 44}]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 0, "shoe_size"]]
    assert_still_serving(server, record)


def test_a_string_for_a_numeric_feature_is_named(server, record, numeric):
    response = post(server, {"records": [{**record, numeric: "twelve"}]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 0, numeric]]
    assert_still_serving(server, record)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_is_named(server, record, numeric, token):
    body = json.dumps({"records": [{**record, numeric: 0.0}]})
    body = body.replace(f'"{numeric}": 0.0', f'"{numeric}": {token}')

    response = post(server, body.encode())

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 0, numeric]]
    assert response.json()["detail"][0]["type"] == "finite_number"
    assert_still_serving(server, record)


def test_an_empty_records_list_is_rejected(server, record):
    response = post(server, {"records": []})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records"]]
    assert_still_serving(server, record)


def test_more_records_than_max_batch_size_are_rejected(server, record, params):
    response = post(server, {"records": [record] * (params.serving.max_batch_size + 1)})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records"]]
    assert_still_serving(server, record)


def test_exactly_max_batch_size_records_are_accepted(server, record, params):
    response = post(server, {"records": [record] * params.serving.max_batch_size})

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == params.serving.max_batch_size


@pytest.mark.parametrize(
    "body",
    [b"this is not json", b'{"records": [', b"", b"null", b"[]", b'{"records": {"a": 1}}'],
    ids=["text", "truncated", "empty", "null", "array", "records-not-a-list"],
)
def test_a_body_that_is_not_a_request_object_is_rejected(server, record, body):
    response = post(server, body)

    assert response.status_code == 400, response.text
    assert response.json()["detail"], response.text
    assert_still_serving(server, record)


def test_a_record_that_is_not_an_object_is_named(server, record):
    response = post(server, {"records": [record, 42]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 1]]


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain"]
)
def test_a_body_that_is_not_json_by_content_type_gets_415(server, record, content_type):
    response = post(server, {"records": [record]}, content_type=content_type)

    assert response.status_code == 415, response.text
    assert content_type in response.json()["error"]
    assert_still_serving(server, record)


@pytest.fixture(scope="module")
def limit(params) -> int:
    return params.serving.max_body_bytes


def padded(record: dict, size: int) -> bytes:
    """A valid one-record request, padded with JSON whitespace to exactly `size` bytes."""
    body = json.dumps({"records": [record]}).encode()
    return body + b" " * (size - len(body))


def in_chunks(body: bytes, size: int = 64 * 1024):
    """`body` as a stream: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert f"larger than {limit} bytes" in response.json()["error"]


@pytest.mark.parametrize("path", ["/predict", "/metadata"])
def test_a_body_one_byte_over_the_limit_gets_413_naming_the_limit(server, record, limit, path):
    response = post(server, padded(record, limit + 1), path=path)

    assert_too_large(response, limit)
    assert_still_serving(server, record)


def test_a_body_of_exactly_the_limit_is_answered(server, record, limit):
    response = post(server, padded(record, limit))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/predict", "/metadata"])
def test_a_streamed_body_over_the_limit_gets_413(server, record, limit, path):
    response = post(server, in_chunks(padded(record, 2 * limit)), path=path)

    assert "content-length" not in response.request.headers
    assert_too_large(response, limit)
    assert_still_serving(server, record)


def test_a_streamed_body_under_the_limit_is_answered(server, record):
    response = post(server, in_chunks(json.dumps({"records": [record] * 50}).encode(), 100))

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 50


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(server, limit):
    url = urlsplit(server)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(limit + 1))
    connection.endheaders()  # and not one byte of the body

    response = connection.getresponse()

    assert response.status == 413
    assert f"larger than {limit} bytes" in json.loads(response.read())["error"]
    connection.close()


def test_an_indented_max_batch_request_fits_well_within_the_limit(server, record, params, limit):
    body = json.dumps({"records": [record] * params.serving.max_batch_size}, indent=2).encode()

    response = post(server, body)

    assert response.status_code == 200, response.text
    assert len(body) < limit / 2, "max_body_bytes leaves little room for a max batch"
