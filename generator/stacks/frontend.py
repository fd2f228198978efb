"""Amplify Hosting app for the Next.js SSR frontend (platform WEB_COMPUTE), created before the backend.

Split from `frontend_branch` to break a cycle: the backend needs the frontend's origins for CORS and
the branch needs the backend URL. The app's default domain is known as soon as the app exists, so
this stack outputs the origins; the branch, custom domain and first build come after the backend.
"""

from __future__ import annotations

from urllib.parse import urlparse

from awacs import logs as awacs_logs
from awacs.aws import Allow, PolicyDocument, Statement
from troposphere import GetAtt, Join, Ref, Sub, Template, amplify, iam

from generator import naming
from generator.cfn import add_output, add_parameter, describe, new_template
from generator.components import log_group, service_trust
from generator.config import EnvironmentConfig
from generator.stacks._amplify import (  # noqa: F401  (re-exported for readers of this stack)
    BUILD_SPEC_FILE,
    CSP_HEADER,
    CUSTOM_HTTP_FILE,
    build_spec,
    csp_extra_sources,
    custom_headers,
    settings_digest,
)
from generator.stacks.spec import StackSpec

COMPONENT = "frontend"
DESCRIPTION = "Amplify Hosting app (Next.js SSR, WEB_COMPUTE)"

PLATFORM = "WEB_COMPUTE"
NODE_VERSION_VARIABLE = "NODE_VERSION"
# Amplify accepts AccessToken only for GitHub; other providers take the token as OauthToken.
GITHUB_HOST = "github.com"


def token_reference(app_name: str) -> str:
    """Dynamic reference to the bootstrap secret: resolved by CloudFormation, never in the template."""
    secret = naming.git_token_secret_name(app_name)
    return f"{{{{resolve:secretsmanager:{secret}:SecretString:{naming.GIT_TOKEN_JSON_KEY}}}}}"


def _amplify_trust() -> PolicyDocument:
    """Only Amplify, acting for an app of this account and region, may assume (confused deputy)."""
    return service_trust("amplify.amazonaws.com",
                         "arn:${AWS::Partition}:amplify:${AWS::Region}:${AWS::AccountId}:apps/*")


def build(config: EnvironmentConfig) -> Template:
    """Frontend stack of one environment: the Amplify app, its service and SSR compute roles, the SSR log group.

    Parameters: OpsKeyArn (from the security stack). Outputs: AppId, AppDefaultDomain, BranchUrl,
    FrontendOrigins, FrontendLogGroupName. Raises:
    naming.NamingError when a generated AWS name breaks its service's limit.
    """
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    add_parameter(template, "OpsKeyArn", "KMS key for operations data (the SSR runtime log group)")
    frontend = config.frontend

    service_role = template.add_resource(describe(iam.Role(
        "AmplifyServiceRole",
        Description="Amplify service role: writes the SSR runtime log (policy added once the app id exists)",
        AssumeRolePolicyDocument=_amplify_trust(),
    ), "Amplify service role (SSR runtime logging only)"))
    compute_role = template.add_resource(describe(iam.Role(
        "SsrComputeRole",
        Description="Credentials of the Next.js server code; no permissions until the app needs some",
        AssumeRolePolicyDocument=_amplify_trust(),
    ), "SSR compute role for the Next.js server (no permissions by default)"))

    token_property = "AccessToken" if urlparse(frontend.repository).hostname == GITHUB_HOST else "OauthToken"
    app = amplify.App(
        "App",
        Name=naming.amplify_app_name(config),
        Description=f"{config.app_name} {config.name} frontend (Next.js SSR)",
        Platform=PLATFORM,
        Repository=frontend.repository,
        BuildSpec=build_spec(),
        CustomHeaders=Sub(custom_headers(config)),
        EnvironmentVariables=[
            amplify.EnvironmentVariable(Name=NODE_VERSION_VARIABLE, Value=frontend.node_version)],
        IAMServiceRole=GetAtt(service_role, "Arn"),
        ComputeRoleArn=GetAtt(compute_role, "Arn"),
        EnableBranchAutoDeletion=False,  # the environment branch is owned by CloudFormation, not by Git
        CacheConfig=amplify.CacheConfig(Type="AMPLIFY_MANAGED"),
        JobConfig=amplify.JobConfig(BuildComputeType="STANDARD_8GB"),
    )
    setattr(app, token_property, token_reference(config.app_name))
    template.add_resource(describe(app, f"Amplify app {app.Name} ({frontend.repository})"))

    # Amplify would create this group on the first SSR request, unencrypted and kept forever.
    runtime_logs = log_group(
        template, "SsrLogGroup", description="Next.js SSR runtime log written by Amplify Hosting",
        kms_key_arn=Ref("OpsKeyArn"), retention_days=config.logging.retention_days,
        retain=config.production, name=Sub("/aws/amplify/${App.AppId}"),
    )
    group_arn = ("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
                 ":log-group:/aws/amplify/${App.AppId}")
    group_arns = [Sub(group_arn), Sub(group_arn + ":*")]  # the group itself and its log streams
    template.add_resource(describe(iam.PolicyType(
        "AmplifyServiceRoleLogging",
        PolicyName="ssr-runtime-logs",
        Roles=[Ref(service_role)],
        PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
            Statement(Sid="WriteSsrRuntimeLog", Effect=Allow,
                      Action=[awacs_logs.CreateLogGroup, awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
                      Resource=group_arns),
            # DescribeLogGroups supports no resource-level permission (Service Authorization Reference).
            Statement(Sid="FindLogGroup", Effect=Allow, Action=[awacs_logs.DescribeLogGroups],
                      Resource=["*"]),
        ]),
    ), "Amplify service role policy: write only this app's SSR log group"))

    default_domain = GetAtt(app, "DefaultDomain")
    branch_url = Sub(f"https://{config.frontend_branch_host_prefix}.${{App.DefaultDomain}}")
    custom_origins = frontend.custom_domain.origins if frontend.custom_domain else []
    add_output(template, "AppId", GetAtt(app, "AppId"), "Amplify app id")
    add_output(template, "AppDefaultDomain", default_domain, "Amplify default domain (<id>.amplifyapp.com)")
    add_output(template, "BranchUrl", branch_url, "HTTPS URL of the environment's branch (default domain)")
    add_output(template, "FrontendOrigins", Join(",", [branch_url, *custom_origins]),
               "Comma-separated https origins of the frontend (backend CORS); pull-request previews excluded")
    add_output(template, "FrontendLogGroupName", Ref(runtime_logs), "CloudWatch log group of the SSR runtime")
    return template


SPEC = StackSpec(name="frontend", component=COMPONENT, description=DESCRIPTION, build=build)
