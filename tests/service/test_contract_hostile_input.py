"""Hostile input against the running service: refused with one clear 4xx, never a 500, nothing half-stored.

Table-driven: adding the next hostile input is one line.
"""

from __future__ import annotations

import uuid

import localdev
import pytest

pytestmark = pytest.mark.slow


def _nested(depth: int) -> bytes:
    """Event data whose outermost object is level 1 and that has `depth` levels of objects/arrays."""
    inner = "1"
    for _ in range(depth - 1):
        inner = "[" + inner + "]"
    return b'{"type": "deep", "data": {"v": ' + inner.encode() + b"}}"


# id, raw JSON body of POST /projects/{id}/events, text the error message must contain (where it is)
UNSTORABLE_EVENTS = [
    ("nul-in-string", b'{"type": "t", "data": {"text": "a\\u0000b"}}', "data.text: contains the NUL"),
    ("nul-in-key", b'{"type": "t", "data": {"ok": {"a\\u0000": 1}}}', "data.ok.{key 1}: object key"),
    ("nul-deep-in-array", b'{"type": "t", "data": {"l": [1, ["x", "\\u0000"]]}}', "data.l[1][1]: contains the NUL"),
    ("lone-high-surrogate", b'{"type": "t", "data": {"s": "\\ud800"}}', "data.s: contains a lone UTF-16"),
    ("lone-low-surrogate-key", b'{"type": "t", "data": {"\\udfff": 1}}', "data.{key 1}: object key"),
    ("nan", b'{"type": "t", "data": {"n": NaN}}', "data.n: is NaN or infinite"),
    ("infinity", b'{"type": "t", "data": {"n": Infinity}}', "data.n: is NaN or infinite"),
    ("minus-infinity", b'{"type": "t", "data": {"n": [-Infinity]}}', "data.n[0]: is NaN or infinite"),
    ("overflow-to-infinity", b'{"type": "t", "data": {"n": 1e999}}', "data.n: is NaN or infinite"),
    ("nested-33", _nested(33), "nested more than 32 levels"),
    ("nested-256", _nested(256), "nested more than 32 levels"),
]


def _stored_events(service, project_id: str) -> int:
    out = service.pg.admin_sql(f"SELECT count(*) FROM project_events WHERE project_id = '{project_id}'",
                               db=localdev.DB_NAME)
    return int(out.strip().splitlines()[-1])


@pytest.mark.parametrize("body, message", [c[1:] for c in UNSTORABLE_EVENTS], ids=[c[0] for c in UNSTORABLE_EVENTS])
def test_contract_unstorable_event_data_is_422_and_nothing_is_stored(http, project, service, body, message):
    before = _stored_events(service, project["id"])
    resp = http.post(f"/projects/{project['id']}/events", content=body,
                     headers={"content-type": "application/json"})
    assert resp.status_code == 422, f"{resp.status_code} {resp.text}"
    error = resp.json()["error"]
    assert error["code"] == "validation_error"
    [detail] = error["details"]
    assert detail["field"] == "body.data" and message in detail["message"], detail
    assert _stored_events(service, project["id"]) == before


def test_contract_deepest_allowed_event_data_round_trips(http, project):
    resp = http.post(f"/projects/{project['id']}/events", content=_nested(32),
                     headers={"content-type": "application/json"})
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("body", [
    b'{"name": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",  # deeper than Python's parser recursion limit
    b'{"name": "\xe9t\xe9"}',  # not UTF-8
    b'{"name": ' + b"1" * 5000 + b"}",  # an integer over Python's 4300-digit conversion limit
], ids=["nesting-20000", "latin-1", "int-5000-digits"])
def test_contract_unparseable_bodies_are_400(http, body):
    resp = http.post("/projects", content=body, headers={"content-type": "application/json"})
    assert resp.status_code in (400, 422), f"{resp.status_code} {resp.text}"
    assert resp.json()["error"]["code"] in ("bad_request", "validation_error")


# Last-Event-ID: only 1-18 ASCII digits, no sign, no whitespace, no trailing newline, no other scripts' digits
BAD_EVENT_IDS = [
    ("query-trailing-newline", {"last_event_id": "5\n"}, {}),
    ("query-arabic-indic-digits", {"last_event_id": "\u0661\u0662"}, {}),
    ("query-fullwidth-digits", {"last_event_id": "\uff15"}, {}),
    ("query-plus-sign", {"last_event_id": "+5"}, {}),
    ("query-19-digits", {"last_event_id": "9" * 19}, {}),
    ("header-space-inside", {}, {"Last-Event-ID": "1 2"}),
    ("header-letters", {}, {"Last-Event-ID": "12a"}),
]


@pytest.mark.parametrize("params, headers", [c[1:] for c in BAD_EVENT_IDS], ids=[c[0] for c in BAD_EVENT_IDS])
def test_contract_last_event_id_only_ascii_digits(http, project, params, headers):
    resp = http.get(f"/projects/{project['id']}/events", params=params, headers=headers)
    assert resp.status_code == 400, f"{resp.status_code} {resp.text[:200]}"
    assert "ASCII digits" in resp.json()["error"]["message"]


# path: every method the path serves, as the Allow header must list them (FastAPI serves no HEAD)
ALLOW = [
    ("/projects", "DELETE", {"GET", "POST"}),
    ("/projects/{pid}", "POST", {"GET"}),
    ("/projects/{pid}/events", "DELETE", {"GET", "POST"}),
    ("/projects/{pid}/events", "PUT", {"GET", "POST"}),
    ("/projects/{pid}/uploads", "GET", {"POST"}),
    ("/healthz", "POST", {"GET"}),
]


@pytest.mark.parametrize("path, method, allowed", ALLOW, ids=[f"{m}-{p}" for p, m, _ in ALLOW])
def test_contract_405_allow_lists_every_method_of_the_path(http, project, path, method, allowed):
    resp = http.request(method, path.replace("{pid}", project["id"]))
    assert resp.status_code == 405, resp.text
    assert {m.strip() for m in resp.headers["allow"].split(",")} == allowed
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_contract_unknown_project_events_is_404_not_500(http):
    resp = http.post(f"/projects/{uuid.UUID(int=7)}/events", json={"type": "t", "data": {}})
    assert resp.status_code == 404, resp.text
