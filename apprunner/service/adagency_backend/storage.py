"""Uploads go straight from the browser to S3 through presigned POSTs; the service never proxies bytes.

The POST policy pins the object key, the content type and a content-length range, so S3 itself refuses
another type or a bigger file. The bucket's default encryption (KMS) applies to every object.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

UPLOAD_URL_TTL_SECONDS = 300
ALLOWED_CONTENT_TYPES = {  # content type -> key suffix
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
}


@dataclass(frozen=True)
class PresignedUpload:
    key: str
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


class Storage:
    def __init__(self, bucket: str, region: str, max_upload_bytes: int) -> None:
        self.bucket = bucket
        self.max_upload_bytes = max_upload_bytes
        # virtual-hosted addressing gives regional URLs (bucket.s3.<region>.amazonaws.com): no 307 redirect
        # for new buckets outside us-east-1. A custom AWS_ENDPOINT_URL (tests) falls back to path style.
        self._s3 = boto3.client("s3", region_name=region, config=Config(
            signature_version="s3v4", s3={"addressing_style": "virtual"}, connect_timeout=5, read_timeout=10,
            retries={"mode": "standard", "max_attempts": 3}))

    def presign_upload(self, project_id: uuid.UUID, content_type: str, size_bytes: int) -> PresignedUpload:
        """A POST policy for exactly one object of this type and at most `size_bytes` (already validated)."""
        key = f"projects/{project_id}/uploads/{uuid.uuid4()}{ALLOWED_CONTENT_TYPES[content_type]}"
        post: dict[str, Any] = self._s3.generate_presigned_post(
            Bucket=self.bucket, Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, size_bytes]],
            ExpiresIn=UPLOAD_URL_TTL_SECONDS)
        return PresignedUpload(key, post["url"], post["fields"], UPLOAD_URL_TTL_SECONDS, size_bytes)

    async def ping(self, timeout: float) -> None:
        """Bucket reachable with our credentials (HeadBucket: needs s3:ListBucket on the bucket)."""
        async with asyncio.timeout(timeout):
            await asyncio.to_thread(self._s3.head_bucket, Bucket=self.bucket)
