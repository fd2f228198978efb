"""The run queue (Amazon SQS): the API sends a run's id, the worker receives, extends, releases and deletes.

Messages are `{"run_id": "<uuid>"}`; everything else about a run lives in PostgreSQL. SQS delivers at least
once, so the worker makes the whole run idempotent (see worker.py). The SQS API calls made here, for IAM:
the API `sqs:SendMessage`; the worker `sqs:ReceiveMessage`, `sqs:ChangeMessageVisibility`,
`sqs:DeleteMessage`, and `sqs:SendMessage` (a run stopped at its last allowed receive is re-sent so the
stop does not push it to the dead-letter queue). Plus `kms:GenerateDataKey`/`kms:Decrypt` on the queue's key.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import boto3
from botocore.config import Config

MAX_WAIT_SECONDS = 20  # SQS long polling: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html


class MessageError(ValueError):
    """A message body that is not `{"run_id": "<uuid>"}` (it cannot be tied to a run)."""


@dataclass(frozen=True)
class RunMessage:
    """One received message: the run it names, the handle to extend/delete it, and how often SQS delivered it."""

    message_id: str
    receipt_handle: str
    receive_count: int
    body: str

    def run_id(self) -> UUID:
        try:
            doc = json.loads(self.body)
            return UUID(str(doc["run_id"]))
        except (ValueError, TypeError, KeyError):
            raise MessageError("message body is not {\"run_id\": \"<uuid>\"}") from None


def message_body(run_id: UUID) -> str:
    return json.dumps({"run_id": str(run_id)}, separators=(",", ":"))


class RunQueue:
    """Thin async wrapper over the boto3 SQS client (its calls run in threads; the client is thread-safe)."""

    def __init__(self, queue_url: str, region: str) -> None:
        self.url = queue_url
        # read timeout above the long-poll wait, so a waiting ReceiveMessage is never cut by the client
        self._client = boto3.client("sqs", region_name=region, config=Config(
            connect_timeout=5, read_timeout=MAX_WAIT_SECONDS + 10,
            retries={"mode": "standard", "max_attempts": 3}))

    async def send(self, run_id: UUID) -> str:
        """Enqueue a run; returns the SQS message id."""
        resp = await asyncio.to_thread(self._client.send_message, QueueUrl=self.url, MessageBody=message_body(run_id))
        return resp["MessageId"]

    async def receive(self, wait_seconds: int, visibility_timeout: int) -> list[RunMessage]:
        """Long-poll for at most one message, hidden from other consumers for `visibility_timeout` seconds."""
        resp: dict[str, Any] = await asyncio.to_thread(
            self._client.receive_message, QueueUrl=self.url, MaxNumberOfMessages=1,
            WaitTimeSeconds=max(0, min(MAX_WAIT_SECONDS, wait_seconds)), VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"])
        return [RunMessage(m["MessageId"], m["ReceiptHandle"],
                           int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")), m.get("Body", ""))
                for m in resp.get("Messages", [])]

    async def change_visibility(self, message: RunMessage, seconds: int) -> None:
        """Extend (heartbeat) or end (0: visible again now) the message's invisibility."""
        await asyncio.to_thread(self._client.change_message_visibility, QueueUrl=self.url,
                                ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds)

    async def delete(self, message: RunMessage) -> None:
        await asyncio.to_thread(self._client.delete_message, QueueUrl=self.url,
                                ReceiptHandle=message.receipt_handle)

    async def resend(self, message: RunMessage) -> None:
        """Put a fresh copy (receive count 0) and delete this one: a stop must not use up the run's receives."""
        await asyncio.to_thread(self._client.send_message, QueueUrl=self.url, MessageBody=message.body)
        await self.delete(message)
