"""Package step: upload nested templates to the bootstrap bucket under content hashes.

Like `aws cloudformation package`, but a child is uploaded only when no object with its hash exists
(HeadObject), and the rewritten root stays in memory. An unchanged child keeps its URL, so an
unchanged environment produces an identical root and CloudFormation reports "no changes".
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from generator.deploy.errors import UsageError
from generator.deploy.session import Aws
from generator.deploy.templates import Loaded, is_local, nested_stacks

TEMPLATE_BODY_LIMIT = 51_200   # bytes; above this CreateChangeSet needs a TemplateURL


@dataclass
class Packaged:
    body: str                                  # the root template as JSON, child URLs rewritten
    url: str | None = None                     # set when the root itself had to be uploaded
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def s3_url(aws: Aws, bucket: str, key: str) -> str:
    return f"https://{bucket}.s3.{aws.region}.{aws.url_suffix}/{key}"


def _put(aws: Aws, bucket: str, key: str, data: bytes, result: Packaged, label: str) -> None:
    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
        result.reused.append(label)
        return
    except ClientError as exc:
        # without s3:ListBucket a missing key answers 403, not 404: try the upload, which says what is wrong
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound", "403", "Forbidden"):
            raise
    # The bucket's default encryption (SSE-KMS with its own key) applies; no header overrides it.
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-yaml")
    result.uploaded.append(label)


def _package(aws: Aws, loaded: Loaded, bucket: str, prefix: str, result: Packaged, label: str) -> bytes:
    """Upload the children of `loaded`, return its own (possibly rewritten) bytes."""
    if not loaded.children:
        return loaded.text.encode()
    body = copy.deepcopy(loaded.body)
    for lid, res in nested_stacks(body).items():
        props = res.get("Properties") or {}
        if lid not in loaded.children or not is_local(props.get("TemplateURL")):
            continue
        child_label = f"{label}/{lid}" if label else lid
        data = _package(aws, loaded.children[lid], bucket, prefix, result, child_label)
        key = f"{prefix}/{hashlib.sha256(data).hexdigest()}.yaml"
        _put(aws, bucket, key, data, result, child_label)
        props["TemplateURL"] = s3_url(aws, bucket, key)
    return json.dumps(body, indent=1).encode()


def package(aws: Aws, loaded: Loaded, bucket: str | None, prefix: str) -> Packaged:
    """Upload children to `bucket` under `prefix`; return the root body (or URL if it is too large)."""
    if loaded.children and not bucket:
        raise UsageError(f"{loaded.path} has nested stacks", "they are uploaded to the bootstrap artifact "
                         "bucket, and this target has none", "deploy nested templates as an environment")
    result = Packaged(body="")
    data = _package(aws, loaded, bucket or "", prefix, result, "")
    result.body = data.decode()
    if len(data) > TEMPLATE_BODY_LIMIT:
        if not bucket:
            raise UsageError(f"{loaded.path} is {len(data)} bytes", f"CloudFormation takes at most "
                             f"{TEMPLATE_BODY_LIMIT} bytes inline, and there is no artifact bucket yet to "
                             "upload it to", "split the template into nested stacks or make it smaller")
        key = f"{prefix}/{hashlib.sha256(data).hexdigest()}.yaml"
        _put(aws, bucket, key, data, result, "(root)")
        result.url = s3_url(aws, bucket, key)
    return result
