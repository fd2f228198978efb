"""Preflight, in order, before any write: credentials -> account and region -> bootstrap -> stack state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from generator import naming
from generator.deploy import aws_errors, stacks, stream
from generator.deploy.errors import DeployFailed, Interrupted, PreflightRefused
from generator.deploy.session import Aws
from generator.deploy.targets import Target
from generator.deploy.ui import Ui

BOOTSTRAP_REQUIRED_OUTPUTS = ("ArtifactBucketName", "EcrRepositoryUri")
# A change set or an empty REVIEW_IN_PROGRESS stack younger than this may belong to another operator's run that
# waits at its confirmation prompt; older ones count as abandoned.
OTHER_RUN_MINUTES = 60
PENDING_CHANGE_SET = ("CREATE_PENDING", "CREATE_IN_PROGRESS")


def identity(aws: Aws, target: Target) -> str:
    """Refuse unless the credentials are for the pinned account and the session is in the pinned region."""
    profile = f" (profile {aws.profile})" if aws.profile else ""
    try:
        account = aws.client("sts").get_caller_identity()["Account"]
    except NoCredentialsError:
        raise PreflightRefused(
            "no AWS credentials found",
            f"boto3 found none in the environment, the shared config or SSO{profile}",
            "log in (`aws sso login --profile NAME`) and pass --profile NAME or set AWS_PROFILE") from None
    except (ClientError, BotoCoreError) as exc:
        raise aws_errors.explain(exc, "checking the AWS credentials (STS GetCallerIdentity)", aws.profile) from None
    if account != target.account_id:
        raise PreflightRefused(
            f"refusing to touch {target.stack_name}",
            f"the credentials{profile} are for account {account}, but {target.config_file} pins "
            f"account_id = {target.account_id}",
            f"use credentials for account {target.account_id} (--profile or AWS_PROFILE), or correct "
            f"account_id in {target.config_file}")
    if aws.region != target.region:
        raise PreflightRefused(
            f"refusing to touch {target.stack_name}",
            f"the command runs in region {aws.region}, but {target.config_file} pins region = {target.region}",
            f"drop --region (the file decides) or correct region in {target.config_file}")
    return account


def bootstrap_outputs(aws: Aws, target: Target) -> dict[str, str]:
    """Outputs of the account-level bootstrap stack, which every other stack builds on."""
    name = naming.bootstrap_stack_name(target.app_name)
    stack = stacks.describe(aws, name)
    where = f"account {target.account_id}, region {target.region}"
    if stack is None:
        raise PreflightRefused(
            f"bootstrap stack {name} not found ({where})",
            "environments need its artifact bucket (for nested templates) and its ECR repository "
            "(for the backend image)",
            "run `adkit bootstrap` (make bootstrap) once per account and region, then retry")
    if stack["StackStatus"] not in stacks.USABLE_STATES:
        raise PreflightRefused(
            f"bootstrap stack {name} is {stack['StackStatus']}",
            "its outputs are not usable until it is created or updated successfully",
            "run `adkit bootstrap` again and read its error, or check `adkit status` for it in the console")
    found = stacks.outputs(stack)
    missing = [key for key in BOOTSTRAP_REQUIRED_OUTPUTS if not found.get(key)]
    if missing:
        raise PreflightRefused(
            f"bootstrap stack {name} lacks outputs {', '.join(missing)}",
            "it was deployed from an older template",
            "run `make render` and `adkit bootstrap` to update it, then retry")
    return found


def image_present(aws: Aws, repository_uri: str, tag: str) -> None:
    """Refuse an image tag that is not in ECR: App Runner would fail only after a long wait."""
    repository = repository_uri.split("/", 1)[1] if "/" in repository_uri else repository_uri
    try:
        aws.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ImageNotFoundException":
            raise
        raise PreflightRefused(
            f"image {repository}:{tag} not found",
            "App Runner can only start an image that exists; the stack would roll back after many minutes",
            f"push it first (the pipeline tags every build with its commit SHA) or pass an existing tag; "
            f"list them with `aws ecr list-images --repository-name {repository}`") from None


def stack_state(aws: Aws, target: Target) -> tuple[dict | None, bool]:
    """(existing stack or None, whether it is a dead first create to delete). Refuses a busy stack."""
    stack = stacks.describe(aws, target.stack_name)
    if stack is None:
        return None, False
    status = stack["StackStatus"]
    if status in stacks.DEAD_FIRST_CREATE:
        return stack, True
    if status == "REVIEW_IN_PROGRESS" and not stacks.resources(aws, stack["StackId"]):
        return stack, True
    if status.endswith("_IN_PROGRESS"):
        raise PreflightRefused(
            f"{target.stack_name} is busy ({status})",
            "CloudFormation runs one operation per stack at a time",
            f"wait for it to finish (`adkit status {target.label}`); to stop an update: "
            f"`aws cloudformation cancel-update-stack --stack-name {target.stack_name} --region {target.region}`")
    where = f"--stack-name {target.stack_name} --region {target.region}"
    if status == "UPDATE_ROLLBACK_FAILED":
        raise PreflightRefused(
            f"{target.stack_name} is UPDATE_ROLLBACK_FAILED",
            "a rollback could not restore some resources, and CloudFormation blocks updates until it completes",
            f"`adkit status {target.label}` names them; fix what blocks them, then, on this root stack, "
            f"`aws cloudformation continue-update-rollback {where}` (add `--resources-to-skip "
            "NestedStack.LogicalId` only for resources that cannot be restored); wait for UPDATE_ROLLBACK_COMPLETE "
            "and retry")
    if status == "ROLLBACK_FAILED":
        raise PreflightRefused(
            f"{target.stack_name} is ROLLBACK_FAILED",
            "its first create failed and the rollback could not delete everything; such a stack can only be deleted",
            f"`aws cloudformation delete-stack {where}` (add `--retain-resources <LogicalId ...>` for resources "
            "that refuse deletion and remove them by hand), then retry")
    if status == "DELETE_FAILED":
        raise PreflightRefused(
            f"{target.stack_name} is DELETE_FAILED",
            "a deletion could not remove some resources",
            f"read the events (`adkit status {target.label}`), remove the blocker, and delete the stack again: "
            f"`aws cloudformation delete-stack {where}`")
    return stack, False


def other_run(aws: Aws, target: Target, stack: dict, now: datetime | None = None) -> None:
    """Refuse while another run seems to be in progress on the stack: a change set created in the last
    OTHER_RUN_MINUTES that is still being created or waits to be executed (another `adkit deploy` at its prompt,
    a `plan`, the pipeline), or an empty REVIEW_IN_PROGRESS stack created that recently (another first deploy).
    Read-only."""
    now = now or datetime.now(UTC)
    recent = now - timedelta(minutes=OTHER_RUN_MINUTES)
    where = f"--region {target.region}"
    until = f"wait until it is done or at most {OTHER_RUN_MINUTES} minutes old (then it counts as abandoned)"
    for summary in _change_sets(aws, stack):
        created = summary.get("CreationTime")
        waiting = summary.get("Status") in PENDING_CHANGE_SET or (
            summary.get("Status") == "CREATE_COMPLETE" and summary.get("ExecutionStatus") == "AVAILABLE")
        if waiting and created is not None and created >= recent:
            description = summary.get("Description") or "no description"
            raise PreflightRefused(
                f"another run seems to be in progress on {target.stack_name}",
                f"change set {summary.get('ChangeSetName')} ({description}) was created at {created:%H:%M:%S %Z} "
                "and waits to be executed; running now would make it obsolete or delete the stack under it",
                f"{until}; if nobody uses it, delete it: `aws cloudformation delete-change-set --change-set-name "
                f"{summary.get('ChangeSetId')} {where}`, then retry")
    created = stack.get("CreationTime")
    if stack["StackStatus"] == "REVIEW_IN_PROGRESS" and created is not None and created >= recent:
        raise PreflightRefused(
            f"another run seems to be creating {target.stack_name}",
            f"the stack was created at {created:%H:%M:%S %Z} for a change set that is not executed yet "
            "(REVIEW_IN_PROGRESS)", f"{until}, then retry")


def _change_sets(aws: Aws, stack: dict) -> list[dict]:
    paginator = aws.client("cloudformation").get_paginator("list_change_sets")
    return [s for page in paginator.paginate(StackName=stack["StackId"]) for s in page.get("Summaries", [])
            if s.get("StackId") == stack["StackId"]]


def failed_create(aws: Aws, stack: dict, descriptions: dict[str, dict[str, str]] | None = None
                  ) -> list[stream.Event]:
    """Root causes of a dead first create, from its events (empty for a create that never started); descriptions:
    stack label -> logical id -> text, for the resources' names. Read-only."""
    if stack["StackStatus"] == "REVIEW_IN_PROGRESS":
        return []
    watcher = stream.Watcher(aws, stack["StackId"], descriptions or {}, None)
    watcher.poll()
    return stream.root_causes(watcher.events)


def delete_dead(aws: Aws, target: Target, stack: dict, ui: Ui, poll: float) -> None:
    """Delete a stack whose first create failed or was never executed (the caller has asked), and wait."""
    aws.client("cloudformation").delete_stack(StackName=stack["StackId"])
    try:
        final = stacks.wait_settled(aws, stack["StackId"], poll)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while the dead stack {target.stack_name} is being deleted",
                          "CloudFormation carries on deleting it; nothing new was created",
                          f"run `{target.cli_name}` again once `adkit status {target.label}` says it is gone") from None
    if final is not None and final["StackStatus"] != "DELETE_COMPLETE":
        raise DeployFailed(
            f"could not delete the dead stack {target.stack_name}",
            f"it ended in {final['StackStatus']}: {final.get('StackStatusReason') or 'no reason given'}",
            "read its events in the CloudFormation console, delete it there (retaining what blocks), retry")


def git_token_placeholder(aws: Aws, target: Target, ui: Ui, boot: dict[str, str]) -> bool:
    """Warn (never refuse) when the Git provider token secret still holds the random placeholder the bootstrap
    created it with: Amplify could not clone the frontend repository. Only the secret's versions are read (one
    version = nobody stored a value since it was created), never its value. Returns whether it warned."""
    arn = boot.get("GitTokenSecretArn")
    if not arn:
        return False
    try:
        versions = aws.advisory_client("secretsmanager").describe_secret(SecretId=arn).get("VersionIdsToStages")
    except (ClientError, BotoCoreError):
        return False  # advisory: a missing permission or secret is found by the deploy itself
    if versions is None or len(versions) > 1:
        return False
    ui.warn(f"the Git provider token secret ({arn.split(':')[-1]}) still holds the placeholder the bootstrap created "
            "it with: Amplify cannot clone the frontend repository and the frontend stack will fail. Store the "
            f"token first: `adkit secrets set git-token < token-file`")
    return True


def cost_allocation_tags(aws: Aws, target: Target, ui: Ui) -> list[str]:
    """Warn (never refuse) when the kit's tag keys are not active cost-allocation tags: until an administrator
    activates them, the tag-filtered budgets read 0 USD and never alert. Returns the inactive keys."""
    keys = list(naming.TAG_KEYS)
    try:
        found = aws.advisory_client("ce").list_cost_allocation_tags(TagKeys=keys, Type="UserDefined")
    except (ClientError, BotoCoreError) as exc:
        why = (f"{exc.response.get('Error', {}).get('Code')}: {exc.response.get('Error', {}).get('Message')}"
               if isinstance(exc, ClientError) else str(exc))
        why = " ".join(why.split())[:200]
        ui.info(f"Could not check the cost-allocation tags: Cost Explorer's ListCostAllocationTags failed ({why}); "
                "usually the role lacks ce:ListCostAllocationTags, or the account is a member of an organization "
                f"whose payer account holds the tags. Budgets need {', '.join(keys)} activated once "
                "(README: Operations).")
        return []
    active = {t["TagKey"] for t in found.get("CostAllocationTags", []) if t.get("Status") == "Active"}
    inactive = [k for k in keys if k not in active]
    if inactive:
        statuses = " ".join(f"TagKey={k},Status=Active" for k in inactive)
        ui.warn(f"cost-allocation tags not active: {', '.join(inactive)}. The {target.label} budgets and cost "
                "anomaly monitor filter on them and read 0 USD (no alerts) until an administrator activates "
                "them once per account (payer account in an organization): "
                f"aws ce update-cost-allocation-tags-status --cost-allocation-tags-status {statuses}")
    return inactive
