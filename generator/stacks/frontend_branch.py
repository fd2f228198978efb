"""STUB (being written): Amplify branch, custom domain and first build. Parameters and outputs below are the contract with the root."""

from troposphere import Template, cloudformation

from generator.cfn import add_output, add_parameter, new_template
from generator.config import EnvironmentConfig

COMPONENT = "frontend"
DESCRIPTION = "Amplify branch, custom domain and first build"
PARAMETERS = ['AppId', 'ServiceUrl', 'OpsKeyArn']
OUTPUTS = ['BranchName']


def build(config: EnvironmentConfig) -> Template:
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    for name in PARAMETERS:
        add_parameter(template, name, name)
    template.add_resource(cloudformation.WaitConditionHandle("Placeholder"))
    for name in OUTPUTS:
        add_output(template, name, "stub", name)
    return template
