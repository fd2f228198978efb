"""Point-in-time restore of an environment's Aurora cluster into a NEW cluster (never in place).

The source cluster and its CloudFormation stack are not touched. The new cluster copies the source's
network placement, encryption key, parameter group, Serverless v2 scaling and IAM authentication, has
deletion protection on, gets a `db.serverless` writer (a restored cluster has no instances) and its own
RDS-managed master secret. How to use it afterwards is printed: docs/disaster-recovery.md explains why
the safe cut-over copies data back into the stack's cluster instead of repointing the stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError

from generator import naming
from generator.deploy import stacks
from generator.deploy.errors import DeployFailed, Interrupted, PreflightRefused, UsageError
from generator.deploy.session import Aws

CLUSTER_OUTPUT = "DatabaseClusterIdentifier"  # root stack output (generator/compose.py ROOT_OUTPUTS)
WRITER_CLASS = "db.serverless"
WRITER_SUFFIX = "-writer"
MAX_CLUSTER_ID = 63 - len(WRITER_SUFFIX)  # the writer's identifier must fit RDS's 63 characters too
FAILED_STATES = {"failed", "inaccessible-encryption-credentials", "inaccessible-encryption-credentials-recoverable",
                 "incompatible-restore", "incompatible-parameters", "incompatible-network", "storage-full",
                 "deleting"}


@dataclass(frozen=True)
class Plan:
    """Everything the restore will do, computed before the first write."""

    environment: str
    source_id: str
    target_id: str
    restore_time: datetime | None  # None: the latest restorable time
    window: tuple[datetime, datetime]
    cluster_params: dict
    writer_params: dict
    secret_kms_key: str | None
    log_group: dict | None  # {"name", "kmsKeyId", "retentionInDays"} for the new cluster's log export
    notes: list[str] = field(default_factory=list)

    @property
    def writer_id(self) -> str:
        return self.writer_params["DBInstanceIdentifier"]

    @property
    def when(self) -> str:
        return _iso(self.restore_time) if self.restore_time else f"latest restorable time (now {_iso(self.window[1])})"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """ISO 8601 with an explicit offset (`2026-05-01T12:30:00Z`, `...+02:00`); a bare local time is refused."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--to-time {text!r} is not an ISO 8601 time", "expected e.g. 2026-05-01T12:30:00Z",
                         "pass --to-time YYYY-MM-DDTHH:MM:SSZ (UTC) or --latest") from None
    if moment.tzinfo is None:
        raise UsageError(f"--to-time {text!r} has no time zone",
                         "a restore to the wrong hour restores the wrong data",
                         f"add Z for UTC ({text}Z) or an offset such as +02:00")
    return moment.astimezone(UTC)


def _aws_error(action: str, exc: Exception, todo: str) -> DeployFailed:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        why = f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    else:
        why = str(exc)
    return DeployFailed(action, why, todo)


def resolve_source(aws: Aws, stack_name: str, explicit: str | None) -> str:
    """The cluster to restore from: --source-cluster, else the root stack output DatabaseClusterIdentifier."""
    if explicit:
        return explicit
    try:
        stack = stacks.describe(aws, stack_name)
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(f"could not read stack {stack_name}", exc, "check the credentials and region") from None
    if stack is None:
        raise PreflightRefused(
            f"stack {stack_name} not found", "the source cluster is read from its output " + CLUSTER_OUTPUT,
            "deploy the environment first, or name the cluster with --source-cluster ID")
    found = stacks.outputs(stack).get(CLUSTER_OUTPUT)
    if not found:
        raise PreflightRefused(
            f"stack {stack_name} has no output {CLUSTER_OUTPUT}",
            "it was deployed from an older template or its data stack failed",
            "run `adkit deploy` with fresh templates, or name the cluster with --source-cluster ID")
    return found


def describe_cluster(rds, identifier: str) -> dict | None:
    try:
        return rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DBClusterNotFoundFault":
            return None
        raise


def _window(cluster: dict) -> tuple[datetime, datetime]:
    earliest, latest = cluster.get("EarliestRestorableTime"), cluster.get("LatestRestorableTime")
    if not earliest or not latest:
        raise PreflightRefused(
            f"cluster {cluster['DBClusterIdentifier']} has no restorable window yet",
            "Aurora reports EarliestRestorableTime/LatestRestorableTime only once continuous backups exist",
            "wait a few minutes after the cluster's creation, or restore from an AWS Backup recovery point "
            "(docs/disaster-recovery.md)")
    return earliest.astimezone(UTC), latest.astimezone(UTC)


def default_target(source_id: str, moment: datetime) -> str:
    """`<source>-pitr-YYYYMMDDHHMM`, shortened so the writer's identifier still fits 63 characters."""
    suffix = f"-pitr-{moment.astimezone(UTC):%Y%m%d%H%M}"
    return source_id[: MAX_CLUSTER_ID - len(suffix)].rstrip("-") + suffix


def _check_target(target_id: str) -> str:
    try:
        naming.checked("rds_cluster", target_id)
    except naming.NamingError as exc:
        raise UsageError(f"--target-cluster {target_id!r} refused", str(exc),
                         "use lower-case letters, digits and single hyphens, starting with a letter") from None
    if len(target_id) > MAX_CLUSTER_ID:
        raise UsageError(f"--target-cluster {target_id!r} refused",
                         f"it is {len(target_id)} characters; the writer instance {target_id}{WRITER_SUFFIX} "
                         "must fit RDS's 63", f"use at most {MAX_CLUSTER_ID} characters")
    return target_id


def _tags(rds, cluster: dict, source_id: str, when: str) -> list[dict]:
    """The source's own tags (not CloudFormation's reserved aws:* ones) plus where the data came from."""
    found = rds.list_tags_for_resource(ResourceName=cluster["DBClusterArn"]).get("TagList", [])
    tags = {t["Key"]: t["Value"] for t in found if not t["Key"].lower().startswith("aws:")}
    tags.update({"RestoredFrom": source_id, "RestoredToTime": when})
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _writer_of(rds, cluster: dict) -> dict | None:
    for member in cluster.get("DBClusterMembers", []):
        if member.get("IsClusterWriter"):
            try:
                return rds.describe_db_instances(DBInstanceIdentifier=member["DBInstanceIdentifier"])["DBInstances"][0]
            except ClientError:
                return None
    return None


def _log_group(aws: Aws, cluster: dict, target_id: str) -> tuple[dict | None, list[str]]:
    """The new cluster's PostgreSQL log group, created up front with the source group's KMS key and
    retention (the kit's rule: every log group is encrypted and expires). Without them, no export."""
    if "postgresql" not in (cluster.get("EnabledCloudwatchLogsExports") or []):
        return None, []
    source = f"/aws/rds/cluster/{cluster['DBClusterIdentifier']}/postgresql"
    groups = aws.client("logs").describe_log_groups(logGroupNamePrefix=source).get("logGroups", [])
    group = next((g for g in groups if g["logGroupName"] == source), None)
    if not group or not group.get("kmsKeyId") or not group.get("retentionInDays"):
        return None, [f"log export is off on the restored cluster: {source} has no KMS key or retention to copy"]
    return {"name": f"/aws/rds/cluster/{target_id}/postgresql", "kmsKeyId": group["kmsKeyId"],
            "retentionInDays": group["retentionInDays"]}, []


def writer_params(target_id: str, engine: str, tags: list[dict], source_writer: dict | None) -> dict:
    """CreateDBInstance parameters of the restored cluster's writer; Performance Insights as on the source."""
    writer = {
        "DBInstanceIdentifier": f"{target_id}{WRITER_SUFFIX}",
        "DBClusterIdentifier": target_id,
        "DBInstanceClass": WRITER_CLASS,
        "Engine": engine,
        "PromotionTier": 0,
        "PubliclyAccessible": False,
        "AutoMinorVersionUpgrade": True,
        "Tags": tags,
    }
    if source_writer and source_writer.get("PerformanceInsightsEnabled"):
        writer["EnablePerformanceInsights"] = True
        for key in ("PerformanceInsightsKMSKeyId", "PerformanceInsightsRetentionPeriod"):
            if source_writer.get(key):
                writer[key] = source_writer[key]
    return writer


def plan(aws: Aws, *, environment: str, stack_name: str, source: str | None, to_time: datetime | None,
         target: str | None) -> Plan:
    """Read-only: resolve and validate everything, build the exact API parameters."""
    rds = aws.client("rds")
    source_id = resolve_source(aws, stack_name, source)
    try:
        cluster = describe_cluster(rds, source_id)
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(f"could not describe cluster {source_id}", exc, "check the credentials and region") from None
    if cluster is None:
        raise PreflightRefused(
            f"source cluster {source_id} not found",
            f"no Aurora cluster with that identifier exists in {aws.region}",
            "check the name (`aws rds describe-db-clusters --query 'DBClusters[].DBClusterIdentifier'`) and "
            "pass --source-cluster ID")
    window = _window(cluster)
    if to_time is not None and not window[0] <= to_time <= window[1]:
        raise UsageError(
            f"cannot restore {source_id} to {_iso(to_time)}",
            f"it is outside the restorable window {_iso(window[0])} .. {_iso(window[1])} "
            f"(backup retention {cluster.get('BackupRetentionPeriod', '?')} days)",
            "pick a time inside the window, use --latest, or restore an older AWS Backup recovery point "
            "(docs/disaster-recovery.md)")
    target_id = _check_target(target or default_target(source_id, to_time or window[1]))
    if describe_cluster(rds, target_id) is not None:
        raise PreflightRefused(f"cluster {target_id} already exists",
                               "a restore never overwrites an existing cluster",
                               "pass another --target-cluster NAME, or delete the old restore first")
    when = _iso(to_time) if to_time else "latest"
    tags = _tags(rds, cluster, source_id, when)
    log_group, notes = _log_group(aws, cluster, target_id)

    params = {
        "DBClusterIdentifier": target_id,
        "SourceDBClusterIdentifier": source_id,
        "RestoreType": "full-copy",
        "DBSubnetGroupName": cluster["DBSubnetGroup"],
        "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])],
        "Port": cluster["Port"],
        "EnableIAMDatabaseAuthentication": bool(cluster.get("IAMDatabaseAuthenticationEnabled")),
        "DeletionProtection": True,
        "CopyTagsToSnapshot": True,
        "BackupRetentionPeriod": cluster.get("BackupRetentionPeriod", 7),
        "Tags": tags,
    }
    if to_time is None:
        params["UseLatestRestorableTime"] = True
    else:
        params["RestoreToTime"] = to_time
    if cluster.get("KmsKeyId"):
        params["KmsKeyId"] = cluster["KmsKeyId"]
    if cluster.get("DBClusterParameterGroup"):
        params["DBClusterParameterGroupName"] = cluster["DBClusterParameterGroup"]
    scaling = {k: v for k, v in (cluster.get("ServerlessV2ScalingConfiguration") or {}).items()
               if k in ("MinCapacity", "MaxCapacity", "SecondsUntilAutoPause")}
    if scaling:
        params["ServerlessV2ScalingConfiguration"] = scaling
    if cluster.get("EngineLifecycleSupport"):
        params["EngineLifecycleSupport"] = cluster["EngineLifecycleSupport"]
    if cluster.get("StorageType") == "aurora-iopt1":   # the API's default is Standard ("aurora")
        params["StorageType"] = "aurora-iopt1"
    if log_group:
        params["EnableCloudwatchLogsExports"] = ["postgresql"]
    if cluster.get("PerformanceInsightsEnabled"):
        params["EnablePerformanceInsights"] = True
        for key in ("PerformanceInsightsKMSKeyId", "PerformanceInsightsRetentionPeriod"):
            if cluster.get(key):
                params[key] = cluster[key]

    writer = writer_params(target_id, cluster["Engine"], tags, _writer_of(rds, cluster))
    secret = cluster.get("MasterUserSecret") or {}
    return Plan(environment=environment, source_id=source_id, target_id=target_id, restore_time=to_time,
                window=window, cluster_params=params, writer_params=writer,
                secret_kms_key=secret.get("KmsKeyId") if secret else None, log_group=log_group, notes=notes)


# ---- execution ----------------------------------------------------------------------------------

class Progress:
    """One line per status change on stderr, with the elapsed time."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}", file=self.err, flush=True)


class WaitTimeout(DeployFailed):
    """The time limit ran out while RDS was still working."""


def wait_available(fetch: Callable[[], str], label: str, *, progress: Progress, timeout: float,
                   poll: float) -> None:
    """Poll `fetch()` (a status string) until `available`; a failed state or the timeout raise."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status = fetch()
        if status != last:
            progress.say(f"{label}: {status}")
            last = status
        if status == "available":
            return
        if status in FAILED_STATES:
            raise DeployFailed(f"{label} is {status}", "RDS stopped the restore",
                               "read the RDS events (`aws rds describe-events --source-type db-cluster "
                               "--duration 120`), fix the cause and run the restore again with a new target")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{label} is still {status} when the time limit (--timeout-minutes) ran out",
                              "the restore keeps running in AWS; this command stopped waiting",
                              "check it with `aws rds describe-db-clusters` / `describe-db-instances` and "
                              "run the remaining steps in docs/disaster-recovery.md by hand")
        time.sleep(poll)


def remaining_steps(restore: Plan, done: str) -> str:
    """The commands still to run by hand once the step `done` ("restore", "writer" or "secret") was started."""
    writer = (f"aws rds wait db-cluster-available --db-cluster-identifier {restore.target_id}; "
              f"aws rds create-db-instance --db-instance-identifier {restore.writer_id} --db-cluster-identifier "
              f"{restore.target_id} --db-instance-class {WRITER_CLASS} --engine {restore.writer_params['Engine']} "
              "--no-publicly-accessible")
    secret = (f"aws rds wait db-instance-available --db-instance-identifier {restore.writer_id}; "
              f"aws rds modify-db-cluster --db-cluster-identifier {restore.target_id} --manage-master-user-password "
              f"--master-user-secret-kms-key-id {restore.secret_kms_key} --apply-immediately"
              if restore.secret_kms_key else "")
    todo = "; then ".join(step for step in {"restore": [writer, secret], "writer": [secret]}.get(done, []) if step)
    if todo:
        return f"finish by hand: {todo}; then follow the cut-over in docs/disaster-recovery.md"
    return (f"nothing is left to run: check `aws rds describe-db-clusters --db-cluster-identifier {restore.target_id}`"
            " and follow the cut-over in docs/disaster-recovery.md")


def execute(aws: Aws, restore: Plan, *, progress: Progress, timeout: float, poll: float) -> dict:
    """Create the log group, restore, add the writer, turn on the managed secret; return the new cluster.

    `timeout` bounds the whole run, not each wait. Ctrl-C stops waiting (RDS carries on) and names the
    commands left to run by hand.
    """
    started: list[str] = []   # steps whose API call went out: restore, writer, secret
    try:
        return _execute(aws, restore, started, progress=progress, deadline=time.monotonic() + timeout, poll=poll)
    except KeyboardInterrupt:
        if not started:
            raise Interrupted("restore interrupted before it started", "no cluster was created",
                              "run the command again") from None
        raise Interrupted(f"stopped waiting for {restore.target_id}",
                          "RDS carries on with what was already started; nothing was cancelled",
                          remaining_steps(restore, started[-1])) from None


def _execute(aws: Aws, restore: Plan, started: list[str], *, progress: Progress, deadline: float,
             poll: float) -> dict:
    rds = aws.client("rds")
    step = ""

    def left() -> float:
        return max(deadline - time.monotonic(), 0.0)

    def cluster() -> dict:
        return rds.describe_db_clusters(DBClusterIdentifier=restore.target_id)["DBClusters"][0]

    def writer_status() -> str:
        return rds.describe_db_instances(DBInstanceIdentifier=restore.writer_id)["DBInstances"][0]["DBInstanceStatus"]

    def secret_ready() -> str:
        """`available` once the cluster is and its managed secret is active. Right after ModifyDBCluster the
        cluster still reads `available` (it turns `modifying` a moment later), so the secret decides."""
        found = cluster()
        secret = (found.get("MasterUserSecret") or {}).get("SecretStatus")
        if found["Status"] != "available":
            return found["Status"]
        return "available" if secret in ("active", "impaired") else f"available, master secret {secret or 'pending'}"

    try:
        if restore.log_group:
            step = f"create log group {restore.log_group['name']}"
            logs = aws.client("logs")
            try:
                logs.create_log_group(logGroupName=restore.log_group["name"], kmsKeyId=restore.log_group["kmsKeyId"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                    raise
            logs.put_retention_policy(logGroupName=restore.log_group["name"],
                                      retentionInDays=restore.log_group["retentionInDays"])
        step = f"restore {restore.source_id} into {restore.target_id}"
        progress.say(f"restoring {restore.source_id} to {restore.when} into new cluster {restore.target_id}")
        rds.restore_db_cluster_to_point_in_time(**restore.cluster_params)
        started.append("restore")
        wait_available(lambda: cluster()["Status"], f"cluster {restore.target_id}", progress=progress,
                       timeout=left(), poll=poll)
        step = f"create writer instance {restore.writer_id}"
        progress.say(f"adding writer instance {restore.writer_id} ({WRITER_CLASS})")
        rds.create_db_instance(**restore.writer_params)
        started.append("writer")
        wait_available(writer_status, f"instance {restore.writer_id}", progress=progress, timeout=left(), poll=poll)
        if restore.secret_kms_key:
            step = f"turn on the RDS-managed master secret of {restore.target_id}"
            progress.say("turning on the RDS-managed master secret (a new password; the restored one is unknown)")
            rds.modify_db_cluster(DBClusterIdentifier=restore.target_id, ManageMasterUserPassword=True,
                                  MasterUserSecretKmsKeyId=restore.secret_kms_key, ApplyImmediately=True)
            started.append("secret")
            wait_available(secret_ready, f"cluster {restore.target_id}", progress=progress, timeout=left(),
                           poll=poll)
        return cluster()
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(f"could not {step}", exc,
                         "read the error; anything already created is listed by `aws rds describe-db-clusters "
                         f"--db-cluster-identifier {restore.target_id}` (delete it or retry with a new "
                         "--target-cluster)") from None
    except WaitTimeout as exc:
        raise WaitTimeout(exc.what, exc.why, remaining_steps(restore, started[-1])) from None


def summary(restore: Plan, cluster: dict, *, stack_name: str) -> str:
    """What was created and the exact cut-over steps (stdout)."""
    target, source = restore.target_id, restore.source_id
    endpoint, reader, port = cluster.get("Endpoint", "?"), cluster.get("ReaderEndpoint", "?"), cluster.get("Port")
    secret = (cluster.get("MasterUserSecret") or {}).get("SecretArn", "none (the source had no managed secret)")
    user = cluster.get("MasterUsername", "<master user>")
    database = cluster.get("DatabaseName") or "app"
    lines = [
        f"restored cluster:   {target} (from {source}, to {restore.when})",
        f"writer instance:    {restore.writer_id} ({WRITER_CLASS})",
        f"writer endpoint:    {endpoint}:{port}",
        f"reader endpoint:    {reader}:{port}",
        f"master secret:      {secret}",
        f"deletion protection: on; the stack {stack_name} and cluster {source} were not changed.",
        *[f"note: {note}" for note in restore.notes],
        "",
        "Cut-over (docs/disaster-recovery.md#restore-aurora-to-a-point-in-time):",
        "  The templates pin the data stack to its own cluster; they cannot adopt the restored cluster or a",
        "  snapshot of it, and a hand-edited DB_HOST on the App Runner service would be reverted by the next",
        "  deploy. The safe path copies data back into the stack's cluster:",
        "  1. Verify: from a host the database security group admits (e.g. a CloudShell VPC environment in an",
        "     app subnet with the connector security group), get the password with",
        f"     aws secretsmanager get-secret-value --secret-id '{secret}' --query SecretString --output text",
        f"     and run psql \"host={endpoint} port={port} dbname={database} user={user} sslmode=require\".",
        "  2a. Repair (some rows or tables): copy them across, e.g.",
        f"     pg_dump \"host={endpoint} dbname={database} user={user} sslmode=require\" --data-only -t TABLE \\",
        "       | psql \"host=<live DatabaseEndpoint> dbname=... user=... sslmode=require\"",
        "  2b. Roll the whole database back (maintenance window): pause the backend",
        "     (aws apprunner pause-service --service-arn <BackendServiceArn>), then",
        f"     pg_dump -Fc \"host={endpoint} dbname={database} user={user} sslmode=require\" -f restore.dump",
        "     pg_restore --clean --if-exists --no-owner -d \"host=<live DatabaseEndpoint> ...\" restore.dump",
        "     and resume it (aws apprunner resume-service --service-arn <BackendServiceArn>).",
        "  3. Clean up when done (the restored cluster costs ACU-hours until deleted):",
        f"     aws rds modify-db-cluster --db-cluster-identifier {target} --no-deletion-protection --apply-immediately",
        f"     aws rds delete-db-instance --db-instance-identifier {restore.writer_id}",
        f"     aws rds delete-db-cluster --db-cluster-identifier {target} \\",
        f"       --final-db-snapshot-identifier {target}-final",
    ]
    return "\n".join(lines)
