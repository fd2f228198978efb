"""Account-level CI/CD pipeline: build once, test, deploy the first environment, smoke test, approve, deploy
the last one, and roll a failed deploy stage back.

Source (CodeConnections, push to the source branch) -> Build (backend tests against a real PostgreSQL and the
image pushed once as `<repo>:<commit sha>`, in parallel with the infrastructure gates and the packaged
templates) -> for every environment before the last: Deploy-<env> (CloudFormation CREATE_UPDATE) and
Smoke-<env> (CodeBuild: /healthz and one SSE event) -> Deploy-<last> (create the change set, a manual approval
linking to it, then execute exactly that change set; CloudFormation refuses it as OBSOLETE if the stack changed
after it was created, so what runs is what was reviewed).

Values of the bootstrap stack arrive by `Fn::ImportValue`. The CloudFormation deployment role's actions are
derived from the resource schemas of every type the environment templates use (`generator.deploy_permissions`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from awacs import cloudformation as awacs_cfn
from awacs import codebuild as awacs_codebuild
from awacs import codeconnections as awacs_connections
from awacs import ecr as awacs_ecr
from awacs import iam as awacs_iam
from awacs import kms as awacs_kms
from awacs import logs as awacs_logs
from awacs import s3 as awacs_s3
from awacs import secretsmanager as awacs_secrets
from awacs import sns as awacs_sns
from awacs.aws import (
    Action,
    Allow,
    Condition,
    Deny,
    Null,
    PolicyDocument,
    Statement,
    StringEquals,
    StringNotEquals,
)
from awacs.helpers.trust import make_simple_assume_policy
from troposphere import AWSHelperFn, GetAtt, ImportValue, Ref, Sub, Template, codebuild, codeconnections, iam, sns
from troposphere import codepipeline as cp

from generator import deploy_permissions, deploy_scopes, naming
from generator.cfn import add_output, describe, new_template, skip_checkov
from generator.components import deny_insecure_transport, log_group
from generator.config import AccountConfig, ConfigError, EnvironmentConfig, check_pipeline_environments

COMPONENT = "pipeline"
DESCRIPTION = "account-level CI/CD pipeline: build once, deploy, smoke test, approve, promote"

CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"  # Ubuntu 22.04; buildspecs pin the Python runtime
BACKEND_BUILDSPEC = "generator/buildspecs/backend.yml"
# The reference service (backend.source_dir = "apprunner") keeps its contract tests with the kit's tests (they
# read the rendered templates); any other backend keeps its tests under its own folder.
REFERENCE_SERVICE_DIR = "apprunner"
REFERENCE_SERVICE_TESTS = "tests/service"
INFRA_BUILDSPEC = "generator/buildspecs/infra.yml"
SMOKE_BUILDSPEC = "generator/buildspecs/smoke.yml"

SOURCE_ACTION = "Source"
SOURCE_ARTIFACT = "Source"
TEMPLATES_ARTIFACT = "Templates"
SOURCE_NAMESPACE = "SourceVariables"
COMMIT_ID = f"#{{{SOURCE_NAMESPACE}.CommitId}}"
PACKAGED_TEMPLATE = "packaged.yaml"   # <env>/packaged.yaml in the Templates artifact (infra build spec)
TEMPLATE_CONFIGURATION = "config.json"  # <env>/config.json: TemplateConfiguration with ImageTag = commit
# `aws cloudformation package` uploads nested templates under <prefix>/<env>/; the same prefix as
# `adkit deploy`, so the deployment role can read the templates of either way of deploying.
PACKAGE_PREFIX = "templates"
CHANGE_SET_NAME = "release"
CAPABILITIES = "CAPABILITY_IAM,CAPABILITY_NAMED_IAM,CAPABILITY_AUTO_EXPAND"
BACKEND_URL_OUTPUT = "BackendUrl"     # root stack output the smoke test calls
# SUPERSEDED: an execution waiting to enter a stage is replaced by a newer one, so the approver always
# reviews the newest release that passed the earlier stages instead of a queue of stale ones. A stage
# already running (including a pending approval) is never interrupted. Stage rollback works in this mode.
EXECUTION_MODE = "SUPERSEDED"

BACKEND_TIMEOUT_MINUTES = 45
INFRA_TIMEOUT_MINUTES = 30
SMOKE_TIMEOUT_MINUTES = 30  # /healthz retries (5 min) + one SSE event + a worker run (RUN_WAIT_SECONDS, 15 min)
QUEUED_TIMEOUT_MINUTES = 60

# A role or function CloudFormation names itself is `<stack>-<logical id>-<random>`; past the service's limit
# (64 for IAM roles and Lambda functions) only the first 25 characters of the stack name are kept (observed
# CloudFormation behaviour, not documented). The deployment role's IAM, PassRole and Lambda scopes match
# `<root stack>-*`, which only holds while the root stack name fits in that cut.
GENERATED_NAME_STACK_CHARS = 25

ARN, REGIONAL = deploy_scopes.ARN, deploy_scopes.REGIONAL  # `Fn::Sub` ARN heads, one definition


class Bootstrap:
    """Values exported by the bootstrap stack of this app."""

    def __init__(self, app: str) -> None:
        def imported(name: str) -> ImportValue:
            return ImportValue(naming.bootstrap_export(app, name))

        self.bucket = imported("ArtifactBucketName")
        self.key_arn = imported("ArtifactKeyArn")
        self.repository_name = imported("EcrRepositoryName")
        self.repository_uri = imported("EcrRepositoryUri")

    def objects(self, prefix: str) -> Sub:
        return Sub(f"{ARN}:s3:::${{Bucket}}/{prefix}", Bucket=self.bucket)

    def bucket_arn(self) -> Sub:
        return Sub(f"{ARN}:s3:::${{Bucket}}", Bucket=self.bucket)

    def repository_arn(self) -> Sub:
        return Sub(f"{ARN}:ecr:{REGIONAL}:repository/${{Name}}", Name=self.repository_name)


def _chain(account: AccountConfig, environments: list[EnvironmentConfig]) -> list[EnvironmentConfig]:
    check_pipeline_environments(account, environments)
    by_name = {env.name: env for env in environments}
    chain = [by_name[name] for name in account.pipeline_environments]
    too_long = [name for name in map(naming.root_stack_name, chain) if len(name) > GENERATED_NAME_STACK_CHARS]
    if too_long:
        raise ConfigError(f"pipeline_environments: root stack name(s) {too_long} longer than "
                          f"{GENERATED_NAME_STACK_CHARS} characters: CloudFormation cuts them out of the role and "
                          "function names it generates, so the deployment role's scopes would not match; "
                          "shorten app_name or the environment name")
    return chain


def backend_source(chain: list[EnvironmentConfig]) -> tuple[str, str]:
    """(Docker build context, test root) of the backend the pipeline builds once for every environment:
    `backend.source_dir`, which must be the same in every pipeline environment."""
    folders = sorted({config.backend.source_dir for config in chain})
    if len(folders) != 1:
        raise ConfigError(f"backend.source_dir: the pipeline builds one image for {', '.join(c.name for c in chain)}, "
                          f"so every pipeline environment must name the same folder (got {folders})")
    source_dir = folders[0]
    return source_dir, REFERENCE_SERVICE_TESTS if source_dir == REFERENCE_SERVICE_DIR else source_dir


def _policy(*statements: Statement) -> PolicyDocument:
    return PolicyDocument(Version="2012-10-17", Statement=list(statements))


def _fitting(sid: str, actions: list, resources: list) -> list[Statement]:
    """One statement, or several with the same actions (Sids numbered) when its resources alone would pass a
    managed policy's size (many pipeline environments)."""
    limit = deploy_permissions.MANAGED_POLICY_MAX_CHARS - deploy_permissions.POLICY_OVERHEAD_CHARS
    parts: list[list] = [[]]
    for resource in resources:
        if parts[-1] and deploy_permissions.policy_chars(_statement(sid, actions, [*parts[-1], resource])) > limit:
            parts.append([])
        parts[-1].append(resource)
    if len(parts) == 1:
        return [_statement(sid, actions, parts[0])]
    return [_statement(f"{sid}{index}", actions, part) for index, part in enumerate(parts, start=1)]


def _statement(sid: str, actions: list, resources: list, condition: Condition | None = None) -> Statement:
    statement = Statement(Sid=sid, Effect=Allow, Action=actions, Resource=resources)
    if condition is not None:
        statement.Condition = condition
    return statement


def _actions(names: list[str]) -> list[Action]:
    return [Action(*name.split(":", 1)) for name in names]


# ---- CodeBuild ----------------------------------------------------------------------------------

def _artifact_statements(boot: Bootstrap, pipeline_prefix: str, write: bool) -> list[Statement]:
    object_actions = [awacs_s3.GetObject, awacs_s3.GetObjectVersion] + ([awacs_s3.PutObject] if write else [])
    return [
        _statement("PipelineArtifacts", object_actions, [boot.objects(f"{pipeline_prefix}/*")]),
        _statement("ArtifactBucketMetadata", [awacs_s3.GetBucketAcl, awacs_s3.GetBucketLocation],
                   [boot.bucket_arn()]),
        # Artifacts are SSE-KMS with the bootstrap key; its key policy allows use only via S3, ECR, SNS, ...
        _statement("ArtifactKey", [awacs_kms.Decrypt, awacs_kms.GenerateDataKey], [boot.key_arn]),
    ]


def _project(template: Template, logical_id: str, *, app: str, purpose: str, description: str, buildspec: str,
             boot: Bootstrap, retention_days: int, statements: list[Statement], timeout: int,
             variables: dict[str, AWSHelperFn | str], compute: str, privileged: bool = False) -> codebuild.Project:
    logs = log_group(template, f"{logical_id}Logs", description=f"Build logs: {description}",
                     kms_key_arn=boot.key_arn, retention_days=retention_days, retain=True)
    write_logs = _statement("WriteOwnBuildLogs", [awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
                            [GetAtt(logs, "Arn")])
    role = template.add_resource(describe(iam.Role(
        f"{logical_id}Role",
        AssumeRolePolicyDocument=make_simple_assume_policy("codebuild.amazonaws.com"),
        Policies=[iam.Policy(PolicyName=f"{purpose}-build", PolicyDocument=_policy(write_logs, *statements))],
    ), f"Role of the CodeBuild project: {description}"))
    project = codebuild.Project(
        logical_id,
        Name=naming.codebuild_project_name(app, purpose),
        Description=description[:255],
        ServiceRole=GetAtt(role, "Arn"),
        Source=codebuild.Source(Type="CODEPIPELINE", BuildSpec=buildspec),
        Artifacts=codebuild.Artifacts(Type="CODEPIPELINE"),
        Environment=codebuild.Environment(
            Type="LINUX_CONTAINER", ComputeType=compute, Image=CODEBUILD_IMAGE,
            ImagePullCredentialsType="CODEBUILD", PrivilegedMode=privileged,
            EnvironmentVariables=[codebuild.EnvironmentVariable(Name=name, Type="PLAINTEXT", Value=value)
                                  for name, value in sorted(variables.items())],
        ),
        EncryptionKey=boot.key_arn,
        LogsConfig=codebuild.LogsConfig(
            CloudWatchLogs=codebuild.CloudWatchLogs(Status="ENABLED", GroupName=Ref(logs)),
            S3Logs=codebuild.S3Logs(Status="DISABLED"),
        ),
        TimeoutInMinutes=timeout,
        QueuedTimeoutInMinutes=QUEUED_TIMEOUT_MINUTES,
    )
    describe(project, description)
    return template.add_resource(project)


# ---- deployment role ------------------------------------------------------------------------------

def _deploy_role(template: Template, account: AccountConfig, chain: list[EnvironmentConfig],
                 boot: Bootstrap, environment_templates: Mapping[str, Sequence[Mapping]]) -> iam.Role:
    """Role CloudFormation assumes to deploy the environment root stacks: exactly the handler actions of the
    resource types they contain, IAM and nested-stack actions scoped to the environments' own names."""
    templates = [t for config in chain for t in environment_templates[config.name]]
    types = deploy_permissions.resource_types(templates)
    unused = deploy_scopes.unused_feature_actions(templates)
    groups = deploy_permissions.by_scope([*(set(deploy_permissions.deploy_actions(types)) - unused),
                                          *deploy_scopes.supplement_actions(types)])
    prefixes = [naming.root_stack_name(config) for config in chain]
    boundary = deploy_scopes.boundary_arn(account.app_name)
    conditioned, unconditioned = deploy_scopes.boundary_condition_actions(groups.get(deploy_permissions.SCOPE_IAM, []))
    groups[deploy_permissions.SCOPE_IAM] = unconditioned

    def each(pattern: str) -> list[Sub]:
        return [Sub(pattern.replace("{prefix}", prefix)) for prefix in prefixes]

    scoped_resources = {
        deploy_permissions.SCOPE_STACKS: each(f"{ARN}:cloudformation:{REGIONAL}:stack/{{prefix}}-*/*"),
        deploy_permissions.SCOPE_IAM: (each(f"{ARN}:iam::${{AWS::AccountId}}:role/{{prefix}}-*")
                                       + each(f"{ARN}:iam::${{AWS::AccountId}}:policy/{{prefix}}-*")),
        deploy_permissions.SCOPE_PASS_ROLE: each(f"{ARN}:iam::${{AWS::AccountId}}:role/{{prefix}}-*"),
        deploy_permissions.SCOPE_SERVICE_LINKED: [Sub(f"{ARN}:iam::${{AWS::AccountId}}:role/aws-service-role/*")],
        deploy_permissions.SCOPE_FUNCTIONS: each(f"{ARN}:lambda:{REGIONAL}:function:{{prefix}}-*"),
    }
    sids = {
        deploy_permissions.SCOPE_STACKS: "NestedStacksOfTheEnvironments",
        deploy_permissions.SCOPE_IAM: "RolesAndPoliciesOfTheEnvironments",
        deploy_permissions.SCOPE_PASS_ROLE: "PassOnlyRolesOfTheEnvironments",
        deploy_permissions.SCOPE_SERVICE_LINKED: "ServiceLinkedRoles",
        deploy_permissions.SCOPE_FUNCTIONS: "InvokeCustomResourceFunctions",
    }
    scoped = [_statement(sids[scope], _actions(groups[scope]), resources)
              for scope, resources in scoped_resources.items() if groups.get(scope)]
    if conditioned:
        # Roles may be created or given policies only with the kit's permissions boundary attached, so no role
        # the deployment role makes can hold more than the boundary allows (no IAM, no escalation).
        scoped.append(_statement("RolesOnlyWithThePermissionsBoundary", _actions(conditioned),
                                 each(f"{ARN}:iam::${{AWS::AccountId}}:role/{{prefix}}-*"),
                                 Condition(StringEquals("iam:PermissionsBoundary", boundary))))
    narrowed, anywhere = deploy_scopes.split_scoped(groups.get(deploy_permissions.SCOPE_ANY, []))
    named_groups = deploy_scopes.log_group_name_patterns(templates)
    if named_groups is None:  # a log group name the kit cannot turn into a pattern: keep its actions on "*"
        anywhere = sorted([*anywhere, *narrowed.pop(deploy_scopes.SCOPE_LOG_GROUPS, [])])
        named_groups = []
    log_groups = (each(f"{ARN}:logs:{REGIONAL}:log-group:{{prefix}}-*")
                  + [Sub(f"{ARN}:logs:{REGIONAL}:log-group:{name}{suffix}")
                     for name in named_groups for suffix in ("", ":*")]
                  # App Runner creates /aws/apprunner/<service name>/... with the caller's permissions; the
                  # name is generated by CloudFormation, so only the service's own prefix is known.
                  + [Sub(f"{ARN}:logs:{REGIONAL}:log-group:/aws/apprunner/*")])
    # Resource-scoped handler actions go to managed policies (the inline policies of a role share 10,240
    # characters); each environment adds its own ARN patterns.
    by_resource = [part for scope, (sid, patterns) in deploy_scopes.PREFIX_SCOPES.items() if narrowed.get(scope)
                   for part in _fitting(sid, _actions(narrowed[scope]), [a for p in patterns for a in each(p)])]
    if narrowed.get(deploy_scopes.SCOPE_LOG_GROUPS):
        by_resource += _fitting("LogGroupsOfTheEnvironments", _actions(narrowed[deploy_scopes.SCOPE_LOG_GROUPS]),
                                log_groups)
    secret_names = deploy_scopes.secret_name_patterns(templates)
    if secret_names is None:  # a secret name the kit cannot turn into a pattern: keep secret actions on "*"
        anywhere = sorted([*anywhere, *narrowed.pop(deploy_scopes.SCOPE_SECRETS, [])])
    secrets_of_the_app = [Sub(f"{ARN}:secretsmanager:{REGIONAL}:secret:{name}") for name in secret_names or ["*"]]
    if narrowed.get(deploy_scopes.SCOPE_SECRETS):
        # Unnamed secrets are named <LogicalId>-<random> (no stack name in it), so tagging is also limited to
        # them: the deployment role cannot tag another secret with this app's Application tag.
        scoped.append(_statement("SecretsOfTheEnvironments", _actions(narrowed[deploy_scopes.SCOPE_SECRETS]),
                                 secrets_of_the_app))
    # The names above also match another app of this kit (same logical ids) and every RDS-managed secret in the
    # account: the role may not re-tag or untag a secret that carries another app's Application tag, so it
    # cannot make that secret pass the Application condition below.
    scoped.append(Statement(
        Sid="NeverRetagAnotherAppsSecrets", Effect=Deny,
        Action=[awacs_secrets.TagResource, awacs_secrets.UntagResource],
        Resource=[Sub(f"{ARN}:secretsmanager:{REGIONAL}:secret:*")],
        Condition=Condition([StringNotEquals(f"aws:ResourceTag/{naming.TAG_APPLICATION}", account.app_name),
                             Null(f"aws:ResourceTag/{naming.TAG_APPLICATION}", "false")])))
    if narrowed.get(deploy_scopes.SCOPE_SECRET_VALUES):
        # Secret values only of this app's secrets: the secrets' names above, and the Application tag every
        # stack propagates to its resources (another app of this kit in the account has the same logical ids).
        scoped.append(_statement(
            "ReadOnlyThisAppsSecretValues", _actions(narrowed[deploy_scopes.SCOPE_SECRET_VALUES]),
            secrets_of_the_app,
            Condition(StringEquals(f"aws:ResourceTag/{naming.TAG_APPLICATION}", account.app_name))))
    scoped.append(_statement("ReadPackagedTemplates", [awacs_s3.GetObject],
                             [boot.objects(f"{PACKAGE_PREFIX}/*")]))
    scoped.append(_statement("DecryptPackagedTemplatesAndBootstrapSecrets", [awacs_kms.Decrypt], [boot.key_arn]))
    secrets = deploy_permissions.secret_references(templates)
    if secrets:
        scoped.append(_statement(
            "ResolveDynamicReferences", [awacs_secrets.GetSecretValue, awacs_secrets.DescribeSecret],
            [Sub(f"{ARN}:secretsmanager:{REGIONAL}:secret:{name}-??????") for name in secrets]))

    role = template.add_resource(describe(iam.Role(
        "DeployRole",
        Description="CloudFormation deploys the environment root stacks with this role (pipeline only)",
        AssumeRolePolicyDocument=make_simple_assume_policy("cloudformation.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="scoped-deploy", PolicyDocument=_policy(*scoped))],
    ), "Role CloudFormation assumes to deploy the environments"))
    # Nested stacks inherit the root stack's service role: creating or updating each one makes CloudFormation
    # pass this role to itself (the AWS::CloudFormation::Stack handlers list iam:PassRole). Its own ARN cannot
    # sit in its inline policy (circular reference), hence this separate policy.
    template.add_resource(describe(iam.PolicyType(
        "DeployRolePassesItself",
        PolicyName="pass-itself-to-nested-stacks",
        Roles=[Ref(role)],
        PolicyDocument=_policy(_statement(
            "PassThisRoleToNestedStacks", [awacs_iam.PassRole], [GetAtt(role, "Arn")],
            Condition(StringEquals("iam:PassedToService", "cloudformation.amazonaws.com")))),
    ), "Deployment role may pass itself to CloudFormation for the nested stacks"))

    inline = sum(deploy_permissions.policy_chars(policy.PolicyDocument) for policy in
                 [*role.Policies, template.resources["DeployRolePassesItself"]])
    if inline > deploy_permissions.ROLE_INLINE_POLICIES_MAX_CHARS:
        raise deploy_permissions.PermissionsError(
            f"the deployment role's inline policies would need {inline} characters for {len(chain)} pipeline "
            f"environments; IAM allows {deploy_permissions.ROLE_INLINE_POLICIES_MAX_CHARS} per role (deploy fewer "
            "environments through the pipeline)")
    scoped_parts = deploy_permissions.chunk_statements(by_resource)
    for index, statements in enumerate(scoped_parts, start=1):
        template.add_resource(describe(iam.ManagedPolicy(
            f"DeployScopedPolicy{index}",
            Description=f"Deploy the environment stacks, part {index} scoped to their resources: resource "
                        "handler actions whose every resource type the kit can name (generator/deploy_scopes.py)",
            Roles=[Ref(role)],
            PolicyDocument=_policy(*statements),
        ), f"Deployment role permissions on the environments' own resources, part {index}"))

    handler_parts = deploy_permissions.chunk_actions(anywhere)
    if len(scoped_parts) + len(handler_parts) > deploy_permissions.MAX_MANAGED_POLICIES_PER_ROLE:
        # Both kinds of managed policy share the role's attachment quota.
        raise deploy_permissions.PermissionsError(
            f"the deployment role would need {len(scoped_parts)} scoped and {len(handler_parts)} other managed "
            f"policies for {len(chain)} pipeline environments; IAM attaches "
            f"{deploy_permissions.MAX_MANAGED_POLICIES_PER_ROLE} per role by default (deploy fewer environments "
            "through the pipeline, or raise the quota and MAX_MANAGED_POLICIES_PER_ROLE)")
    for chunk in handler_parts:
        policy = iam.ManagedPolicy(
            f"DeployPolicy{chunk.index}",
            Description=f"Deploy the environment stacks, part {chunk.index}: resource handler actions from "
                        "the CloudFormation schemas of the types they use",
            Roles=[Ref(role)],
            # Resource "*": the stacks create resources whose names CloudFormation generates, and many
            # create/describe actions have no resource-level permissions at all.
            PolicyDocument=_policy(_statement(f"ResourceHandlers{chunk.index}", _actions(list(chunk.actions)),
                                              ["*"])),
        )
        describe(policy, f"Deployment role permissions, part {chunk.index}")
        reason = ("CloudFormation deployment role: exactly the create/read/update/delete handler actions of the "
                  "resource types in the environment templates (no wildcard action); resource names are "
                  "generated by CloudFormation, so no narrower resource is known. Only cloudformation."
                  "amazonaws.com can assume the role and only the pipeline role can pass it.")
        # Every part may hold write, IAM or data-reading actions depending on the sorted split.
        for check in ("CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111"):
            skip_checkov(policy, check, reason)
        template.add_resource(policy)
    return role


# ---- pipeline -------------------------------------------------------------------------------------

def _codebuild_action(name: str, project: codebuild.Project, variables: dict[str, str], inputs: list[str],
                      outputs: tuple[str, ...] = (), run_order: int = 1) -> cp.Actions:
    action = cp.Actions(
        Name=name,
        ActionTypeId=cp.ActionTypeId(Category="Build", Owner="AWS", Provider="CodeBuild", Version="1"),
        Configuration={
            "ProjectName": Ref(project),
            "EnvironmentVariables": json.dumps(
                [{"name": k, "type": "PLAINTEXT", "value": v} for k, v in sorted(variables.items())],
                separators=(",", ":")),
        },
        InputArtifacts=[cp.InputArtifacts(Name=artifact) for artifact in inputs],
        RunOrder=run_order,
    )
    if outputs:
        action.OutputArtifacts = [cp.OutputArtifacts(Name=artifact) for artifact in outputs]
    return action


def _cfn_action(name: str, mode: str, config: EnvironmentConfig, deploy_role: iam.Role, run_order: int,
                namespace: str | None = None) -> cp.Actions:
    configuration = {"ActionMode": mode, "StackName": naming.root_stack_name(config)}
    if mode in ("CREATE_UPDATE", "CHANGE_SET_REPLACE"):
        configuration.update({
            "TemplatePath": f"{TEMPLATES_ARTIFACT}::{config.name}/{PACKAGED_TEMPLATE}",
            "TemplateConfiguration": f"{TEMPLATES_ARTIFACT}::{config.name}/{TEMPLATE_CONFIGURATION}",
            "Capabilities": CAPABILITIES,
            "RoleArn": GetAtt(deploy_role, "Arn"),
        })
    if mode in ("CHANGE_SET_REPLACE", "CHANGE_SET_EXECUTE"):
        configuration["ChangeSetName"] = CHANGE_SET_NAME
    action = cp.Actions(
        Name=name,
        ActionTypeId=cp.ActionTypeId(Category="Deploy", Owner="AWS", Provider="CloudFormation", Version="1"),
        Configuration=configuration,
        RunOrder=run_order,
    )
    if mode != "CHANGE_SET_EXECUTE":
        action.InputArtifacts = [cp.InputArtifacts(Name=TEMPLATES_ARTIFACT)]
    if namespace:
        action.Namespace = namespace
    return action


def deploy_namespace(config: EnvironmentConfig) -> str:
    """Variable namespace of an environment's deploy action: `#{DeployDev.BackendUrl}`."""
    return f"Deploy{config.name.capitalize()}"


def change_set_link(config: EnvironmentConfig) -> Sub:
    stack = naming.root_stack_name(config)
    return Sub("https://${AWS::Region}.console.aws.amazon.com/cloudformation/home?region=${AWS::Region}"
               f"#/stacks/changesets/changes?stackId={stack}&changeSetId={CHANGE_SET_NAME}")


def _stages(account: AccountConfig, chain: list[EnvironmentConfig], connection, projects: dict,
            deploy_role: iam.Role, topic: sns.Topic) -> list[cp.Stages]:
    source_config = {
        "ConnectionArn": GetAtt(connection, "ConnectionArn"),
        "FullRepositoryId": account.source_repository,
        "BranchName": account.source_branch,
        "OutputArtifactFormat": "CODE_ZIP",  # the builds need files only; the commit id is a variable
    }
    stages = [
        cp.Stages(Name="Source", Actions=[cp.Actions(
            Name=SOURCE_ACTION,
            ActionTypeId=cp.ActionTypeId(Category="Source", Owner="AWS", Provider="CodeStarSourceConnection",
                                         Version="1"),
            Configuration=source_config,
            OutputArtifacts=[cp.OutputArtifacts(Name=SOURCE_ARTIFACT)],
            Namespace=SOURCE_NAMESPACE,
            RunOrder=1,
        )]),
        cp.Stages(Name="Build", Actions=[
            _codebuild_action("BackendImage", projects["backend"], {"IMAGE_TAG": COMMIT_ID}, [SOURCE_ARTIFACT]),
            _codebuild_action("InfrastructureTemplates", projects["infra"], {"IMAGE_TAG": COMMIT_ID},
                              [SOURCE_ARTIFACT], [TEMPLATES_ARTIFACT]),
        ]),
    ]
    rollback = cp.FailureConditions(Result="ROLLBACK")
    *automatic, gated = chain
    for config in automatic:
        namespace = deploy_namespace(config)
        stages.append(cp.Stages(
            Name=f"Deploy-{config.name}", OnFailure=rollback,
            Actions=[_cfn_action("Deploy", "CREATE_UPDATE", config, deploy_role, 1, namespace)]))
        stages.append(cp.Stages(Name=f"Smoke-{config.name}", Actions=[_codebuild_action(
            "SmokeTest", projects["smoke"],
            {"BACKEND_URL": f"#{{{namespace}.{BACKEND_URL_OUTPUT}}}", "RELEASE": COMMIT_ID,
             "WORKERS": "true" if config.workers.enabled else "false"}, [SOURCE_ARTIFACT])]))

    stack = naming.root_stack_name(gated)
    approval = cp.Actions(
        Name="Approve",
        ActionTypeId=cp.ActionTypeId(Category="Approval", Owner="AWS", Provider="Manual", Version="1"),
        Configuration={
            "NotificationArn": Ref(topic),
            "CustomData": (f"Release {COMMIT_ID} passed {', '.join(c.name for c in automatic)}. Review change "
                           f"set '{CHANGE_SET_NAME}' of stack {stack} (link below, or `aws cloudformation "
                           f"describe-change-set --stack-name {stack} --change-set-name {CHANGE_SET_NAME}`); "
                           f"approving deploys exactly these artifacts to {gated.name}."),
            "ExternalEntityLink": change_set_link(gated),
        },
        RunOrder=2,
    )
    # One stage: create the change set, approve it, execute that same change set (never re-created between
    # review and execution). If the stack changes after the change set was created, CloudFormation marks it
    # OBSOLETE and refuses to execute it. A stage rollback re-runs all three with the earlier release's
    # artifacts, so a rollback is reviewed and approved like a release.
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html (ExecutionStatus)
    stages.append(cp.Stages(Name=f"Deploy-{gated.name}", OnFailure=rollback, Actions=[
        _cfn_action("CreateChangeSet", "CHANGE_SET_REPLACE", gated, deploy_role, 1),
        approval,
        _cfn_action("ExecuteChangeSet", "CHANGE_SET_EXECUTE", gated, deploy_role, 3, deploy_namespace(gated)),
    ]))
    return stages


def _pipeline_role(template: Template, chain: list[EnvironmentConfig], boot: Bootstrap, pipeline_prefix: str,
                   connection, projects: dict, deploy_role: iam.Role, topic: sns.Topic) -> iam.Role:
    *automatic, gated = chain

    def stack_arns(configs: list[EnvironmentConfig]) -> list[Sub]:
        return [Sub(f"{ARN}:cloudformation:{REGIONAL}:stack/{naming.root_stack_name(c)}/*") for c in configs]

    statements = [
        _statement("PipelineArtifacts", [awacs_s3.GetObject, awacs_s3.GetObjectVersion, awacs_s3.PutObject],
                   [boot.objects(f"{pipeline_prefix}/*")]),
        _statement("ArtifactBucketMetadata", [awacs_s3.GetBucketVersioning, awacs_s3.GetBucketLocation],
                   [boot.bucket_arn()]),
        _statement("ArtifactKey", [awacs_kms.Decrypt, awacs_kms.GenerateDataKey], [boot.key_arn]),
        _statement("UseSourceConnection", [awacs_connections.UseConnection],
                   [GetAtt(connection, "ConnectionArn")]),
        _statement("RunOwnBuilds", [awacs_codebuild.StartBuild, awacs_codebuild.BatchGetBuilds,
                                    awacs_codebuild.StopBuild],
                   [GetAtt(project, "Arn") for project in projects.values()]),
        _statement("DeployAutomaticEnvironments",
                   [awacs_cfn.CreateStack, awacs_cfn.UpdateStack, awacs_cfn.DescribeStacks,
                    awacs_cfn.DescribeStackEvents],
                   stack_arns(automatic)),
        _statement("ChangeSetsOfGatedEnvironment",
                   [awacs_cfn.CreateChangeSet, awacs_cfn.DeleteChangeSet, awacs_cfn.DescribeChangeSet,
                    awacs_cfn.ExecuteChangeSet, awacs_cfn.DescribeStacks, awacs_cfn.DescribeStackEvents],
                   [*stack_arns([gated]),
                    Sub(f"{ARN}:cloudformation:{REGIONAL}:changeSet/{CHANGE_SET_NAME}/*")]),
        # ValidateTemplate has no resource type in IAM; it only parses the template.
        _statement("ValidateTemplates", [awacs_cfn.ValidateTemplate], ["*"]),
        _statement("PassDeployRoleToCloudFormation", [awacs_iam.PassRole], [GetAtt(deploy_role, "Arn")],
                   Condition(StringEquals("iam:PassedToService", "cloudformation.amazonaws.com"))),
        _statement("NotifyApprovers", [awacs_sns.Publish], [Ref(topic)]),
    ]
    return template.add_resource(describe(iam.Role(
        "PipelineRole",
        AssumeRolePolicyDocument=make_simple_assume_policy("codepipeline.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="pipeline", PolicyDocument=_policy(*statements))],
    ), "Role of the pipeline: artifacts, its own builds, the environment stacks, the approval topic"))


def _approval_topic(template: Template, account: AccountConfig, boot: Bootstrap) -> sns.Topic:
    topic = template.add_resource(describe(sns.Topic(
        "ApprovalTopic",
        DisplayName=f"{account.app_name} release approvals",
        KmsMasterKeyId=boot.key_arn,
    ), "SNS topic: a release waits for approval"))
    template.add_resource(describe(sns.TopicPolicy(
        "ApprovalTopicPolicy",
        Topics=[Ref(topic)],
        PolicyDocument=_policy(deny_insecure_transport([awacs_sns.Publish], [Ref(topic)])),
    ), "Approval topic policy: TLS only"))
    for index, email in enumerate(account.approval_emails, start=1):
        template.add_resource(describe(sns.SubscriptionResource(
            f"ApprovalSubscription{index}", TopicArn=Ref(topic), Protocol="email", Endpoint=email,
        ), f"Approval notifications to {email} (confirm the subscription e-mail)"))
    return topic


def build(account: AccountConfig, environments: list[EnvironmentConfig],
          environment_templates: Mapping[str, Sequence[Mapping]]) -> Template:
    """Account-level CI/CD pipeline.

    environment_templates: every environment's rendered templates as data (root and children), by environment
    name; the deployment role's actions come from the resource types they contain (rendered once, by the
    renderer). Parameters: none. Outputs: PipelineName, ConnectionArn, ConnectionConsoleUrl, ApprovalTopicArn,
    DeployRoleArn. Raises ConfigError for unknown pipeline environments or too-long stack names.
    """
    chain = _chain(account, environments)
    app = account.app_name
    template = new_template(f"{app}: {DESCRIPTION} (rendered by adagency-deploy-kit; do not edit by hand)")
    boot = Bootstrap(app)
    pipeline_name = naming.pipeline_name(app)
    # CodePipeline stores artifacts under the first 20 characters of the pipeline name.
    pipeline_prefix = pipeline_name[:20]

    connection = codeconnections.Connection("SourceConnection", ConnectionName=naming.connection_name(app))
    if account.source_host_arn:
        connection.HostArn = account.source_host_arn
    else:
        connection.ProviderType = account.source_provider
    template.add_resource(describe(connection, "Connection to the Git provider (PENDING until the console "
                                               "handshake is completed once)"))

    retention = account.logging.retention_days
    source_dir, backend_tests = backend_source(chain)
    backend_statements = [
        *_artifact_statements(boot, pipeline_prefix, write=False),
        # GetAuthorizationToken has no resource type: it returns a registry login for the account.
        _statement("EcrLogin", [awacs_ecr.GetAuthorizationToken], ["*"]),
        _statement("PushBackendImage", [
            awacs_ecr.BatchCheckLayerAvailability, awacs_ecr.CompleteLayerUpload, awacs_ecr.DescribeImages,
            awacs_ecr.InitiateLayerUpload, awacs_ecr.PutImage, awacs_ecr.UploadLayerPart,
        ], [boot.repository_arn()]),
    ]
    infra_statements = [
        *_artifact_statements(boot, pipeline_prefix, write=True),
        _statement("UploadPackagedTemplates", [awacs_s3.GetObject, awacs_s3.PutObject],
                   [boot.objects(f"{PACKAGE_PREFIX}/*")]),
    ]
    projects = {
        "backend": _project(
            template, "BackendBuild", app=app, purpose="backend-build", boot=boot, retention_days=retention,
            description="backend tests against PostgreSQL, then the image built once and pushed as <repo>:<sha>",
            buildspec=BACKEND_BUILDSPEC, statements=backend_statements, timeout=BACKEND_TIMEOUT_MINUTES,
            variables={"ECR_REPOSITORY_URI": boot.repository_uri, "ECR_REPOSITORY_NAME": boot.repository_name,
                       "SOURCE_DIR": source_dir, "BACKEND_TESTS": backend_tests},
            compute="BUILD_GENERAL1_MEDIUM", privileged=True),
        "infra": _project(
            template, "InfraBuild", app=app, purpose="infra-build", boot=boot, retention_days=retention,
            description="golden check, cfn-lint, checkov and generator tests, then the packaged templates",
            buildspec=INFRA_BUILDSPEC, statements=infra_statements, timeout=INFRA_TIMEOUT_MINUTES,
            variables={"ARTIFACT_BUCKET": boot.bucket, "PACKAGE_PREFIX": PACKAGE_PREFIX,
                       "PIPELINE_ENVIRONMENTS": " ".join(account.pipeline_environments)},
            compute="BUILD_GENERAL1_MEDIUM"),
        "smoke": _project(
            template, "SmokeTest", app=app, purpose="smoke-test", boot=boot, retention_days=retention,
            description="smoke test of a deployed environment: /healthz and one SSE event",
            buildspec=SMOKE_BUILDSPEC, statements=_artifact_statements(boot, pipeline_prefix, write=False),
            timeout=SMOKE_TIMEOUT_MINUTES, variables={}, compute="BUILD_GENERAL1_SMALL"),
    }

    topic = _approval_topic(template, account, boot)
    deploy_role = _deploy_role(template, account, chain, boot, environment_templates)
    role = _pipeline_role(template, chain, boot, pipeline_prefix, connection, projects, deploy_role, topic)

    pipeline = template.add_resource(describe(cp.Pipeline(
        "Pipeline",
        Name=pipeline_name,
        PipelineType="V2",
        ExecutionMode=EXECUTION_MODE,
        RestartExecutionOnUpdate=False,
        RoleArn=GetAtt(role, "Arn"),
        ArtifactStore=cp.ArtifactStore(Type="S3", Location=boot.bucket,
                                       EncryptionKey=cp.EncryptionKey(Id=boot.key_arn, Type="KMS")),
        Triggers=[cp.PipelineTriggerDeclaration(
            ProviderType="CodeStarSourceConnection",
            GitConfiguration=cp.GitConfiguration(
                SourceActionName=SOURCE_ACTION,
                Push=[cp.GitPushFilter(Branches=cp.GitBranchFilterCriteria(Includes=[account.source_branch]))],
            ),
        )],
        Stages=_stages(account, chain, connection, projects, deploy_role, topic),
    ), f"Release pipeline: {' -> '.join(account.pipeline_environments)}"))

    add_output(template, "PipelineName", Ref(pipeline), "Name of the release pipeline")
    add_output(template, "ConnectionArn", GetAtt(connection, "ConnectionArn"),
               "Git connection; complete its handshake once in the console (it stays PENDING until then)")
    add_output(template, "ConnectionConsoleUrl",
               Sub("https://${AWS::Region}.console.aws.amazon.com/codesuite/settings/connections"
                   "?region=${AWS::Region}"),
               "Console page where the pending connection is completed")
    add_output(template, "ApprovalTopicArn", Ref(topic), "SNS topic notified when a release awaits approval")
    add_output(template, "DeployRoleArn", GetAtt(deploy_role, "Arn"),
               "Role CloudFormation uses for the environment stacks once the pipeline has deployed them")
    return template
