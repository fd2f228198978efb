"""STUB (being written): VPC, subnets per tier and AZ, NAT, NACLs, flow logs, S3 endpoint, security groups. Parameters and outputs below are the contract with the root."""

from troposphere import Template, cloudformation

from generator.cfn import add_output, add_parameter, new_template
from generator.config import EnvironmentConfig

COMPONENT = "network"
DESCRIPTION = "VPC, subnets per tier and AZ, NAT, NACLs, flow logs, S3 endpoint, security groups"
PARAMETERS = ['OpsKeyArn']
OUTPUTS = ['VpcId', 'PublicSubnetIds', 'AppSubnetIds', 'DataSubnetIds', 'ConnectorSecurityGroupId', 'DatabaseSecurityGroupId', 'NatGatewayIds']


def build(config: EnvironmentConfig) -> Template:
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    for name in PARAMETERS:
        add_parameter(template, name, name)
    template.add_resource(cloudformation.WaitConditionHandle("Placeholder"))
    for name in OUTPUTS:
        add_output(template, name, "stub", name)
    return template
