"""STUB (being written): account-level bootstrap stack."""

from troposphere import Template, cloudformation

from generator.cfn import new_template
from generator.config import AccountConfig, EnvironmentConfig

DESCRIPTION = "account-level bootstrap"


def build(account: AccountConfig, environments: list[EnvironmentConfig]) -> Template:
    template = new_template(f"{account.app_name}: {DESCRIPTION}")
    template.add_resource(cloudformation.WaitConditionHandle("Placeholder"))
    return template
