"""Network stack: VPC with public / private-app / isolated-data subnets per AZ, NAT, per-tier NACLs,
VPC flow logs, the S3 gateway endpoint and the security groups of the App Runner connector and Aurora.

Traffic model: the only flows are app -> internet (HTTPS via NAT, e.g. the Gemini API), app -> S3 (HTTPS
via the gateway endpoint) and app -> Aurora (5432). Nothing is initiated from the internet into the VPC
(App Runner's ingress never enters it). NACLs and security groups allow exactly these flows.
"""

from __future__ import annotations

from awacs import logs as awacs_logs
from awacs import s3 as awacs_s3
from awacs.aws import Allow, Condition, PolicyDocument, Principal, Statement, StringEquals
from troposphere import GetAtt, GetAZs, Join, Ref, Select, Sub, Tags, Template, ec2, iam

from generator import naming
from generator.cfn import add_output, add_parameter, describe, new_template
from generator.components import log_group, service_trust
from generator.config import EnvironmentConfig
from generator.stacks.spec import StackSpec
from generator.subnets import SubnetPlan, plan

COMPONENT = "network"
DESCRIPTION = "VPC, subnets per tier and AZ, NAT, NACLs, flow logs, S3 endpoint, security groups"

ANYWHERE = "0.0.0.0/0"
HTTPS = 443
POSTGRES = 5432
TCP = 6
# NAT gateways pick the source ports of their translated connections from the whole of 1024-65535, so
# return traffic may arrive on any port in it, 3389 included: a range with a hole (e.g. skipping RDP)
# drops the replies of ~1 connection in 64,000, which then fails with a connect timeout. Opening the
# range admits no new connection: NAT gateways drop unsolicited inbound traffic and the connector
# security group (stateful) has no ingress rule.
EPHEMERAL = (1024, 65535)
FLOW_LOG_AGGREGATION_SECONDS = 600  # 60 or 600; 600 is the cheaper default, enough for investigations

# Data-plane actions the backend may perform on S3 through the gateway endpoint (the bucket policies and
# the backend's role decide which buckets and objects; the endpoint only keeps traffic in this account).
S3_ENDPOINT_ACTIONS = [
    awacs_s3.GetObject, awacs_s3.GetObjectVersion, awacs_s3.PutObject, awacs_s3.DeleteObject,
    awacs_s3.ListBucket, awacs_s3.GetBucketLocation, awacs_s3.AbortMultipartUpload,
    awacs_s3.ListMultipartUploadParts, awacs_s3.ListBucketMultipartUploads,
]


def _tags(config: EnvironmentConfig, name: str) -> Tags:
    """Stable tags plus a Name for the VPC console (resources that set Tags skip `apply_tags`)."""
    return Tags(**naming.environment_tags(config, COMPONENT), Name=f"{config.app_name}-{config.name}-{name}")


def _az(index: int):
    return Select(index, GetAZs(Ref("AWS::Region")))


def _vpc(template: Template, config: EnvironmentConfig,
         subnets: SubnetPlan) -> tuple[ec2.VPC, ec2.VPCGatewayAttachment]:
    vpc = template.add_resource(describe(ec2.VPC(
        "Vpc", CidrBlock=subnets.vpc, EnableDnsSupport=True, EnableDnsHostnames=True,
        Tags=_tags(config, "vpc"),
    ), "VPC (DNS support and hostnames on: App Runner's VPC connector needs both)"))
    igw = template.add_resource(describe(ec2.InternetGateway(
        "InternetGateway", Tags=_tags(config, "igw")), "Internet gateway (used only by the NAT gateways)"))
    attachment = template.add_resource(describe(ec2.VPCGatewayAttachment(
        "InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(igw)),
        "Attaches the internet gateway to the VPC"))
    return vpc, attachment


def _subnets(template: Template, config: EnvironmentConfig, vpc: ec2.VPC, tier: str, cidrs, purpose: str):
    result = []
    for index, cidr in enumerate(cidrs):
        result.append(template.add_resource(describe(ec2.Subnet(
            f"{tier.capitalize()}Subnet{index + 1}",
            VpcId=Ref(vpc), CidrBlock=cidr, AvailabilityZone=_az(index), MapPublicIpOnLaunch=False,
            Tags=_tags(config, f"{tier}-{index + 1}"),
        ), f"{purpose} subnet in AZ {index + 1} ({cidr})")))
    return result


def _route_table(template: Template, config: EnvironmentConfig, vpc, logical_id: str, name: str, text: str,
                 subnets) -> ec2.RouteTable:
    table = template.add_resource(describe(ec2.RouteTable(
        logical_id, VpcId=Ref(vpc), Tags=_tags(config, name)), text))
    for subnet in subnets:
        template.add_resource(describe(ec2.SubnetRouteTableAssociation(
            f"{subnet.title}RouteTableAssociation", SubnetId=Ref(subnet), RouteTableId=Ref(table)),
            f"Associates {subnet.title} with {logical_id}"))
    return table


def _nat_gateways(template: Template, config: EnvironmentConfig, public, attachment) -> list[ec2.NatGateway]:
    count = config.network.nat_gateway_count
    gateways = []
    for index in range(count):
        eip = template.add_resource(describe(ec2.EIP(
            f"NatEip{index + 1}", Domain="vpc", DependsOn=[attachment.title],
            Tags=_tags(config, f"nat-{index + 1}")), f"Elastic IP of NAT gateway {index + 1}"))
        gateways.append(template.add_resource(describe(ec2.NatGateway(
            f"NatGateway{index + 1}", AllocationId=GetAtt(eip, "AllocationId"), SubnetId=Ref(public[index]),
            ConnectivityType="public", Tags=_tags(config, f"nat-{index + 1}"),
        ), f"NAT gateway {index + 1}: outbound internet for the app subnets (Gemini API)")))
    return gateways


def _routing(template: Template, config: EnvironmentConfig, vpc, attachment, public, app, data, nats):
    public_table = _route_table(template, config, vpc, "PublicRouteTable", "public",
                                "Route table of the public subnets: default route to the internet gateway", public)
    template.add_resource(describe(ec2.Route(
        "PublicDefaultRoute", RouteTableId=Ref(public_table), DestinationCidrBlock=ANYWHERE,
        GatewayId=Ref("InternetGateway"), DependsOn=[attachment.title]),
        "Default route of the public subnets to the internet gateway"))
    app_tables = []
    for index, subnet in enumerate(app):
        nat = nats[index] if len(nats) > 1 else nats[0]
        table = _route_table(template, config, vpc, f"AppRouteTable{index + 1}", f"app-{index + 1}",
                             f"Route table of app subnet {index + 1}: default route to {nat.title}", [subnet])
        template.add_resource(describe(ec2.Route(
            f"AppDefaultRoute{index + 1}", RouteTableId=Ref(table), DestinationCidrBlock=ANYWHERE,
            NatGatewayId=Ref(nat)), f"Default route of app subnet {index + 1} through {nat.title}"))
        app_tables.append(table)
    data_table = _route_table(template, config, vpc, "DataRouteTable", "data",
                              "Route table of the isolated data subnets: VPC-local routes only, no internet", data)
    return app_tables, data_table


def _s3_endpoint(template: Template, vpc, tables) -> ec2.VPCEndpoint:
    same_account = Statement(
        Sid="OnlyThisAccountsBuckets",
        Effect=Allow,
        Principal=Principal("*"),  # endpoint policies name no principal; IAM of the caller still applies
        Action=S3_ENDPOINT_ACTIONS,
        Resource=["*"],  # scoped by aws:ResourceAccount below: any bucket, as long as this account owns it
        Condition=Condition(StringEquals({
            "aws:ResourceAccount": Ref("AWS::AccountId"),
            "aws:PrincipalAccount": Ref("AWS::AccountId"),
        })),
    )
    return template.add_resource(describe(ec2.VPCEndpoint(
        "S3GatewayEndpoint", VpcId=Ref(vpc), VpcEndpointType="Gateway",
        ServiceName=Sub("com.amazonaws.${AWS::Region}.s3"),
        RouteTableIds=[Ref(t) for t in tables],
        PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[same_account]),
    ), "S3 gateway endpoint (free): S3 traffic of app and data subnets stays off the NAT, only to this "
       "account's buckets"))


def _acl(template: Template, config: EnvironmentConfig, vpc, tier: str, text: str, subnets, rules):
    """A NACL with `rules` = [(egress, cidr, (from, to), description)], numbered in steps of 10."""
    acl = template.add_resource(describe(ec2.NetworkAcl(
        f"{tier.capitalize()}NetworkAcl", VpcId=Ref(vpc), Tags=_tags(config, f"{tier}-nacl")), text))
    numbers = {False: 100, True: 100}
    for egress, cidr, (low, high), why in rules:
        number = numbers[egress]
        numbers[egress] += 10
        direction = "Egress" if egress else "Ingress"
        template.add_resource(describe(ec2.NetworkAclEntry(
            f"{acl.title}{direction}{number}", NetworkAclId=Ref(acl), RuleNumber=number, Protocol=TCP,
            RuleAction="allow", Egress=egress, CidrBlock=cidr, PortRange=ec2.PortRange(From=low, To=high),
        ), f"{tier} NACL {direction.lower()} {number}: {why}"))
    for subnet in subnets:
        template.add_resource(describe(ec2.SubnetNetworkAclAssociation(
            f"{subnet.title}NetworkAclAssociation", SubnetId=Ref(subnet), NetworkAclId=Ref(acl)),
            f"Associates {subnet.title} with {acl.title}"))
    return acl


def _acls(template: Template, config: EnvironmentConfig, vpc, subnets: SubnetPlan, public, app, data):
    def returns(what: str):
        return [(False, ANYWHERE, EPHEMERAL, f"return traffic from {what}")]

    _acl(template, config, vpc, "public", "NACL of the public subnets (NAT gateways only)", public, [
        (False, subnets.vpc, (HTTPS, HTTPS), "HTTPS from the VPC to the NAT gateways"),
        *returns("the internet"),
        (True, ANYWHERE, (HTTPS, HTTPS), "HTTPS from the NAT gateways to the internet"),
        (True, subnets.vpc, EPHEMERAL, "return traffic from the NAT gateways to the VPC"),
    ])
    _acl(template, config, vpc, "app", "NACL of the app subnets (App Runner VPC connector)", app, [
        *returns("the internet via NAT, S3 and Aurora"),
        (True, ANYWHERE, (HTTPS, HTTPS), "HTTPS to the internet (via NAT) and S3 (gateway endpoint)"),
        *[(True, cidr, (POSTGRES, POSTGRES), f"PostgreSQL to data subnet {i + 1}")
          for i, cidr in enumerate(subnets.data.subnets)],
    ])
    _acl(template, config, vpc, "data", "NACL of the isolated data subnets (Aurora)", data, [
        *[(False, cidr, (POSTGRES, POSTGRES), f"PostgreSQL from app subnet {i + 1}")
          for i, cidr in enumerate(subnets.app.subnets)],
        *[(True, cidr, EPHEMERAL, f"return traffic to app subnet {i + 1}")
          for i, cidr in enumerate(subnets.app.subnets)],
    ])


def _flow_logs(template: Template, config: EnvironmentConfig, vpc) -> None:
    group = log_group(template, "FlowLogGroup", description="VPC flow logs (all traffic), KMS-encrypted",
                      kms_key_arn=Ref("OpsKeyArn"), retention_days=config.logging.retention_days,
                      retain=config.production)
    role = template.add_resource(describe(iam.Role(
        "FlowLogRole",
        AssumeRolePolicyDocument=service_trust(
            "vpc-flow-logs.amazonaws.com", "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc-flow-log/*"),
        Policies=[iam.Policy(PolicyName="deliver-flow-logs", PolicyDocument=PolicyDocument(
            Version="2012-10-17",
            Statement=[Statement(
                Sid="WriteToTheFlowLogGroupOnly",
                Effect=Allow,
                Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents, awacs_logs.DescribeLogStreams],
                Resource=[GetAtt(group, "Arn")],
            )],
        ))],
    ), "Role that VPC Flow Logs assumes to write into the flow-log group"))
    template.add_resource(describe(ec2.FlowLog(
        "VpcFlowLog", ResourceType="VPC", ResourceId=Ref(vpc), TrafficType="ALL",
        # The log group ARN without the ":*" that GetAtt Arn appends: with it, delivery targets a group whose
        # name ends in ":*" and the flow log sits in "access error" (AWS-confirmed, aws-cloudformation-user-
        # guide PR #306; terraform-provider-aws #6373).
        LogDestinationType="cloud-watch-logs",
        LogDestination=Sub(f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:"
                           f"${{{group.title}}}"),
        DeliverLogsPermissionArn=GetAtt(role, "Arn"), MaxAggregationInterval=FLOW_LOG_AGGREGATION_SECONDS,
    ), "Flow log of the whole VPC (accepted and rejected traffic)"))


def _https_client_group(template: Template, vpc, logical_id: str, *, group_description: str,
                        egress_description: str, description: str) -> ec2.SecurityGroup:
    """A security group that nothing connects to (no SecurityGroupIngress) with HTTPS (443) out to anywhere:
    the egress rule is declared inline, which removes the default allow-all egress rule. PostgreSQL to Aurora
    is added by _postgres_path. `description` goes into the resource's metadata."""
    return template.add_resource(describe(ec2.SecurityGroup(
        logical_id,
        GroupDescription=group_description,
        VpcId=Ref(vpc),
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            IpProtocol="tcp", FromPort=HTTPS, ToPort=HTTPS, CidrIp=ANYWHERE, Description=egress_description)],
    ), description))


def _security_groups(template: Template, vpc) -> tuple[ec2.SecurityGroup, ec2.SecurityGroup]:
    connector = _https_client_group(
        template, vpc, "ConnectorSecurityGroup",
        group_description="App Runner VPC connector: HTTPS out, PostgreSQL to Aurora, nothing in",
        egress_description="HTTPS to the internet via NAT (Gemini API) and to AWS APIs/S3",
        description="Security group of the App Runner VPC connector ENIs")
    database = template.add_resource(describe(ec2.SecurityGroup(
        "DatabaseSecurityGroup",
        GroupDescription="Aurora PostgreSQL: 5432 only from the App Runner connector, no egress",
        VpcId=Ref(vpc),
        # Aurora initiates no connections into the VPC. A loopback-only rule replaces the default
        # allow-all egress (a security group cannot have an empty egress list in CloudFormation).
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            IpProtocol="-1", CidrIp="127.0.0.1/32",
            Description="No egress: loopback placeholder that replaces the default allow-all rule")],
    ), "Security group of the Aurora cluster"))
    # Cross-references as separate rules, so neither group depends on the other (no cycle).
    _postgres_path(template, connector, database, "Connector", "connector",
                   "PostgreSQL from the App Runner VPC connector only")
    return connector, database


def _postgres_path(template: Template, client: ec2.SecurityGroup, database: ec2.SecurityGroup, name: str,
                   label: str, ingress_description: str) -> None:
    """PostgreSQL (5432) from the `client` group to the Aurora group: an egress rule on the client and an
    ingress rule on the database, as separate resources so neither group depends on the other (no cycle).
    Logical ids `<name>ToDatabaseEgress` and `DatabaseFrom<name>Ingress`; `label` names the client in the
    rules' metadata descriptions."""
    template.add_resource(describe(ec2.SecurityGroupEgress(
        f"{name}ToDatabaseEgress", GroupId=GetAtt(client, "GroupId"), IpProtocol="tcp",
        FromPort=POSTGRES, ToPort=POSTGRES, DestinationSecurityGroupId=GetAtt(database, "GroupId"),
        Description="PostgreSQL to the Aurora security group"), f"{label.capitalize()} -> Aurora on 5432"))
    template.add_resource(describe(ec2.SecurityGroupIngress(
        f"DatabaseFrom{name}Ingress", GroupId=GetAtt(database, "GroupId"), IpProtocol="tcp",
        FromPort=POSTGRES, ToPort=POSTGRES, SourceSecurityGroupId=GetAtt(client, "GroupId"),
        Description=ingress_description), f"Aurora <- {label} on 5432"))


def _worker_security_group(template: Template, vpc, database: ec2.SecurityGroup) -> ec2.SecurityGroup:
    """The ECS worker tasks' group (workers stack): nothing in; HTTPS out and PostgreSQL to Aurora only."""
    worker = _https_client_group(
        template, vpc, "WorkerSecurityGroup",
        group_description="ECS worker tasks: HTTPS out, PostgreSQL to Aurora, nothing in",
        egress_description="HTTPS to the internet via NAT (Gemini API), AWS APIs, ECR and S3",
        description="Security group of the ECS worker tasks")
    _postgres_path(template, worker, database, "Worker", "workers", "PostgreSQL from the ECS worker tasks")
    return worker


def build(config: EnvironmentConfig) -> Template:
    """Network stack of one environment: VPC, public/app/data subnets, NAT gateways, S3 endpoint, ACLs, flow logs.

    Parameters: OpsKeyArn (from the security stack). Outputs: VpcId, PublicSubnetIds, AppSubnetIds,
    DataSubnetIds, NatGatewayIds, ConnectorSecurityGroupId, DatabaseSecurityGroupId, and WorkerSecurityGroupId
    when workers are enabled. Raises: ValueError from `generator.subnets.plan` when the VPC CIDR cannot hold the
    subnets; naming.NamingError when a generated AWS name breaks its service's limit.
    """
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    add_parameter(template, "OpsKeyArn", "ARN of the operations KMS key (encrypts the flow-log group)")
    subnets = plan(config.network.vpc_cidr, config.network.az_count)

    vpc, attachment = _vpc(template, config, subnets)
    public = _subnets(template, config, vpc, "public", subnets.public.subnets, "Public (NAT gateway)")
    app = _subnets(template, config, vpc, "app", subnets.app.subnets, "Private app (App Runner connector)")
    data = _subnets(template, config, vpc, "data", subnets.data.subnets, "Isolated data (Aurora)")
    nats = _nat_gateways(template, config, public, attachment)
    app_tables, data_table = _routing(template, config, vpc, attachment, public, app, data, nats)
    _s3_endpoint(template, vpc, [*app_tables, data_table])
    _acls(template, config, vpc, subnets, public, app, data)
    _flow_logs(template, config, vpc)
    connector, database = _security_groups(template, vpc)

    add_output(template, "VpcId", Ref(vpc), "VPC id")
    add_output(template, "PublicSubnetIds", Join(",", [Ref(s) for s in public]), "Public subnet ids (comma-separated)")
    add_output(template, "AppSubnetIds", Join(",", [Ref(s) for s in app]),
               "Private app subnet ids for the App Runner VPC connector (comma-separated)")
    add_output(template, "DataSubnetIds", Join(",", [Ref(s) for s in data]),
               "Isolated data subnet ids for the Aurora subnet group (comma-separated)")
    add_output(template, "ConnectorSecurityGroupId", GetAtt(connector, "GroupId"),
               "Security group of the App Runner VPC connector")
    add_output(template, "DatabaseSecurityGroupId", GetAtt(database, "GroupId"), "Security group of the Aurora cluster")
    if config.workers.enabled:
        worker = _worker_security_group(template, vpc, database)
        add_output(template, "WorkerSecurityGroupId", GetAtt(worker, "GroupId"),
                   "Security group of the ECS worker tasks")
    add_output(template, "NatGatewayIds", Join(",", [Ref(n) for n in nats]), "NAT gateway ids (comma-separated)")
    return template


SPEC = StackSpec(name="network", component=COMPONENT, description=DESCRIPTION, build=build)
