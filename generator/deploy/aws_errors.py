"""A failed AWS call as one "what: why. To fix: ..." message with the advice that fits its kind.

Kinds, told apart by botocore's exception class and the error code AWS returns: unknown --profile (usage error),
no usable credentials or credentials AWS rejected (preflight refused), endpoint not reachable (network, proxy,
region, AWS_ENDPOINT_URL), permission denied, a resource that does not exist, throttling, anything else.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from generator.deploy.errors import EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, DeployError

CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "RequestExpired",
    "UnrecognizedClientException", "InvalidAccessKeyId", "AuthFailure", "InvalidSignatureException",
    "IncompleteSignature", "MissingAuthenticationToken",
})
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                          "KMSAccessDeniedException"})
MISSING_CODES = frozenset({"ResourceNotFoundException", "NoSuchEntity", "NotFoundException", "NoSuchBucket",
                           "RepositoryNotFoundException", "DBClusterNotFoundFault", "ChangeSetNotFound",
                           "ChangeSetNotFoundException", "StackNotFoundException"})
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException",
                              "RequestLimitExceeded", "SlowDown"})
# Credential-chain failures that are not about the network: expired SSO tokens and friends.
_CREDENTIAL_ERROR_NAMES = frozenset({"SSOTokenLoadError", "UnauthorizedSSOTokenError", "TokenRetrievalError",
                                     "CredentialRetrievalError", "InvalidConfigError", "SSOError"})


class AwsCallError(DeployError):
    """DeployError whose exit code depends on the kind of failure."""

    def __init__(self, what: str, why: str, todo: str, exit_code: int) -> None:
        super().__init__(what, why, todo)
        self.exit_code = exit_code


def _text(value: object) -> str:
    return str(value).strip().rstrip(".")


def explain(exc: BotoCoreError | ClientError, doing: str, profile: str | None = None) -> AwsCallError:
    """The message for `exc`, raised while `doing` (e.g. "storing gemini-api-key"); never includes secret values
    (botocore's texts carry operation names, codes and AWS's message only)."""
    named = f" (profile {profile})" if profile else ""
    login = "log in (`aws sso login --profile NAME`) and pass --profile NAME or set AWS_PROFILE, or set new access keys"
    if isinstance(exc, ProfileNotFound):
        return AwsCallError(f"AWS profile {profile!r} not found" if profile else "AWS profile not found", _text(exc),
                            "check the name (`aws configure list-profiles`) or drop --profile", EXIT_USAGE)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError) or \
            type(exc).__name__ in _CREDENTIAL_ERROR_NAMES:
        return AwsCallError("no usable AWS credentials", f"{doing}{named}: {_text(exc)}", login, EXIT_REFUSED)
    if isinstance(exc, ConnectionError):
        return AwsCallError("could not reach AWS", f"{doing}: {_text(exc)}",
                            "check network access, any proxy (HTTPS_PROXY), the region and AWS_ENDPOINT_URL if set, "
                            "then retry", EXIT_FAILED)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), _text(error.get("Message") or "no message")
        operation = exc.operation_name
        if code in CREDENTIAL_CODES:
            return AwsCallError("AWS rejected the credentials", f"{doing}{named}: {operation}: {code}: {message}",
                                f"refresh them: {login}", EXIT_REFUSED)
        if code in DENIED_CODES:
            return AwsCallError(f"AWS denied {operation}", f"{doing}: {code}: {message}",
                                f"your role{named} needs permission for {operation}; ask an administrator or use "
                                "another role, then retry", EXIT_FAILED)
        if code in MISSING_CODES:
            return AwsCallError(f"not found in AWS: {operation}", f"{doing}: {code}: {message}",
                                "check that the stack it belongs to is deployed in this account and region "
                                "(`adkit status ENV`), then retry", EXIT_FAILED)
        if code in THROTTLING_CODES:
            return AwsCallError(f"AWS throttled {operation}", f"{doing}: {code}: {message}",
                                "wait a minute and retry", EXIT_FAILED)
        return AwsCallError(f"AWS refused {operation}", f"{doing}: {code}: {message}",
                            "read AWS's message above, fix what it names, then retry", EXIT_FAILED)
    return AwsCallError("an AWS call failed", f"{doing}: {_text(exc)}",
                        "check the region, network access and credentials, then retry", EXIT_FAILED)

