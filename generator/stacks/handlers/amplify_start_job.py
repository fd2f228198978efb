"""Custom resource: start an Amplify RELEASE build of one branch (CloudFormation never starts one).

Create and Update start a job: Update happens only when a build input changed (the backend URL or
another value the SSR build bakes in), and the running site keeps the old value until it rebuilds.
Delete calls nothing. Every invocation answers CloudFormation, with FAILED and the reason on error.
The file is inlined as the Lambda's index.py; only the standard library and boto3 are used.
"""

import json
import logging
import urllib.request

import boto3
from botocore.config import Config

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
# Bounded well inside the function's 60 s timeout, so a hanging API call still ends in an answer to
# CloudFormation (boto3's defaults, 60 s reads and legacy retries, could outlast the function).
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
RESPONSE_TIMEOUT_SECONDS = 15


def _client():
    return boto3.client("amplify", config=CLIENT_CONFIG)


def _send(event, context, status, reason, physical_id, data):
    """PUT the result to CloudFormation's presigned response URL."""
    body = json.dumps({
        "Status": status,
        "Reason": reason[:3000],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data,
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_SECONDS) as response:  # presigned https URL
        LOG.info("CloudFormation response sent: %s %s", status, response.status)


def start_job(app_id, branch_name, reason):
    result = _client().start_job(appId=app_id, branchName=branch_name, jobType="RELEASE", jobReason=reason)
    return result["jobSummary"]["jobId"]


def handler(event, context):
    request_type = event.get("RequestType", "?")
    props = event.get("ResourceProperties", {})
    app_id, branch = props.get("AppId", ""), props.get("BranchName", "")
    physical_id = event.get("PhysicalResourceId") or f"{app_id}/{branch}"
    LOG.info("%s for app %s branch %s", request_type, app_id, branch)  # never log ResponseURL (presigned)
    status, reason, data = "SUCCESS", "", {}
    try:
        if request_type in ("Create", "Update"):
            if not app_id or not branch:
                raise ValueError("AppId and BranchName are required")
            why = "first build after stack creation" if request_type == "Create" else "build inputs changed"
            data["JobId"] = start_job(app_id, branch, f"CloudFormation: {why}")
            physical_id = f"{app_id}/{branch}"
            reason = f"started RELEASE job {data['JobId']} ({why})"
        elif request_type != "Delete":
            raise ValueError(f"unknown RequestType {request_type!r}")
    except Exception as exc:  # anything unanswered would hang the stack
        LOG.exception("failed")
        status, reason, data = "FAILED", f"{type(exc).__name__}: {exc}", {}
    _send(event, context, status, reason or "nothing to do", physical_id, data)
    return {"Status": status, "Reason": reason}
