"""The backend's regional WAF web ACL and its logging, shared by every backend platform.

`web_acl(config)` gives the web ACL (rate limit per IP + AWS managed rule groups); `waf_logging(...)` adds a
KMS-encrypted `aws-waf-logs-` log group and the logging configuration (blocked and counted requests only).
The association with the backend's endpoint belongs to each platform's stack.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, Template, wafv2

from generator import naming
from generator.cfn import describe
from generator.components import log_group
from generator.config import EnvironmentConfig

# WAF rule names double as their CloudWatch metric names (the `Rule` dimension).
RATE_LIMIT_RULE = "RateLimitPerIp"
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
WAF_REDACTED_HEADERS = ("authorization", "cookie")


def web_acl(config: EnvironmentConfig) -> wafv2.WebACL:
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
    for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1):
        rules.append(wafv2.WebACLRule(
            Name=group, Priority=priority,
            OverrideAction=wafv2.OverrideAction(**{"None": {}}),  # keep the group's own Block actions
            Statement=wafv2.Statement(ManagedRuleGroupStatement=wafv2.ManagedRuleGroupStatement(
                VendorName="AWS", Name=group)),
            VisibilityConfig=visibility(group),
        ))
    return describe(wafv2.WebACL(
        "WebAcl",
        Name=name,
        Scope="REGIONAL",
        Description=f"{config.app_name} {config.name}: rate limit per IP and AWS managed rules for the backend",
        DefaultAction=wafv2.DefaultAction(Allow=wafv2.AllowAction()),
        Rules=rules,
        VisibilityConfig=visibility(name),  # metric name = web ACL name: the `WebACL` dimension
    ), "WAF web ACL of the backend (rate limit, AWS managed rules)")


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
