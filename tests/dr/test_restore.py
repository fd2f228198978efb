"""`adkit restore` end to end against a local moto server: the real command, real boto3 calls.

moto implements RestoreDBClusterToPointInTime, CreateDBInstance and ModifyDBCluster (managed master
secret), so no server patch is needed. moto does not model the restore's data or timing: the tests
cover the parameters the command sends, its validation and its messages, not RDS's behaviour.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.session
import fixture_config
import pytest
import requests
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from generator import naming
from generator.cli import main
from generator.deploy.errors import Interrupted
from generator.dr import restore
from generator.dr.restore import default_target, writer_params

pytestmark = pytest.mark.slow  # starts a local moto server

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
SOURCE = naming.db_cluster_identifier(fixture_config.environment("dev"))
STACK = naming.root_stack_name(fixture_config.environment("dev"))


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url, monkeypatch):
    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    for key, value in {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                       "AWS_DEFAULT_REGION": REGION, "ADKIT_POLL_SECONDS": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return lambda service: boto3.client(service, region_name=REGION)


def _config_dir(tmp_path: Path, account: str = ACCOUNT) -> Path:
    """The fixture dev.toml with account and region pinned (restore, like deploy, needs both)."""
    config = fixture_config.copy_config(tmp_path)
    dev = config / "environments" / "dev.toml"
    fixture_config.edit(dev, 'account_id = "123456789012"', f'account_id = "{account}"')
    fixture_config.edit(dev, 'region = "eu-west-1"', f'region = "{REGION}"')
    return config


@pytest.fixture
def world(aws, tmp_path):
    """A deployed-looking dev environment: the Aurora cluster, its writer, its KMS-encrypted log group
    and a root stack whose output names the cluster."""
    kms, ec2, rds, logs = aws("kms"), aws("ec2"), aws("rds"), aws("logs")
    key = kms.create_key(Description="data key")["KeyMetadata"]["Arn"]
    ops_key = kms.create_key(Description="ops key")["KeyMetadata"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{az}")
               ["Subnet"]["SubnetId"] for i, az in enumerate("ab")]
    sg = ec2.create_security_group(GroupName="db", Description="database", VpcId=vpc)["GroupId"]
    rds.create_db_subnet_group(DBSubnetGroupName="dev-data", DBSubnetGroupDescription="data", SubnetIds=subnets)
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName="dev-pg17", Description="tls",
                                          DBParameterGroupFamily="aurora-postgresql17")
    rds.create_db_cluster(
        DBClusterIdentifier=SOURCE, Engine="aurora-postgresql", EngineVersion="17.7", DatabaseName="app",
        MasterUsername="postgres", ManageMasterUserPassword=True, MasterUserSecretKmsKeyId=key,
        StorageEncrypted=True, KmsKeyId=key, DBSubnetGroupName="dev-data", VpcSecurityGroupIds=[sg],
        DBClusterParameterGroupName="dev-pg17", EnableIAMDatabaseAuthentication=True, BackupRetentionPeriod=7,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0, "MaxCapacity": 4, "SecondsUntilAutoPause": 1800},
        EnableCloudwatchLogsExports=["postgresql"],
        Tags=[{"Key": "Environment", "Value": "dev"}, {"Key": "Component", "Value": "data"}])
    rds.create_db_instance(DBInstanceIdentifier="dev-writer-abc", DBClusterIdentifier=SOURCE,
                           DBInstanceClass="db.serverless", Engine="aurora-postgresql",
                           EnablePerformanceInsights=True, PerformanceInsightsKMSKeyId=key,
                           PerformanceInsightsRetentionPeriod=7)
    group = f"/aws/rds/cluster/{SOURCE}/postgresql"
    logs.create_log_group(logGroupName=group, kmsKeyId=ops_key)
    logs.put_retention_policy(logGroupName=group, retentionInDays=30)
    template = {"Resources": {"Marker": {"Type": "AWS::SSM::Parameter",
                                         "Properties": {"Name": "/kit-fixture/dev/marker", "Type": "String",
                                                        "Value": "root"}}},
                "Outputs": {"DatabaseClusterIdentifier": {"Value": SOURCE}}}
    aws("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    cluster = rds.describe_db_clusters(DBClusterIdentifier=SOURCE)["DBClusters"][0]
    return {"key": key, "ops_key": ops_key, "sg": sg, "cluster": cluster, "config": _config_dir(tmp_path)}


def _restore(world, *args: str) -> int:
    return main(["restore", "dev", "--config-dir", str(world["config"]), *args])


def _clusters(aws) -> set[str]:
    return {c["DBClusterIdentifier"] for c in aws("rds").describe_db_clusters()["DBClusters"]}


def test_restore_latest_creates_a_protected_copy_with_a_serverless_writer(world, aws, capsys):
    assert _restore(world, "--latest", "--yes", "--target-cluster", "dev-restored") == 0
    rds = aws("rds")
    new = rds.describe_db_clusters(DBClusterIdentifier="dev-restored")["DBClusters"][0]
    assert new["DeletionProtection"] is True
    assert new["DBSubnetGroup"] == "dev-data"
    assert [g["VpcSecurityGroupId"] for g in new["VpcSecurityGroups"]] == [world["sg"]]
    assert new["KmsKeyId"] == world["key"]
    assert new["DBClusterParameterGroup"] == "dev-pg17"
    assert new["IAMDatabaseAuthenticationEnabled"] is True
    assert new["ServerlessV2ScalingConfiguration"]["MaxCapacity"] == 4
    assert new["MasterUserSecret"]["KmsKeyId"] == world["key"]
    tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=new["DBClusterArn"])["TagList"]}
    assert tags["Environment"] == "dev" and tags["RestoredFrom"] == SOURCE and tags["RestoredToTime"] == "latest"
    assert not any(key.startswith("aws:") for key in tags)
    writer = rds.describe_db_instances(DBInstanceIdentifier="dev-restored-writer")["DBInstances"][0]
    assert writer["DBClusterIdentifier"] == "dev-restored"
    assert writer["DBInstanceClass"] == "db.serverless"
    group = aws("logs").describe_log_groups(logGroupNamePrefix="/aws/rds/cluster/dev-restored/")["logGroups"][0]
    assert group["kmsKeyId"] == world["ops_key"] and group["retentionInDays"] == 30
    out, err = capsys.readouterr()
    assert f"writer endpoint:    {new['Endpoint']}:5432" in out
    assert "Cut-over" in out and "pg_dump" in out and "delete-db-cluster --db-cluster-identifier dev-restored" in out
    assert "cluster dev-restored: available" in err and "instance dev-restored-writer: available" in err


def test_restore_to_a_time_inside_the_window_names_the_cluster_after_it(world, aws, capsys):
    moment = world["cluster"]["EarliestRestorableTime"].astimezone(UTC)  # the window's bounds are inclusive
    assert _restore(world, "--to-time", moment.isoformat(), "--yes") == 0
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = f"{SOURCE}-pitr-{moment:%Y%m%d%H%M}"
    assert expected in _clusters(aws)
    new = aws("rds").describe_db_clusters(DBClusterIdentifier=expected)["DBClusters"][0]
    tags = aws("rds").list_tags_for_resource(ResourceName=new["DBClusterArn"])["TagList"]
    assert {"Key": "RestoredToTime", "Value": stamp} in tags
    assert f"to {stamp}" in capsys.readouterr().out


def test_restore_refuses_a_time_outside_the_window_before_any_write(world, aws, capsys):
    before = _clusters(aws)
    too_old = (world["cluster"]["EarliestRestorableTime"] - timedelta(days=1)).astimezone(UTC)
    assert _restore(world, "--to-time", too_old.strftime("%Y-%m-%dT%H:%M:%SZ"), "--yes") == 2
    assert "outside the restorable window" in capsys.readouterr().err
    assert _clusters(aws) == before


def test_restore_refuses_a_time_without_a_zone(world, capsys):
    assert _restore(world, "--to-time", "2026-05-01T12:30:00", "--yes") == 2
    assert "has no time zone" in capsys.readouterr().err


def test_restore_unknown_environment_is_a_usage_error(world, capsys):
    assert main(["restore", "nosuchenv", "--latest", "--yes", "--config-dir", str(world["config"])]) == 2
    err = capsys.readouterr().err
    assert "unknown environment 'nosuchenv'" in err and "dev" in err


def test_restore_unknown_source_cluster_is_refused_clearly(world, aws, capsys):
    before = _clusters(aws)
    assert _restore(world, "--latest", "--yes", "--source-cluster", "no-such-cluster") == 3
    err = capsys.readouterr().err
    assert "source cluster no-such-cluster not found" in err and "--source-cluster" in err
    assert _clusters(aws) == before


def test_restore_without_the_stack_says_how_to_name_the_cluster(world, aws, capsys):
    aws("cloudformation").delete_stack(StackName=STACK)
    assert _restore(world, "--latest", "--yes") == 3
    err = capsys.readouterr().err
    assert f"stack {STACK} not found" in err and "--source-cluster" in err


def test_restore_never_overwrites_an_existing_cluster(world, aws, capsys):
    assert _restore(world, "--latest", "--yes", "--target-cluster", SOURCE) == 3
    assert f"cluster {SOURCE} already exists" in capsys.readouterr().err


def test_restore_refuses_credentials_for_another_account(world, aws, tmp_path, capsys):
    before = _clusters(aws)
    other = _config_dir(tmp_path / "other", account="111111111111")
    assert main(["restore", "dev", "--config-dir", str(other), "--latest", "--yes"]) == 3
    assert "111111111111" in capsys.readouterr().err
    assert _clusters(aws) == before


def test_restore_without_yes_and_without_a_terminal_creates_nothing(world, aws, capsys):
    before = _clusters(aws)
    assert _restore(world, "--latest") == 4
    assert "--yes" in capsys.readouterr().err
    assert _clusters(aws) == before


def test_restore_writer_copies_performance_insights_of_the_source_writer():
    """moto does not model Performance Insights, so the parameters are checked directly."""
    source = {"PerformanceInsightsEnabled": True, "PerformanceInsightsKMSKeyId": "key-arn",
              "PerformanceInsightsRetentionPeriod": 31}
    params = writer_params("dev-restored", "aurora-postgresql", [], source)
    assert params["DBInstanceClass"] == "db.serverless" and params["PubliclyAccessible"] is False
    assert (params["EnablePerformanceInsights"], params["PerformanceInsightsKMSKeyId"],
            params["PerformanceInsightsRetentionPeriod"]) == (True, "key-arn", 31)
    assert "EnablePerformanceInsights" not in writer_params("dev-restored", "aurora-postgresql", [], None)


def test_restore_default_target_fits_rds_limits_for_the_writer_too():
    from datetime import datetime

    name = default_target("a" * 63, datetime(2026, 5, 1, 12, 30, tzinfo=UTC))
    assert name.endswith("-pitr-202605011230") and len(name + "-writer") <= 63


# ---- real-RDS semantics moto does not model (botocore Stubber, no server) ---------------------------

class _StubbedAws:
    """The `Aws` interface with stubbed clients: every call must have been queued on `stub(service)`."""

    region = REGION

    def __init__(self) -> None:
        self._session, self._stubber = botocore.session.get_session(), Stubber
        self._clients: dict = {}
        self.stubbers: dict = {}

    def client(self, service: str):
        if service not in self._clients:
            client = self._session.create_client(service, region_name=REGION, endpoint_url="https://stubbed.invalid",
                                                 aws_access_key_id="x", aws_secret_access_key="x")
            self.stubbers[service] = self._stubber(client)
            self.stubbers[service].activate()
            self._clients[service] = client
        return self._clients[service]

    def stub(self, service: str):
        self.client(service)
        return self.stubbers[service]


def _stub_plan() -> restore.Plan:
    return restore.Plan(environment="dev", source_id=SOURCE, target_id="dev-restored", restore_time=None,
                        window=(T_EARLY, T_LATE), cluster_params={"DBClusterIdentifier": "dev-restored",
                                                                  "SourceDBClusterIdentifier": SOURCE,
                                                                  "UseLatestRestorableTime": True},
                        writer_params=writer_params("dev-restored", "aurora-postgresql", [], None),
                        secret_kms_key="arn:aws:kms:us-east-1:123456789012:key/data", log_group=None)


T_EARLY, T_LATE = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)


def _cluster(status: str, secret: str | None = None) -> dict:
    found = {"DBClusterIdentifier": "dev-restored", "Status": status, "Engine": "aurora-postgresql",
             "Endpoint": "dev-restored.cluster-x.us-east-1.rds.amazonaws.com", "Port": 5432}
    if secret:
        found["MasterUserSecret"] = {"SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!x",
                                     "SecretStatus": secret}
    return {"DBClusters": [found]}


def test_restore_waits_for_the_managed_secret_not_just_an_available_cluster():
    """Right after ModifyDBCluster the cluster still reads `available`: the secret's status decides."""
    aws, which = _StubbedAws(), {"DBClusterIdentifier": "dev-restored"}
    rds = aws.stub("rds")
    rds.add_response("restore_db_cluster_to_point_in_time", {"DBCluster": {}})
    rds.add_response("describe_db_clusters", _cluster("creating"), which)
    rds.add_response("describe_db_clusters", _cluster("available"), which)
    rds.add_response("create_db_instance", {"DBInstance": {}})
    rds.add_response("describe_db_instances", {"DBInstances": [{"DBInstanceStatus": "available"}]},
                     {"DBInstanceIdentifier": "dev-restored-writer"})
    rds.add_response("modify_db_cluster", {"DBCluster": {}})
    rds.add_response("describe_db_clusters", _cluster("available"), which)             # not yet modifying
    rds.add_response("describe_db_clusters", _cluster("modifying", "creating"), which)
    rds.add_response("describe_db_clusters", _cluster("available", "active"), which)
    rds.add_response("describe_db_clusters", _cluster("available", "active"), which)   # the returned state
    err = io.StringIO()

    cluster = restore.execute(aws, _stub_plan(), progress=restore.Progress(err), timeout=60, poll=0)

    assert cluster["MasterUserSecret"]["SecretStatus"] == "active"
    assert "master secret pending" in err.getvalue() and "modifying" in err.getvalue()
    rds.assert_no_pending_responses()


def test_restore_ctrl_c_while_waiting_names_the_commands_left(monkeypatch):
    aws = _StubbedAws()
    aws.stub("rds").add_response("restore_db_cluster_to_point_in_time", {"DBCluster": {}})

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(restore, "wait_available", interrupted)

    with pytest.raises(Interrupted) as raised:
        restore.execute(aws, _stub_plan(), progress=restore.Progress(io.StringIO()), timeout=60, poll=0)

    message = raised.value.message
    assert raised.value.exit_code == 130 and "nothing was cancelled" in message
    assert "create-db-instance --db-instance-identifier dev-restored-writer" in message
    assert "--manage-master-user-password" in message


def test_restore_keeps_io_optimized_storage():
    """RestoreDBClusterToPointInTime defaults to Standard storage (`aurora`); moto cannot model aurora-iopt1."""
    aws = _StubbedAws()
    rds = aws.stub("rds")
    source = {"DBClusterIdentifier": SOURCE, "DBClusterArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{SOURCE}",
              "Engine": "aurora-postgresql", "Status": "available", "Port": 5432, "DBSubnetGroup": "dev-data",
              "StorageType": "aurora-iopt1", "EarliestRestorableTime": T_EARLY, "LatestRestorableTime": T_LATE}
    rds.add_response("describe_db_clusters", {"DBClusters": [source]}, {"DBClusterIdentifier": SOURCE})
    rds.add_client_error("describe_db_clusters", "DBClusterNotFoundFault", "not found", 404,
                         expected_params={"DBClusterIdentifier": "dev-restored"})
    rds.add_response("list_tags_for_resource", {"TagList": []}, {"ResourceName": source["DBClusterArn"]})

    plan = restore.plan(aws, environment="dev", stack_name=STACK, source=SOURCE, to_time=None, target="dev-restored")

    assert plan.cluster_params["StorageType"] == "aurora-iopt1"
