"""Production guard rails applied after every successful deploy of a protected stack.

Termination protection on the root (nested stacks inherit it), and stack policies that deny
replacing or deleting the database and the buckets. A stack policy does not reach into nested
stacks, so the root gets one (protecting each nested stack that holds such resources) and each of
those nested stacks gets its own (protecting the resources by type).
"""

from __future__ import annotations

import json

from generator.deploy import stacks
from generator.deploy.session import Aws
from generator.deploy.templates import Loaded

PROTECTED_TYPES = ("AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "AWS::S3::Bucket", "AWS::ECR::Repository")
DENIED_ACTIONS = ["Update:Replace", "Update:Delete"]


def holds_protected(loaded: Loaded) -> bool:
    """True if this template or any template below it declares a protected resource type."""
    return any(res.get("Type") in PROTECTED_TYPES
               for _, item in loaded.walk() for res in item.body.get("Resources", {}).values())


def policy(loaded: Loaded) -> dict:
    """Stack policy for one stack: allow updates, deny replace/delete of protected resources in it."""
    statements: list[dict] = [{"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}]
    statements.append({"Effect": "Deny", "Principal": "*", "Action": DENIED_ACTIONS, "Resource": "*",
                       "Condition": {"StringEquals": {"ResourceType": list(PROTECTED_TYPES)}}})
    guarded = sorted(lid for lid, child in loaded.children.items() if holds_protected(child))
    if guarded:
        statements.append({"Effect": "Deny", "Principal": "*", "Action": DENIED_ACTIONS,
                           "Resource": [f"LogicalResourceId/{lid}" for lid in guarded]})
    return {"Statement": statements}


def apply(aws: Aws, stack_id: str, loaded: Loaded) -> list[str]:
    """Enable termination protection and set the stack policies; returns the labels that got a policy."""
    cfn = aws.client("cloudformation")
    cfn.update_termination_protection(StackName=stack_id, EnableTerminationProtection=True)
    physical = {"": stack_id, **stacks.nested(aws, stack_id)}
    protected = []
    for label, item in loaded.walk():
        if label in physical and holds_protected(item):
            cfn.set_stack_policy(StackName=physical[label], StackPolicyBody=json.dumps(policy(item)))
            protected.append(label or "(root)")
    return protected
