"""Invariants of the network stack (VPC, subnets, NAT, routes, NACLs, flow logs, security groups)."""

from __future__ import annotations

import ipaddress
import itertools

import fixture_config
import pytest
from cfn_helpers import ENVIRONMENTS, as_list, one, props, require, resources_of, stack, statements

from generator.cfn import DESCRIPTION_KEY, to_data
from generator.config import load_environment
from generator.stacks import network
from generator.subnets import plan

ANYWHERE = "0.0.0.0/0"


def tmpl(env: str) -> dict:
    return stack(env, "network")


def cfg(env: str):
    return load_environment(env)


def tier(t: dict, name: str) -> dict[str, dict]:
    return {lid: r for lid, r in resources_of(t, "AWS::EC2::Subnet").items() if lid.startswith(name.capitalize())}


def ref(lid: str) -> dict:
    return {"Ref": lid}


def group_id(lid: str) -> dict:
    return {"Fn::GetAtt": [lid, "GroupId"]}


def routes_of(t: dict, table: str) -> list[dict]:
    return [props(r) for r in resources_of(t, "AWS::EC2::Route").values() if props(r)["RouteTableId"] == ref(table)]


def tables_of(t: dict, subnets) -> set[str]:
    assoc = resources_of(t, "AWS::EC2::SubnetRouteTableAssociation").values()
    return {props(a)["RouteTableId"]["Ref"] for a in assoc if props(a)["SubnetId"]["Ref"] in subnets}


def acl_entries(t: dict, acl: str, egress: bool) -> list[tuple[str, int, int]]:
    entries = [props(e) for e in resources_of(t, "AWS::EC2::NetworkAclEntry").values()]
    return sorted((e["CidrBlock"], e["PortRange"]["From"], e["PortRange"]["To"]) for e in entries
                  if e["NetworkAclId"] == ref(acl) and e["Egress"] is egress)


def built(env: str, **network_changes) -> dict:
    config = fixture_config.environment(env)
    config = config.model_copy(update={"network": config.network.model_copy(update=network_changes)})
    return to_data(network.build(config))


# ---- VPC and subnets ---------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_vpc_has_dns_support_and_hostnames_and_the_configured_cidr(env):
    vpc = props(one(tmpl(env), "AWS::EC2::VPC")[1])
    assert (vpc["EnableDnsSupport"], vpc["EnableDnsHostnames"], vpc["CidrBlock"]) == (True, True,
                                                                                     cfg(env).network.vpc_cidr)


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", ["public", "app", "data"])
def test_one_subnet_per_az_in_each_tier(env, name):
    subnets = tier(tmpl(env), name)
    assert len(subnets) == cfg(env).network.az_count
    assert [props(s)["AvailabilityZone"] for s in subnets.values()] == [
        {"Fn::Select": [i, {"Fn::GetAZs": {"Ref": "AWS::Region"}}]} for i in range(cfg(env).network.az_count)]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_subnet_cidrs_are_inside_the_vpc_and_do_not_overlap(env):
    vpc = ipaddress.ip_network(cfg(env).network.vpc_cidr)
    cidrs = [ipaddress.ip_network(props(s)["CidrBlock"]) for s in require(tmpl(env), "AWS::EC2::Subnet").values()]
    assert all(c.subnet_of(vpc) for c in cidrs)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(cidrs, 2))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_subnet_assigns_public_ips(env):
    assert all(props(s)["MapPublicIpOnLaunch"] is False for s in require(tmpl(env), "AWS::EC2::Subnet").values())


@pytest.mark.parametrize("vpc_cidr", ["10.0.0.0/16", "10.30.0.0/20", "172.16.0.0/18"])
def test_app_subnets_get_the_most_room(vpc_cidr):
    layout = plan(vpc_cidr, 3)
    size = {name: ipaddress.ip_network(getattr(layout, name).subnets[0]).num_addresses
            for name in ("public", "app", "data")}
    assert size["app"] > size["data"] and size["app"] > size["public"]


def test_adding_an_az_keeps_the_existing_subnet_cidrs():
    two, three = plan("10.20.0.0/16", 2), plan("10.20.0.0/16", 3)
    assert all(getattr(three, name).subnets[:2] == getattr(two, name).subnets for name in ("public", "app", "data"))


def test_the_smallest_allowed_vpc_still_gets_slash_24_subnets():
    layout = plan("10.30.0.0/20", 3)
    assert all(ipaddress.ip_network(c).prefixlen <= 24
               for name in ("public", "app", "data") for c in getattr(layout, name).subnets)


# ---- NAT and routing ---------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_nat_gateway_count_follows_nat_mode(env):
    expected = 1 if cfg(env).network.nat_mode == "single" else cfg(env).network.az_count
    assert len(resources_of(tmpl(env), "AWS::EC2::NatGateway")) == expected


@pytest.mark.parametrize("mode,count", [("single", 1), ("one_per_az", 3)])
def test_nat_mode_is_honoured_in_both_directions(mode, count):
    assert len(resources_of(built("dev", nat_mode=mode, az_count=3), "AWS::EC2::NatGateway")) == count


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_nat_gateways_sit_in_public_subnets(env):
    public = tier(tmpl(env), "public")
    assert all(props(n)["SubnetId"]["Ref"] in public for n in resources_of(tmpl(env), "AWS::EC2::NatGateway").values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_app_route_tables_send_the_default_route_to_a_nat_gateway(env):
    t = tmpl(env)
    nats = set(resources_of(t, "AWS::EC2::NatGateway"))
    tables = tables_of(t, tier(t, "app"))
    routes = {table: [(r["DestinationCidrBlock"], r.get("NatGatewayId", {}).get("Ref") in nats)
                      for r in routes_of(t, table)] for table in tables}
    assert tables and all(found == [(ANYWHERE, True)] for found in routes.values()), routes


def test_one_nat_per_az_means_each_app_subnet_uses_its_own_nat():
    t = built("dev", nat_mode="one_per_az", az_count=3)
    used = [routes_of(t, f"AppRouteTable{i}")[0]["NatGatewayId"]["Ref"] for i in (1, 2, 3)]
    assert used == ["NatGateway1", "NatGateway2", "NatGateway3"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_route_tables_have_no_route_at_all(env):
    t = tmpl(env)
    tables = tables_of(t, tier(t, "data"))
    assert tables and all(routes_of(t, table) == [] for table in tables)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_public_route_table_reaches_the_internet_gateway(env):
    t = tmpl(env)
    to_igw = {props(r)["RouteTableId"]["Ref"] for r in resources_of(t, "AWS::EC2::Route").values()
              if "GatewayId" in props(r)}
    assert to_igw == tables_of(t, tier(t, "public")) == {"PublicRouteTable"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_s3_gateway_endpoint_serves_app_and_data_route_tables_for_this_account_only(env):
    t = tmpl(env)
    endpoint = props(one(t, "AWS::EC2::VPCEndpoint")[1])
    assert {r["Ref"] for r in endpoint["RouteTableIds"]} == tables_of(t, tier(t, "app")) | tables_of(t, tier(t, "data"))
    (statement,) = statements(endpoint["PolicyDocument"])
    assert statement["Condition"]["StringEquals"]["aws:ResourceAccount"] == {"Ref": "AWS::AccountId"}
    assert not any(a.endswith("*") for a in as_list(statement["Action"]))


# ---- NACLs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_nacls_admit_from_the_internet_only_return_traffic_on_the_whole_ephemeral_range(env):
    # NAT gateways use source ports 1024-65535: a hole in the range (e.g. at 3389) drops some replies.
    # No port below 1024 (SSH, FTP, ...) is reachable from anywhere; the stateful SGs have no ingress.
    entries = [props(e) for e in resources_of(tmpl(env), "AWS::EC2::NetworkAclEntry").values()]
    from_internet = {(e["NetworkAclId"]["Ref"], e["PortRange"]["From"], e["PortRange"]["To"])
                     for e in entries if not e["Egress"] and e["CidrBlock"] == ANYWHERE}
    assert from_internet == {("PublicNetworkAcl", 1024, 65535), ("AppNetworkAcl", 1024, 65535)}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_nacl_rule_is_tcp_allow(env):
    entries = [props(e) for e in resources_of(tmpl(env), "AWS::EC2::NetworkAclEntry").values()]
    assert {(e["Protocol"], e["RuleAction"]) for e in entries} == {(6, "allow")}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_nacl_allows_only_postgres_from_app_subnets_and_returns_to_them(env):
    app = sorted(props(s)["CidrBlock"] for s in tier(tmpl(env), "app").values())
    assert acl_entries(tmpl(env), "DataNetworkAcl", egress=False) == [(c, 5432, 5432) for c in app]
    assert acl_entries(tmpl(env), "DataNetworkAcl", egress=True) == [(c, 1024, 65535) for c in app]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_app_nacl_egress_is_https_anywhere_and_postgres_to_data_subnets(env):
    data = sorted(props(s)["CidrBlock"] for s in tier(tmpl(env), "data").values())
    assert acl_entries(tmpl(env), "AppNetworkAcl", egress=True) == sorted(
        [(ANYWHERE, 443, 443)] + [(c, 5432, 5432) for c in data])
    assert acl_entries(tmpl(env), "AppNetworkAcl", egress=False) == [(ANYWHERE, 1024, 65535)]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_public_nacl_accepts_https_only_from_the_vpc(env):
    vpc = cfg(env).network.vpc_cidr
    ingress = acl_entries(tmpl(env), "PublicNetworkAcl", egress=False)
    assert (vpc, 443, 443) in ingress and all(cidr in (vpc, ANYWHERE) and (cidr == vpc or low >= 1024)
                                              for cidr, low, _ in ingress)


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", ["public", "app", "data"])
def test_every_subnet_uses_its_tiers_nacl(env, name):
    t = tmpl(env)
    assoc = [props(a) for a in resources_of(t, "AWS::EC2::SubnetNetworkAclAssociation").values()]
    assert {a["SubnetId"]["Ref"]: a["NetworkAclId"]["Ref"] for a in assoc if a["SubnetId"]["Ref"] in tier(t, name)} == {
        s: f"{name.capitalize()}NetworkAcl" for s in tier(t, name)}


# ---- Flow logs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flow_log_records_all_vpc_traffic_into_the_kms_log_group(env):
    flow = props(one(tmpl(env), "AWS::EC2::FlowLog")[1])
    assert (flow["ResourceType"], flow["ResourceId"], flow["TrafficType"]) == ("VPC", ref("Vpc"), "ALL")
    # The bare log-group ARN: GetAtt Arn ends in ":*", which leaves the flow log in "access error".
    assert flow["LogDestination"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${FlowLogGroup}"}
    assert "LogGroupName" not in flow


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flow_log_group_is_kms_encrypted_with_configured_retention(env):
    _, group = one(tmpl(env), "AWS::Logs::LogGroup")
    assert props(group)["KmsKeyId"] == ref("OpsKeyArn")
    assert props(group)["RetentionInDays"] == cfg(env).logging.retention_days >= 30
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == (
        ("RetainExceptOnCreate", "Retain") if cfg(env).production else ("Delete", "Delete"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flow_log_role_is_confused_deputy_safe_and_writes_only_its_group(env):
    role = props(one(tmpl(env), "AWS::IAM::Role")[1])
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "aws:SourceArn" in trust["Condition"]["ArnLike"]
    granted = [s for p in role["Policies"] for s in statements(p["PolicyDocument"])]
    assert all(s["Resource"] == [{"Fn::GetAtt": ["FlowLogGroup", "Arn"]}] for s in granted)
    assert {a for s in granted for a in as_list(s["Action"])} == {
        "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}


# ---- Security groups ---------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_accepts_only_postgres_from_the_connector_security_group(env):
    """...and from the worker tasks' group when the environment has workers (tests/stacks/test_workers.py)."""
    t = tmpl(env)
    assert "SecurityGroupIngress" not in props(t["Resources"]["DatabaseSecurityGroup"])
    ingress = [props(r) for r in resources_of(t, "AWS::EC2::SecurityGroupIngress").values()]
    rules = [(r["GroupId"], r["IpProtocol"], r["FromPort"], r["ToPort"], r["SourceSecurityGroupId"]) for r in ingress]
    sources = ["ConnectorSecurityGroup", *(["WorkerSecurityGroup"] if cfg(env).workers.enabled else [])]
    assert sorted(rules, key=str) == sorted(
        [(group_id("DatabaseSecurityGroup"), "tcp", 5432, 5432, group_id(source)) for source in sources], key=str)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_database_security_group_has_no_real_egress(env):
    egress = props(tmpl(env)["Resources"]["DatabaseSecurityGroup"])["SecurityGroupEgress"]
    assert [e["CidrIp"] for e in egress] == ["127.0.0.1/32"]
    assert not [r for r in resources_of(tmpl(env), "AWS::EC2::SecurityGroupEgress").values()
                if props(r)["GroupId"] == group_id("DatabaseSecurityGroup")]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_connector_egress_is_exactly_https_anywhere_and_postgres_to_the_database(env):
    t = tmpl(env)
    connector = props(t["Resources"]["ConnectorSecurityGroup"])
    inline = [(e["IpProtocol"], e["FromPort"], e["ToPort"], e["CidrIp"]) for e in connector["SecurityGroupEgress"]]
    separate = [(p["IpProtocol"], p["FromPort"], p["ToPort"], p["DestinationSecurityGroupId"])
                for p in map(props, resources_of(t, "AWS::EC2::SecurityGroupEgress").values())
                if p["GroupId"] == group_id("ConnectorSecurityGroup")]
    assert inline == [("tcp", 443, 443, ANYWHERE)]
    assert separate == [("tcp", 5432, 5432, group_id("DatabaseSecurityGroup"))]
    assert "SecurityGroupIngress" not in connector


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_security_group_rule_has_a_description(env):
    t = tmpl(env)
    inline = [r for g in resources_of(t, "AWS::EC2::SecurityGroup").values()
              for key in ("SecurityGroupIngress", "SecurityGroupEgress") for r in props(g).get(key, [])]
    separate = [props(r) for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
                for r in resources_of(t, kind).values()]
    assert inline and separate and all(r.get("Description") for r in inline + separate)


# ---- Contract ----------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_match_the_contract(env):
    assert set(tmpl(env)["Outputs"]) == {"VpcId", "PublicSubnetIds", "AppSubnetIds", "DataSubnetIds",
                                         "ConnectorSecurityGroupId", "DatabaseSecurityGroupId", "NatGatewayIds",
                                         *(["WorkerSecurityGroupId"] if cfg(env).workers.enabled else [])}
    assert tmpl(env)["Outputs"]["AppSubnetIds"]["Value"] == {
        "Fn::Join": [",", [ref(s) for s in tier(tmpl(env), "app")]]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_resource_has_a_human_description(env):
    assert all(r.get("Metadata", {}).get(DESCRIPTION_KEY) for r in tmpl(env)["Resources"].values())
