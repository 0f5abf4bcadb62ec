"""The PostgreSQL admin password RDS keeps in AWS Secrets Manager (`manage_master_user_password`).

With `LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN` the admin URI carries no password: the listener
reads the secret (JSON with `username` and `password`, as RDS writes it) with botocore, the AWS SDK's
core, whose default credential chain does IRSA (the pod's web-identity token exchanged at STS), SigV4
signing and retries. RDS rotates the secret (every 7 days by default), so a password the server
rejects is re-read once (`refresh`) before the failure is reported.

Nothing here logs or repeats the secret's value; errors name the store and the ARN and say what to fix.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Final

from listener.managed.errors import StoreAuthError, StoreConfigError, StoreError, StoreUnreachable

ARN_PATTERN: Final = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):secretsmanager:(?P<region>[a-z]{2}(-[a-z]+)+-[0-9]+):"
    r"(?P<account>[0-9]{12}):secret:[A-Za-z0-9/_+=.@!-]+$"
)
"""A Secrets Manager secret ARN (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html)."""
SETTING: Final = "LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN"


def parse_arn(arn: str) -> str:
    """The secret's region; ValueError (naming no secret value: an ARN is not one) when `arn` is no ARN."""
    match = ARN_PATTERN.match(arn)
    if match is None:
        raise ValueError(
            "is not a Secrets Manager secret ARN "
            "(arn:aws:secretsmanager:<region>:<account>:secret:<name>); use the RDS instance's "
            "master_user_secrets[0].secret_arn"
        )
    return match.group("region")


@dataclass(frozen=True)
class MasterCredentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never the password, whatever prints this
        return f"MasterCredentials(username={self.username!r}, password='****')"


class MasterSecret:
    """Reads (and on demand re-reads) one RDS-managed master secret. Thread-safe."""

    def __init__(
        self,
        arn: str,
        store: str,
        *,
        endpoint_url: str | None = None,
        session: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ):
        self.arn = arn
        self.region = parse_arn(arn)
        self.store = store
        self._endpoint_url = endpoint_url
        self._session = session
        self._timeouts = (connect_timeout, read_timeout)
        self._client: Any = None
        self._lock = threading.Lock()
        self._current: MasterCredentials | None = None
        self._seen: set[str] = set()
        """Every password read so far: errors are scrubbed of all of them."""

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._seen)

    def current(self) -> MasterCredentials:
        """The credentials last read, reading them first if never read."""
        with self._lock:
            if self._current is None:
                self._current = self._read()
            return self._current

    def cached(self) -> MasterCredentials | None:
        return self._current

    def refresh(self) -> bool:
        """Re-read the secret; True when the password changed (RDS rotated it)."""
        with self._lock:
            before = self._current
            self._current = self._read()
            return before is None or before.password != self._current.password

    # -- the one AWS call ---------------------------------------------------------------------------

    def _client_for(self) -> Any:
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            session = self._session or botocore.session.get_session()
            self._client = session.create_client(
                "secretsmanager",
                region_name=self.region,
                endpoint_url=self._endpoint_url,
                config=Config(
                    connect_timeout=self._timeouts[0],
                    read_timeout=self._timeouts[1],
                    retries={"mode": "standard", "max_attempts": 3},
                ),
            )
        return self._client

    def _read(self) -> MasterCredentials:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            CredentialRetrievalError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        where = f"the admin password in Secrets Manager secret {self.arn}"
        try:
            response = self._client_for().get_secret_value(SecretId=self.arn)
        except ClientError as error:
            raise self._client_error(error, where) from None
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as error:
            raise StoreConfigError(
                self.store,
                f"cannot read {where}: no AWS credentials ({type(error).__name__}). The listener's "
                "ServiceAccount needs the annotation eks.amazonaws.com/role-arn naming an IAM role it may "
                "assume (IRSA), and the pod AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE from EKS",
            ) from None
        except (BotoConnectionError, HTTPClientError) as error:
            raise StoreUnreachable(
                self.store,
                f"cannot read {where}: {_one_line(error)}. Allow the listener's egress to "
                f"secretsmanager.{self.region}.amazonaws.com and sts.{self.region}.amazonaws.com on 443 "
                "(firewall domains or VPC interface endpoints)",
            ) from None
        except BotoCoreError as error:
            raise StoreConfigError(self.store, f"cannot read {where}: {_one_line(error)}") from None
        text = response.get("SecretString")
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            data = None
        username = data.get("username") if isinstance(data, dict) else None
        password = data.get("password") if isinstance(data, dict) else None
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise StoreConfigError(
                self.store,
                f"{where} is not the JSON RDS writes (an object with string 'username' and 'password'); "
                f"{SETTING} must be the RDS instance's master_user_secrets[0].secret_arn",
            )
        self._seen.add(password)
        return MasterCredentials(username, password)

    def _client_error(self, error: Any, where: str) -> StoreError:
        info = error.response.get("Error", {})
        code = str(info.get("Code", "")) or "error"
        operation = getattr(error, "operation_name", "GetSecretValue")
        detail = f"{operation} {code}"
        if operation == "AssumeRoleWithWebIdentity":
            return StoreAuthError(
                self.store,
                f"cannot read {where}: STS refused the pod's web identity ({detail}). Check the IAM role's "
                "trust policy (this cluster's OIDC provider, system:serviceaccount:<namespace>:listener, "
                "audience sts.amazonaws.com) and the ServiceAccount's eks.amazonaws.com/role-arn annotation",
            )
        if code in ("AccessDeniedException", "AccessDenied"):
            return StoreAuthError(
                self.store,
                f"cannot read {where}: access denied ({detail}). The listener's IRSA role needs "
                f"secretsmanager:GetSecretValue on {self.arn} (and kms:Decrypt on its key if a customer "
                "KMS key encrypts it)",
            )
        if code == "DecryptionFailure":
            return StoreAuthError(
                self.store,
                f"cannot read {where}: Secrets Manager could not decrypt it ({detail}). The listener's IRSA "
                "role needs kms:Decrypt on the secret's KMS key",
            )
        if code == "ResourceNotFoundException":
            return StoreConfigError(
                self.store,
                f"cannot read {where}: no such secret ({detail}). {SETTING} must be the RDS instance's "
                "master_user_secrets[0].secret_arn (it changes if RDS stops and restarts managing it)",
            )
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException"):
            return StoreAuthError(
                self.store,
                f"cannot read {where}: AWS rejected the listener's credentials ({detail}). Check IRSA: "
                "the ServiceAccount's eks.amazonaws.com/role-arn annotation and the role's trust policy",
            )
        # Throttling, InternalServiceError, ...: may pass by themselves.
        return StoreUnreachable(self.store, f"cannot read {where}: {detail}; retrying")


def _one_line(error: BaseException) -> str:
    return re.sub(r"\s+", " ", str(error)).strip()
