"""Security and durability properties any valid config must render to, checkable over any rendered set.

`violations(files, environments)` takes rendered files (`render.render_all(...)`: path -> text) and the configs
they came from, and returns one line per broken property (empty: all hold). `tests/test_adopter.py` runs it over
the render of `config/` and over the render of an adopted copy (pinned, renamed, a third environment, ...), so
the properties are stated once and hold whatever the adopter's values are. They never name a sample value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import yaml

from generator import naming
from generator.cfn import DESCRIPTION_KEY
from generator.config import APP_RUNNER, ECS_EXPRESS, MIN_LOG_RETENTION_DAYS, SECRET_LOOKING_NAME, EnvironmentConfig

# Resources that hold data or keys: their fate on stack deletion and replacement is always written down.
STATEFUL_TYPES = ("AWS::S3::Bucket", "AWS::RDS::DBCluster", "AWS::KMS::Key", "AWS::Backup::BackupVault",
                  "AWS::Logs::LogGroup", "AWS::SecretsManager::Secret")
POLICY_KEYS = ("PolicyDocument", "KeyPolicy", "AssumeRolePolicyDocument")
# Per backend platform: the service resource, and the one role that resolves the injected secrets.
SERVICE_TYPE = {APP_RUNNER: "AWS::AppRunner::Service", ECS_EXPRESS: "AWS::ECS::ExpressGatewayService"}
SECRET_READER = {APP_RUNNER: "InstanceRole", ECS_EXPRESS: "ExecutionRole"}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(document) -> list[dict]:
    found = document.get("Statement", []) if isinstance(document, dict) else []
    return _as_list(found)


def _documents(resource: dict) -> Iterator[dict]:
    properties = resource.get("Properties", {})
    for key in POLICY_KEYS:
        if isinstance(properties.get(key), dict):
            yield properties[key]
    for policy in properties.get("Policies", []) or []:
        if isinstance(policy, dict) and isinstance(policy.get("PolicyDocument"), dict):
            yield policy["PolicyDocument"]


def _resources(templates: dict[str, dict], type_: str) -> Iterator[tuple[str, str, dict]]:
    for path, template in templates.items():
        for logical_id, resource in (template.get("Resources") or {}).items():
            if resource["Type"] == type_:
                yield path, logical_id, resource


def _boundary_names(templates: dict[str, dict]) -> set[str]:
    """Names of the managed policies that roles use as their permissions boundary."""
    names = set()
    for path in templates:
        for _, _, role in _resources({path: templates[path]}, "AWS::IAM::Role"):
            arn = role.get("Properties", {}).get("PermissionsBoundary")
            text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else str(arn or "")
            if ":policy/" in text:
                names.add(text.rsplit(":policy/", 1)[1])
    return names


def _wildcard(action: str, *, ceiling: bool) -> bool:
    """A wildcard action; a permissions boundary (a ceiling that grants nothing) may name whole services."""
    return action == "*" if ceiling else "*" in action


def _template_checks(templates: dict[str, dict]) -> Iterator[str]:
    boundaries = _boundary_names(templates)
    for path, template in templates.items():
        for lid, res in (template.get("Resources") or {}).items():
            where = f"{path}:{lid}"
            if not res.get("Metadata", {}).get(DESCRIPTION_KEY):
                yield f"{where}: no Metadata.{DESCRIPTION_KEY}"
            if res["Type"] in STATEFUL_TYPES and not {"DeletionPolicy", "UpdateReplacePolicy"} <= set(res):
                yield f"{where}: stateful {res['Type']} without explicit DeletionPolicy and UpdateReplacePolicy"
            ceiling = res["Type"] == "AWS::IAM::ManagedPolicy" and \
                res.get("Properties", {}).get("ManagedPolicyName") in boundaries
            for document in _documents(res):
                for s in _statements(document):
                    if s.get("Effect") == "Allow" and any(_wildcard(str(a), ceiling=ceiling)
                                                          for a in _as_list(s.get("Action", []))):
                        yield f"{where}: Allow statement {s.get('Sid', '')!r} with a wildcard action"
    for path, lid, res in _resources(templates, "AWS::S3::Bucket"):
        p = res.get("Properties", {})
        block = p.get("PublicAccessBlockConfiguration", {})
        if not all(block.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                                   "RestrictPublicBuckets")):
            yield f"{path}:{lid}: bucket without a full public access block"
        rules = p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not rules:
            yield f"{path}:{lid}: bucket without default encryption"
    for path, lid, _ in _resources(templates, "AWS::S3::Bucket"):
        policies = [r for _, _, r in _resources({path: templates[path]}, "AWS::S3::BucketPolicy")
                    if r["Properties"].get("Bucket") == {"Ref": lid}]
        tls = any(s.get("Effect") == "Deny" and "aws:SecureTransport" in str(s.get("Condition"))
                  for r in policies for s in _statements(r["Properties"]["PolicyDocument"]))
        if not tls:
            yield f"{path}:{lid}: no bucket policy denying requests without TLS"
    for path, lid, res in _resources(templates, "AWS::Logs::LogGroup"):
        p = res.get("Properties", {})
        if not isinstance(p.get("RetentionInDays"), int) or p["RetentionInDays"] < MIN_LOG_RETENTION_DAYS:
            yield f"{path}:{lid}: log group retention {p.get('RetentionInDays')} < {MIN_LOG_RETENTION_DAYS} days"
        if "KmsKeyId" not in p:
            yield f"{path}:{lid}: log group not encrypted with a customer key"
    for path, lid, res in _resources(templates, "AWS::KMS::Key"):
        if res.get("Properties", {}).get("EnableKeyRotation") is not True:
            yield f"{path}:{lid}: KMS key without rotation"
        # RetainExceptOnCreate: a key kept on deletion, dropped only when the create that made it rolls back
        if res.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate") or res.get("UpdateReplacePolicy") != \
                "Retain":
            yield f"{path}:{lid}: KMS key not retained"
    for path, lid, res in _resources(templates, "AWS::SNS::Topic"):
        if "KmsMasterKeyId" not in res.get("Properties", {}):
            yield f"{path}:{lid}: SNS topic not encrypted"
    for path, lid, res in _resources(templates, "AWS::SecretsManager::Secret"):
        p = res.get("Properties", {})
        if "SecretString" in p or "KmsKeyId" not in p:
            yield f"{path}:{lid}: secret with a value in the template or without a customer key"
    for path, lid, res in _resources(templates, "AWS::CloudWatch::Alarm"):
        p = res.get("Properties", {})
        resources = templates[path].get("Resources", {})
        # An alarm whose every action is a scaling policy drives autoscaling; it notifies nobody.
        scaling = p.get("AlarmActions") and all(
            isinstance(a, dict) and resources.get(a.get("Ref"), {}).get("Type")
            == "AWS::ApplicationAutoScaling::ScalingPolicy" for a in p["AlarmActions"])
        if not scaling and (not p.get("AlarmActions") or not p.get("OKActions")):
            yield f"{path}:{lid}: alarm that does not notify on ALARM and OK"


def _environment_checks(config: EnvironmentConfig, templates: dict[str, dict]) -> Iterator[str]:
    env = config.name
    mine = {path: t for path, t in templates.items() if path.startswith(f"{env}/")}
    if not mine:
        yield f"{env}: nothing rendered"
        return
    for path, lid, res in _resources(mine, "AWS::RDS::DBCluster"):
        p = res["Properties"]
        if p.get("StorageEncrypted") is not True or "KmsKeyId" not in p:
            yield f"{path}:{lid}: database storage not encrypted with a customer key"
        if res.get("DeletionPolicy") != "Snapshot":
            yield f"{path}:{lid}: database not snapshotted on deletion"
        if config.production and p.get("DeletionProtection") is not True:
            yield f"{path}:{lid}: production database without deletion protection"
    secret_refs = [{"Ref": naming.app_secret_output(name)} for name in config.backend.secrets]
    readers = sorted(f"{path}:{lid}" for path, template in mine.items()
                     for lid, res in (template.get("Resources") or {}).items()
                     for document in _documents(res) for s in _statements(document)
                     if s.get("Effect") == "Allow" and "secretsmanager:GetSecretValue" in _as_list(s.get("Action"))
                     and any(r in secret_refs for r in _as_list(s.get("Resource"))))
    platform = config.backend.platform
    expected = [f"{env}/backend.yaml:{SECRET_READER[platform]}"] + (
        [f"{env}/workers.yaml:ExecutionRole", f"{env}/workers.yaml:TaskRole"] if config.workers.enabled else [])
    if readers != expected:
        yield f"{env}: application secrets readable by {readers}, expected {expected} only"
    services = list(_resources(mine, SERVICE_TYPE[platform]))
    if len(services) != 1:
        yield f"{env}: expected one {SERVICE_TYPE[platform]}, found {len(services)}"
    for path, lid, res in services:
        if platform == APP_RUNNER:
            image = res["Properties"]["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
            plain = image.get("RuntimeEnvironmentVariables", [])
            injected = [(s["Name"], s["Value"]) for s in image.get("RuntimeEnvironmentSecrets", [])]
        else:
            container = res["Properties"]["PrimaryContainer"]
            plain = container.get("Environment", [])
            injected = [(s["Name"], s["ValueFrom"]) for s in container.get("Secrets", [])]
        for variable in plain:
            name = variable["Name"]
            if SECRET_LOOKING_NAME.search(name) and not name.endswith("_ARN"):
                yield f"{path}:{lid}: plain variable {name} looks like a secret"
        if [value for _, value in injected] != secret_refs:
            yield f"{path}:{lid}: secrets injected {injected}, expected exactly the declared ones by ARN"
    root = mine.get(f"{env}/root.yaml", {})
    pattern = root.get("Parameters", {}).get("ImageTag", {}).get("AllowedPattern", "")
    if not pattern or re.match(pattern, "latest"):
        yield f"{env}/root.yaml: ImageTag accepts 'latest'"


def violations(files: dict[str, str], environments: list[EnvironmentConfig]) -> list[str]:
    """Every broken property of a rendered set (`render.render_all` output) and the configs it came from."""
    templates = {path: yaml.safe_load(text) for path, text in files.items() if path.endswith(".yaml")}
    found = list(_template_checks(templates))
    for config in environments:
        found += _environment_checks(config, templates)
    return found
