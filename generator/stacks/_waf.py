"""The backend's regional WAF web ACL and its logging, shared by every backend platform.

`web_acl(config)` gives the web ACL (rate limit per IP, the request-body size limit of the app contract, AWS
managed rule groups with the common rule set's 8 KB body rule counted instead of blocking); `waf_logging(...)` adds a
KMS-encrypted `aws-waf-logs-` log group and the logging configuration (blocked and counted requests only).
The association with the backend's endpoint belongs to each platform's stack.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, Template, wafv2

from generator import contract, naming
from generator.cfn import describe
from generator.components import log_group
from generator.config import EnvironmentConfig

# WAF rule names double as their CloudWatch metric names (the `Rule` dimension).
RATE_LIMIT_RULE = "RateLimitPerIp"
BODY_SIZE_RULE = "BodyOverServiceLimit"
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
# The common rule set blocks bodies over 8 KB (SizeRestrictions_BODY); the service accepts up to
# contract.MAX_REQUEST_BODY_BYTES, so that rule only counts and BODY_SIZE_RULE enforces the contract's limit.
# https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html
COUNTED_MANAGED_RULES = {"AWSManagedRulesCommonRuleSet": ("SizeRestrictions_BODY",)}
# Body bytes the protected resource forwards to WAF (App Runner: 16 KB default, 32/48/64 KB for an extra fee):
# https://docs.aws.amazon.com/waf/latest/developerguide/web-acl-setting-body-inspection-limit.html
BODY_INSPECTION_LIMITS = {"KB_16": 16 * 1024, "KB_32": 32 * 1024, "KB_48": 48 * 1024, "KB_64": 64 * 1024}
ASSOCIATED_RESOURCE_TYPE = "APP_RUNNER_SERVICE"
# What the web ACL protects. App Runner forwards up to the AssociationConfig limit (16-64 KB); an Application Load
# Balancer forwards a fixed 8 KB and takes no AssociationConfig (same page as above).
APP_RUNNER = "APP_RUNNER_SERVICE"
LOAD_BALANCER = "APPLICATION_LOAD_BALANCER"
FIXED_INSPECTION_BYTES = {LOAD_BALANCER: 8 * 1024}
PAYLOAD_TOO_LARGE = 413


def body_inspection_limit(max_body_bytes: int) -> str:
    """Smallest AssociationConfig inspection limit (KB_16..KB_64) that covers `max_body_bytes` (bytes), so a
    body of exactly the limit is inspected whole and only a larger one is "oversize". ValueError above 64 KiB."""
    for setting, size in BODY_INSPECTION_LIMITS.items():
        if max_body_bytes <= size:
            return setting
    raise ValueError(f"request body limit {max_body_bytes} bytes exceeds what AWS WAF can inspect (64 KiB)")


def body_size_rule(priority: int, visibility) -> wafv2.WebACLRule:
    """Block (413) bodies over contract.MAX_REQUEST_BODY_BYTES. Oversize handling MATCH: a body beyond the
    inspection limit is beyond the contract's limit too (the inspection limit is chosen to cover it)."""
    return wafv2.WebACLRule(
        Name=BODY_SIZE_RULE, Priority=priority,
        Action=wafv2.RuleAction(Block=wafv2.BlockAction(
            CustomResponse=wafv2.CustomResponse(ResponseCode=PAYLOAD_TOO_LARGE))),
        Statement=wafv2.Statement(SizeConstraintStatement=wafv2.SizeConstraintStatement(
            FieldToMatch=wafv2.FieldToMatch(Body=wafv2.Body(OversizeHandling="MATCH")),
            ComparisonOperator="GT", Size=contract.MAX_REQUEST_BODY_BYTES,
            TextTransformations=[wafv2.TextTransformation(Priority=0, Type="NONE")])),
        VisibilityConfig=visibility(BODY_SIZE_RULE),
    )
WAF_REDACTED_HEADERS = ("authorization", "cookie")


def web_acl(config: EnvironmentConfig, protects: str = APP_RUNNER) -> wafv2.WebACL:
    """The backend's web ACL for the resource type it `protects` (APP_RUNNER or LOAD_BALANCER).

    The body-size rule blocks (413) bodies over the contract's limit only where WAF can see that far: behind App
    Runner the inspection limit is raised to cover it. Behind a load balancer WAF sees 8 KB only, so a size rule
    with oversize MATCH would block every body over 8 KB that the app accepts; there the rule is left out and the
    service's own 413 at the same limit (contract.MAX_REQUEST_BODY_BYTES) is the only one. Raises ValueError for
    another resource type.
    """
    if protects not in (APP_RUNNER, LOAD_BALANCER):
        raise ValueError(f"web_acl protects {APP_RUNNER} or {LOAD_BALANCER}, not {protects!r}")
    name = naming.web_acl_name(config)

    def visibility(metric: str) -> wafv2.VisibilityConfig:
        return wafv2.VisibilityConfig(CloudWatchMetricsEnabled=True, MetricName=metric, SampledRequestsEnabled=True)

    rules = [wafv2.WebACLRule(
        Name=RATE_LIMIT_RULE, Priority=0,
        Action=wafv2.RuleAction(Block=wafv2.BlockAction()),
        Statement=wafv2.Statement(RateBasedStatement=wafv2.RateBasedStatement(
            AggregateKeyType="IP", Limit=config.backend.waf_rate_limit_per_5_min, EvaluationWindowSec=300)),
        VisibilityConfig=visibility(RATE_LIMIT_RULE),
    )]
    if protects == APP_RUNNER:
        rules.append(body_size_rule(1, visibility))
    for priority, group in enumerate(MANAGED_RULE_GROUPS, start=2):
        statement = wafv2.ManagedRuleGroupStatement(VendorName="AWS", Name=group)
        if group in COUNTED_MANAGED_RULES:
            statement.RuleActionOverrides = [
                wafv2.RuleActionOverride(Name=rule, ActionToUse=wafv2.RuleAction(Count=wafv2.CountAction()))
                for rule in COUNTED_MANAGED_RULES[group]]
        rules.append(wafv2.WebACLRule(
            Name=group, Priority=priority,
            OverrideAction=wafv2.OverrideAction(**{"None": {}}),  # keep the group's own Block actions
            Statement=wafv2.Statement(ManagedRuleGroupStatement=statement),
            VisibilityConfig=visibility(group),
        ))
    acl = wafv2.WebACL(
        "WebAcl",
        Name=name,
        Scope="REGIONAL",
        Description=f"{config.app_name} {config.name}: rate limit per IP and AWS managed rules for the backend",
        DefaultAction=wafv2.DefaultAction(Allow=wafv2.AllowAction()),
        Rules=rules,
        VisibilityConfig=visibility(name),  # metric name = web ACL name: the `WebACL` dimension
    )
    if protects == APP_RUNNER:
        acl.AssociationConfig = wafv2.AssociationConfig(RequestBody={
            ASSOCIATED_RESOURCE_TYPE: wafv2.RequestBodyAssociatedResourceTypeConfig(
                DefaultSizeInspectionLimit=body_inspection_limit(contract.MAX_REQUEST_BODY_BYTES))})
    return describe(acl, "WAF web ACL of the backend (rate limit, AWS managed rules)")


def waf_logging(template: Template, config: EnvironmentConfig, acl: wafv2.WebACL) -> None:
    group = log_group(
        template, "WafLogs", description="WAF logs of blocked and counted backend requests",
        kms_key_arn=Ref("OpsKeyArn"), retention_days=config.logging.retention_days, retain=config.production,
        name=naming.waf_log_group_name(config))
    template.add_resource(describe(wafv2.LoggingConfiguration(
        "WafLogging",
        ResourceArn=GetAtt(acl, "Arn"),
        # WAF wants the log group ARN without the ":*" suffix that GetAtt Arn carries.
        LogDestinationConfigs=[Sub(f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:"
                                   f"log-group:${{{group.title}}}")],
        RedactedFields=[wafv2.LoggingConfigurationFieldToMatch(SingleHeader=wafv2.SingleHeader(Name=header))
                        for header in WAF_REDACTED_HEADERS],
        LoggingFilter=wafv2.LoggingFilter(DefaultBehavior="DROP", Filters=[wafv2.Filter(
            Behavior="KEEP", Requirement="MEETS_ANY",
            Conditions=[wafv2.Condition(ActionCondition=wafv2.ActionCondition(Action=action))
                        for action in ("BLOCK", "COUNT")],
        )]),
    ), "WAF logging: blocked and counted requests only, credentials redacted"))
