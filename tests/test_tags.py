"""Stable tags on every taggable resource; nothing volatile; App Runner tags never change per release."""

from __future__ import annotations

import re

import pytest
from cfn_helpers import all_templates

from generator import naming


def _tags(resource: dict) -> dict[str, str] | None:
    tags = resource.get("Properties", {}).get("Tags")
    if tags is None:
        return None
    if isinstance(tags, dict):
        return tags
    return {t["Key"]: t["Value"] for t in tags}


def _taggable(type_: str) -> bool:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", type_)
    return "Tags" in schema.schema.get("properties", {})


@pytest.fixture(scope="module")
def templates():
    return all_templates()


def test_every_taggable_resource_carries_the_four_stable_tags(templates):
    missing, checked = [], 0
    for path, tmpl in templates.items():
        for lid, res in tmpl.get("Resources", {}).items():
            if not res["Type"].startswith("AWS::") or not _taggable(res["Type"]):
                continue
            checked += 1
            tags = _tags(res) or {}
            absent = [k for k in naming.TAG_KEYS if k not in tags]
            if absent:
                missing.append(f"{path}:{lid} ({res['Type']}) lacks {absent}")
    assert checked, "no taggable resource found: the schema lookup in _taggable is broken"
    assert not missing, "\n".join(missing)


def test_tag_values_are_stable(templates):
    volatile = re.compile(r"\d{4}-\d{2}-\d{2}|[0-9a-f]{7,40}$")
    assert any(_tags(res) for tmpl in templates.values() for res in tmpl.get("Resources", {}).values())
    for path, tmpl in templates.items():
        for lid, res in tmpl.get("Resources", {}).items():
            for key, value in (_tags(res) or {}).items():
                assert isinstance(value, str), f"{path}:{lid} tag {key} is computed: {value}"
                assert not volatile.search(value), f"{path}:{lid} tag {key}={value} looks volatile"
