"""Health of a deployed environment for `adkit status`: image tag, backend, last frontend build, alarms.

Each part is a probe: (aws, inventory, context) -> dict or None (None: not this platform / nothing to show).
A backend platform adds its own probe to BACKEND_PROBES (App Runner and ECS here). A probe that AWS refuses
(permissions, throttling) reports {"error": ...} instead of failing the whole status.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from generator.contract import IMAGE_TAG_PARAMETER
from generator.deploy.session import Aws
from generator.ops.inventory import Inventory

Probe = Callable[[Aws, Inventory, dict], dict | None]


def _safe(probe: Probe, aws: Aws, inventory: Inventory, context: dict) -> dict | None:
    try:
        return probe(aws, inventory, context)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return {"error": f"{exc.operation_name}: {error.get('Code')}: {error.get('Message')}"}
    except BotoCoreError as exc:
        return {"error": str(exc)}


def app_runner(aws: Aws, inventory: Inventory, context: dict) -> dict | None:
    """App Runner: service Status (DescribeService) and running instances (the ActiveInstances metric, maximum
    over the last 5 minutes: DescribeService does not report instance counts).
    https://docs.aws.amazon.com/apprunner/latest/dg/monitor-cw.html"""
    arns = [r.physical_id for r in inventory.of_type("AWS::AppRunner::Service")]
    arn = inventory.outputs.get("BackendServiceArn") or (arns[0] if arns else "")
    if ":apprunner:" not in arn:
        return None
    service = aws.client("apprunner").describe_service(ServiceArn=arn)["Service"]
    now = datetime.now(UTC)
    datapoints = aws.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/AppRunner", MetricName="ActiveInstances", StartTime=now - timedelta(minutes=5), EndTime=now,
        Period=300, Statistics=["Maximum"],
        Dimensions=[{"Name": "ServiceName", "Value": service["ServiceName"]},
                    {"Name": "ServiceID", "Value": service["ServiceId"]}])["Datapoints"]
    running = int(max(d["Maximum"] for d in datapoints)) if datapoints else None
    return {"platform": "App Runner", "name": service["ServiceName"], "state": service["Status"],
            "running": running, "url": service.get("ServiceUrl", "")}


def ecs(aws: Aws, inventory: Inventory, context: dict) -> dict | None:
    """ECS services of the environment (an Express Mode backend, workers): running and desired task counts
    (DescribeServices). The ARN, arn:...:service/<cluster>/<service>, is the physical id of AWS::ECS::Service and
    the root output BackendServiceArn of an ECS backend (an Express Mode service's physical id is used when it
    has that form)."""
    found = [r.physical_id for t in ("AWS::ECS::Service", "AWS::ECS::ExpressGatewayService")
             for r in inventory.of_type(t)]
    output = inventory.outputs.get("BackendServiceArn", "")
    arns = list(dict.fromkeys([*([output] if ":ecs:" in output else []), *found]))
    arns = [arn for arn in arns if arn.startswith("arn:") and arn.count("/") == 2]
    if not arns:
        return None
    client = aws.client("ecs")
    services = []
    for arn in arns:
        cluster = arn.split("/")[1]
        for svc in client.describe_services(cluster=cluster, services=[arn]).get("services", []):
            services.append({"name": svc["serviceName"], "state": svc.get("status", ""),
                             "running": svc.get("runningCount", 0), "desired": svc.get("desiredCount", 0)})
    return {"platform": "ECS", "services": services}


BACKEND_PROBES: list[Probe] = [app_runner, ecs]


def amplify_job(aws: Aws, inventory: Inventory, context: dict) -> dict | None:
    """The last Amplify job of the environment's branch (ListJobs returns the newest first)."""
    app_id, branch = inventory.outputs.get("AmplifyAppId"), context.get("branch")
    if not app_id or not branch:
        return None
    jobs = aws.client("amplify").list_jobs(appId=app_id, branchName=branch, maxResults=1).get("jobSummaries", [])
    if not jobs:
        return {"branch": branch, "status": "no job yet"}
    job = jobs[0]
    started = job.get("startTime")
    return {"branch": branch, "job": job.get("jobId"), "type": job.get("jobType"), "status": job.get("status"),
            "commit": (job.get("commitId") or "")[:12], "started": started.isoformat() if started else None}


def alarms_in_alarm(aws: Aws, inventory: Inventory, context: dict) -> dict | None:
    """Alarms of the environment whose state is ALARM: the stacks' AWS::CloudWatch::Alarm resources, and every
    alarm named with the root stack's name as prefix (CloudFormation names an unnamed alarm
    `<stack name>-<logical id>-<suffix>`, and a nested stack's name starts with its root's)."""
    cloudwatch = aws.client("cloudwatch")
    found: dict[str, dict] = {}
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=f"{inventory.stack['StackName']}-", AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            found[alarm["AlarmName"]] = alarm
    named = sorted({r.physical_id for r in inventory.of_type("AWS::CloudWatch::Alarm")} - set(found))
    for i in range(0, len(named), 100):   # DescribeAlarms takes at most 100 names
        page = cloudwatch.describe_alarms(AlarmNames=named[i:i + 100])
        for alarm in page.get("MetricAlarms", []):
            found[alarm["AlarmName"]] = alarm
    firing = [{"name": a["AlarmName"], "since": a["StateUpdatedTimestamp"].isoformat(),
               "reason": a.get("StateReason", "")}
              for a in sorted(found.values(), key=lambda a: a["AlarmName"]) if a.get("StateValue") == "ALARM"]
    return {"watched": len(found), "in_alarm": firing}


def collect(aws: Aws, inventory: Inventory, context: dict) -> dict:
    """Everything `adkit status` adds to the stack states, as JSON-ready data."""
    stack = inventory.stack
    updated = stack.get("LastUpdatedTime") or stack.get("CreationTime")
    backends = [found for probe in BACKEND_PROBES if (found := _safe(probe, aws, inventory, context))]
    return {"ImageTag": inventory.parameters.get(IMAGE_TAG_PARAMETER),
            "LastUpdated": updated.isoformat() if updated else None,
            "Backend": backends,
            "Frontend": _safe(amplify_job, aws, inventory, context),
            "Alarms": _safe(alarms_in_alarm, aws, inventory, context)}


def lines(health: dict) -> list[tuple[str, str]]:
    """Human lines (text, rich style) for `collect`'s result."""
    out = [(f"  image tag: {health['ImageTag'] or 'none'}", "")]
    for backend in health["Backend"]:
        if "error" in backend:
            out.append((f"  backend: could not read: {backend['error']}", "yellow"))
        elif backend["platform"] == "App Runner":
            running = "unknown" if backend["running"] is None else backend["running"]
            style = "green" if backend["state"] == "RUNNING" else "bold red"
            out.append((f"  backend (App Runner {backend['name']}): {backend['state']}, {running} running "
                        "instance(s)", style))
        else:
            for svc in backend["services"]:
                style = "green" if svc["running"] >= svc["desired"] > 0 else "yellow"
                out.append((f"  {backend['platform']} service {svc['name']}: {svc['state']}, {svc['running']}/"
                            f"{svc['desired']} tasks running", style))
    front = health["Frontend"]
    if front and "error" in front:
        out.append((f"  frontend: could not read the Amplify jobs: {front['error']}", "yellow"))
    elif front:
        style = {"SUCCEED": "green", "FAILED": "bold red", "CANCELLED": "yellow"}.get(front["status"], "yellow")
        job = f"job {front['job']} ({front['type']}, commit {front['commit'] or '-'}, started {front['started']}): " \
            if front.get("job") else ""
        out.append((f"  frontend branch {front['branch']}: last build {job}{front['status']}", style))
    alarms = health["Alarms"]
    if alarms and "error" in alarms:
        out.append((f"  alarms: could not read: {alarms['error']}", "yellow"))
    elif alarms:
        firing = alarms["in_alarm"]
        out.append((f"  alarms: {len(firing)} of {alarms['watched']} in ALARM", "bold red" if firing else "green"))
        out += [(f"    {a['name']} since {a['since']}: {a['reason']}", "red") for a in firing]
    return out
