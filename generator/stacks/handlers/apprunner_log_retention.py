"""Custom resource: retention and KMS key for the log groups App Runner creates for a service.

App Runner writes to /aws/apprunner/<service-name>/<service-id>/{service,application} and creates them
without retention or a customer key. On Create and Update this handler creates each group if missing
(encrypted with KmsKeyArn), otherwise associates KmsKeyArn with it, then sets RetentionInDays. Delete
changes nothing: the logs are kept until their retention ends. Every invocation answers CloudFormation.
Properties: ServiceName, ServiceId, RetentionInDays, KmsKeyArn (optional).
The file is inlined as the Lambda's index.py; CloudFormation supplies the cfnresponse module.
"""

import boto3

LOG_KINDS = ("service", "application")


def log_group_names(service_name, service_id):
    prefix = f"/aws/apprunner/{service_name}/{service_id}"
    return [f"{prefix}/{kind}" for kind in LOG_KINDS]


def configure(client, names, retention_days, kms_key_arn=None):
    """Idempotent: safe to repeat, and safe when App Runner creates a group at the same moment."""
    for name in names:
        try:
            if kms_key_arn:
                client.create_log_group(logGroupName=name, kmsKeyId=kms_key_arn)
            else:
                client.create_log_group(logGroupName=name)
        except client.exceptions.ResourceAlreadyExistsException:
            if kms_key_arn:
                client.associate_kms_key(logGroupName=name, kmsKeyId=kms_key_arn)
        client.put_retention_policy(logGroupName=name, retentionInDays=retention_days)


def handler(event, context):
    import cfnresponse  # only exists in the Lambda runtime of inline code

    physical_id = event.get("PhysicalResourceId") or "apprunner-log-retention"
    try:
        props = event["ResourceProperties"]
        names = log_group_names(props["ServiceName"], props["ServiceId"])
        if event["RequestType"] in ("Create", "Update"):
            physical_id = names[0].rsplit("/", 1)[0]
            configure(boto3.client("logs"), names, int(props["RetentionInDays"]), props.get("KmsKeyArn") or None)
        cfnresponse.send(event, context, cfnresponse.SUCCESS, {"LogGroupNames": ",".join(names)}, physical_id)
    except Exception as exc:  # always answer, or CloudFormation waits for the timeout
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        print(f"FAILED: {reason}")
        cfnresponse.send(event, context, cfnresponse.FAILED, {}, physical_id, reason=reason)
