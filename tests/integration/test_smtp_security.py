"""The notifier's mailer against a real SMTP server (aiosmtpd) with STARTTLS or TLS and a
login: the password goes only over an encrypted connection (issue 11). The relay's
certificate is self-signed, made here, and trusted through SMTP_CA_FILE."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from dev.ports import free_port
from services.notifier.mailer import SmtpMailer, classify
from services.notifier.settings import NotifierSettings
from shared.policies.retry_policy import FailureKind

# The plain relays below are meant to be unsafe: aiosmtpd's warning about them is expected.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

USER, PASSWORD = "albums", "s3cret-relay-password"


@dataclass
class Relay:
    """What the server saw: each login (and whether it came over TLS) and each mail."""

    port: int = 0
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    mails: list[bytes] = field(default_factory=list)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        # session.ssl is set by STARTTLS only; on implicit TLS the transport says it.
        encrypted = (
            session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        )
        self.logins.append((login, password, encrypted))
        return AuthResult(success=(login, password) == (USER, PASSWORD))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append(envelope.content)
        return "250 OK"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _run(relay: Relay, **options: Any) -> Iterator[Relay]:
    relay.port = free_port()
    controller = Controller(
        relay, hostname="127.0.0.1", port=relay.port, authenticator=relay.authenticate, **options
    )
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


@pytest.fixture
def starttls_relay(certificate: tuple[Path, Path]) -> Iterator[Relay]:
    """A relay that takes mail only after STARTTLS and a login."""
    yield from _run(
        Relay(),
        tls_context=_server_context(certificate),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
    )


@pytest.fixture
def tls_relay(certificate: tuple[Path, Path]) -> Iterator[Relay]:
    """A relay on implicit TLS (as on port 465), with a login. aiosmtpd offers AUTH on
    implicit TLS only with auth_require_tls off (it looks for a STARTTLS); the login's
    record says whether the session was encrypted all the same."""
    yield from _run(
        Relay(),
        ssl_context=_server_context(certificate),
        auth_required=True,
        auth_require_tls=False,
    )


@pytest.fixture
def plain_relay() -> Iterator[Relay]:
    """A relay with no TLS at all that would take a login in the clear."""
    yield from _run(Relay(), auth_require_tls=False)


def _settings(relay: Relay, **values: Any) -> NotifierSettings:
    return NotifierSettings(
        _env_file=None,
        smtp_host="127.0.0.1",  # type: ignore[call-arg]
        smtp_port=relay.port,
        smtp_timeout_s=5,
        **values,
    )


def _mail() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content("Your album is on Facebook.\n")
    return message


def test_starttls_then_login_then_the_mail(
    starttls_relay: Relay, certificate: tuple[Path, Path]
) -> None:
    settings = _settings(
        starttls_relay,
        smtp_security="starttls",
        smtp_user=USER,
        smtp_password=PASSWORD,
        smtp_ca_file=str(certificate[0]),
    )
    SmtpMailer.from_settings(settings).send(_mail())
    assert starttls_relay.logins == [(USER, PASSWORD, True)]
    assert len(starttls_relay.mails) == 1


def test_implicit_tls_with_a_login(tls_relay: Relay, certificate: tuple[Path, Path]) -> None:
    settings = _settings(
        tls_relay,
        smtp_security="tls",
        smtp_user=USER,
        smtp_password=PASSWORD,
        smtp_ca_file=str(certificate[0]),
    )
    SmtpMailer.from_settings(settings).send(_mail())
    assert tls_relay.logins == [(USER, PASSWORD, True)] and len(tls_relay.mails) == 1


def test_a_relay_without_starttls_never_gets_the_password(plain_relay: Relay) -> None:
    settings = _settings(
        plain_relay, smtp_security="starttls", smtp_user=USER, smtp_password=PASSWORD
    )
    with pytest.raises(Exception) as refused:
        SmtpMailer.from_settings(settings).send(_mail())
    assert plain_relay.logins == [] and plain_relay.mails == []
    failure = classify(refused.value)
    assert failure.kind is FailureKind.TRANSIENT and "STARTTLS" in failure.reason


def test_a_relay_whose_certificate_is_not_trusted_never_gets_the_password(
    starttls_relay: Relay,
) -> None:
    settings = _settings(
        starttls_relay, smtp_security="starttls", smtp_user=USER, smtp_password=PASSWORD
    )  # no SMTP_CA_FILE: the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        SmtpMailer.from_settings(settings).send(_mail())
    assert starttls_relay.logins == [] and starttls_relay.mails == []


def test_a_password_over_plain_smtp_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="SMTP_SECURITY"):
        NotifierSettings(
            _env_file=None,
            smtp_user=USER,  # type: ignore[call-arg]
            smtp_password=SecretStr(PASSWORD),
        )
    settings = NotifierSettings(
        _env_file=None,
        smtp_user=USER,  # type: ignore[call-arg]
        smtp_password=SecretStr(PASSWORD),
        smtp_security="starttls",
    )
    assert isinstance(settings.smtp_password, SecretStr)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)


def test_a_local_relay_may_take_the_login_in_the_clear_when_told(plain_relay: Relay) -> None:
    settings = _settings(
        plain_relay, smtp_user=USER, smtp_password=PASSWORD, smtp_allow_plaintext_login=True
    )
    SmtpMailer.from_settings(settings).send(_mail())
    assert plain_relay.logins == [(USER, PASSWORD, False)] and len(plain_relay.mails) == 1


def test_no_login_and_no_tls_still_works_for_the_local_catcher(plain_relay: Relay) -> None:
    SmtpMailer.from_settings(_settings(plain_relay)).send(_mail())
    assert plain_relay.logins == [] and len(plain_relay.mails) == 1
