"""The environment's Amplify branch, its optional custom domain, and its first build.

Created after the backend because the SSR build bakes the backend URL in (NEXT_PUBLIC_API_BASE_URL).
CloudFormation never starts an Amplify build, so a small custom resource calls amplify:StartJob on
create, and again whenever a build input changes (backend URL, branch variables, build spec or
headers): otherwise the site would keep calling the old backend until the next push.
"""

from __future__ import annotations

from importlib import resources

from awacs import amplify as awacs_amplify
from awacs.aws import Allow, Statement
from troposphere import GetAtt, Output, Ref, Sub, Template, amplify, cloudformation

from generator.cfn import add_output, add_parameter, describe, new_template, skip_cfn_lint
from generator.components import inline_function
from generator.config import EnvironmentConfig
from generator.stacks._amplify import settings_digest
from generator.stacks.spec import StackSpec

COMPONENT = "frontend"
DESCRIPTION = "Amplify branch, custom domain and first build"

FRAMEWORK = "Next.js - SSR"
API_BASE_URL_VARIABLE = "NEXT_PUBLIC_API_BASE_URL"
ENVIRONMENT_VARIABLE = "APP_ENVIRONMENT"
HANDLER_FILE = "amplify_start_job.py"
START_JOB_TIMEOUT_SECONDS = 60


class StartJob(cloudformation.CustomResource):
    """Custom::AmplifyStartJob: starts a RELEASE job on Create/Update; Delete does nothing."""

    resource_type = "Custom::AmplifyStartJob"
    props = {
        **cloudformation.CustomResource.props,
        "AppId": (str, True),
        "BranchName": (str, True),
        "BuildInputs": (dict, True),
    }


def handler_source() -> str:
    return resources.files("generator.stacks.handlers").joinpath(HANDLER_FILE).read_text()


def stage(config: EnvironmentConfig) -> str:
    return "PRODUCTION" if config.production else "DEVELOPMENT"



APEX_REASON = ("the apex mapping is rendered without Prefix, the form Amplify stores and returns, so drift "
               "detection stays clean (a literal empty Prefix drifts forever: aws/aws-cdk#35958); the schema "
               "marks Prefix required although the API accepts its absence")


def sub_domain_setting(prefix: str, branch_name) -> amplify.SubDomainSetting:
    """One sub-domain mapping; the apex (`prefix == ""`) has no Prefix at all, as Amplify returns it
    (https://github.com/aws/aws-cdk/issues/35958)."""
    if prefix:
        return amplify.SubDomainSetting(Prefix=prefix, BranchName=branch_name)
    return amplify.SubDomainSetting(BranchName=branch_name).no_validation()

def build(config: EnvironmentConfig) -> Template:
    """Frontend branch stack of one environment: the Amplify branch, its custom domain and first build.

    Parameters: AppId (from the frontend stack), ServiceUrl (from the backend stack), OpsKeyArn (from the security
    stack). Outputs: BranchName, and CustomDomainCertificateRecord with a custom domain. Raises:
    naming.NamingError when a generated AWS name breaks its service's limit.
    """
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    add_parameter(template, "AppId", "Amplify app id (frontend stack)", AllowedPattern=r"^d[a-z0-9]+$")
    add_parameter(template, "ServiceUrl", "Backend URL with https:// (backend stack)",
                  AllowedPattern=r"^https://[A-Za-z0-9.-]+$")
    add_parameter(template, "OpsKeyArn", "KMS key for operations data (the first-build function's logs)")
    fe = config.frontend

    branch = template.add_resource(describe(amplify.Branch(
        "Branch",
        AppId=Ref("AppId"),
        BranchName=fe.branch,
        Description=f"{config.name} environment",
        Stage=stage(config),
        Framework=FRAMEWORK,
        EnableAutoBuild=True,
        EnablePullRequestPreview=fe.pull_request_previews,
        EnvironmentVariables=[
            amplify.EnvironmentVariable(Name=API_BASE_URL_VARIABLE, Value=Ref("ServiceUrl")),
            amplify.EnvironmentVariable(Name=ENVIRONMENT_VARIABLE, Value=config.name),
            # The application's own build-time variables ([frontend.environment]); never the kit's names.
            *(amplify.EnvironmentVariable(Name=name, Value=value) for name, value in fe.environment.items()),
        ],
    ), f"Amplify branch {fe.branch} ({stage(config)}, auto-build on)"))

    if fe.custom_domain:
        domain = template.add_resource(describe(amplify.Domain(
            "CustomDomain",
            AppId=Ref("AppId"),
            DomainName=fe.custom_domain.name,
            SubDomainSettings=[sub_domain_setting(prefix, GetAtt(branch, "BranchName"))
                               for prefix in fe.custom_domain.subdomains],
            CertificateSettings=amplify.CertificateSettings(CertificateType="AMPLIFY_MANAGED"),
            EnableAutoSubDomain=False,
        ), f"Custom domain {fe.custom_domain.name} for branch {fe.branch} (Amplify-managed certificate)"))
        if "" in fe.custom_domain.subdomains:
            skip_cfn_lint(domain, "E3003", APEX_REASON)
        template.add_output(Output(
            "CustomDomainCertificateRecord", Value=GetAtt(domain, "CertificateRecord"),
            Description="DNS record proving domain ownership (add it at a DNS provider other than Route 53)"))

    function = inline_function(
        template, "StartJobFunction",
        description=f"Starts the Amplify build of branch {fe.branch} after create and on build-input change",
        code=handler_source(),
        statements=[Statement(
            Sid="StartBuildsOfThisBranchOnly",
            Effect=Allow,
            Action=[awacs_amplify.StartJob],
            Resource=[Sub(f"arn:${{AWS::Partition}}:amplify:${{AWS::Region}}:${{AWS::AccountId}}"
                          f":apps/${{AppId}}/branches/{fe.branch}/jobs/*")],
        )],
        kms_key_arn=Ref("OpsKeyArn"),
        log_retention_days=config.logging.retention_days,
        retain_logs=config.production,
        timeout=START_JOB_TIMEOUT_SECONDS,
    )
    template.add_resource(describe(StartJob(
        "FirstBuild",
        ServiceToken=GetAtt(function, "Arn"),
        ServiceTimeout=START_JOB_TIMEOUT_SECONDS * 2,
        AppId=Ref("AppId"),
        BranchName=GetAtt(branch, "BranchName"),
        # A change in any of these is baked into the build, so it triggers an Update (= a new build).
        BuildInputs={
            API_BASE_URL_VARIABLE: Ref("ServiceUrl"),
            ENVIRONMENT_VARIABLE: config.name,
            "AppSettingsSha256": settings_digest(config),
            **fe.environment,
        },
    ), f"Starts the first build of {fe.branch} (CloudFormation never does)"))

    add_output(template, "BranchName", GetAtt(branch, "BranchName"), "Amplify branch of this environment")
    return template


SPEC = StackSpec(name="frontend_branch", component=COMPONENT, description=DESCRIPTION, build=build)
