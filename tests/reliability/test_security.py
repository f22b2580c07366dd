"""Nobody in without credentials, and no secret in any log: NATS with user/password over TLS (a
self-signed CA made by the test), S3 with keys; services get everything from the environment."""
from __future__ import annotations

import datetime
import ipaddress
import secrets
from pathlib import Path

import nats
import pytest

from simreel.runtime.config import NatsSettings

from tests.support.artifacts import expected_keys
from tests.support.eventlog import replay, stored_counts, submit, wait_result
from tests.support.runs import request

pytestmark = pytest.mark.integration


def make_tls(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "simreel test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = d / "ca.pem", d / "server.pem", d / "server-key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key_pem.chmod(0o600)
    return ca_pem, cert_pem, key_pem


async def _refused(url: str, **kw) -> str:
    with pytest.raises(Exception) as info:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, **kw)
        await nc.close()
    return f"{type(info.value).__name__}: {info.value}"


async def test_auth_tls_and_no_secret_in_logs(make_stack, s3server, tmp_path):
    ca, cert, key = make_tls(tmp_path / "tls")
    user, password = "simreel-svc", "pw-" + secrets.token_hex(12)
    bucket = "rel-secure"
    env = {**s3server.env(bucket), "SIMREEL_NATS_USER": user, "SIMREEL_NATS_PASSWORD": password,
           "SIMREEL_NATS_TLS_CA": str(ca)}
    stack = make_stack(env=env, nats_args=["--user", user, "--pass", password, "--tls", "--tlscert", str(cert),
                                           "--tlskey", str(key)], start=False)
    stack.start()
    good = NatsSettings(url=stack.url, user=user, password=password, tls_ca=str(ca))

    # The services, configured only through the environment, do a whole run over TLS with creds.
    req = request("secure-run", episodes=1)
    await submit(good, req)
    result = await wait_result(good, req.run_id, timeout=90)
    assert result.ok, result.error
    assert set(stored_counts(await replay(good))) == expected_keys(req)
    assert all(a.url.startswith(s3server.url) for a in result.artifacts)

    # Nobody else gets in.
    from simreel.transport.connection import tls_client_context
    tls = tls_client_context(good)
    reasons = [
        await _refused(stack.url, tls=tls),  # TLS but no credentials
        await _refused(stack.url, tls=tls, user=user, password="wrong"),  # wrong password
        await _refused(stack.url, tls=tls, user="intruder", password=password),  # unknown user
        await _refused(stack.url, user=user, password=password),  # no TLS trust: self-signed CA unknown
    ]
    assert sum("authorization" in r.lower() for r in reasons[:3]) == 3, reasons
    assert "certificate" in reasons[3].lower() or "ssl" in reasons[3].lower(), reasons[3]

    # The services stop cleanly; then no secret may appear in any log they wrote.
    stack.stop()
    logs = {p.name: p.read_text(errors="replace") for p in stack.log_dir.glob("*.log")}
    assert {"simulator-0.log", "encoder-0.log", "uploader-0.log", "retention-0.log"} <= set(logs)
    assert "artifact_stored" in logs["uploader-0.log"]  # the logs are not just empty
    for secret, what in ((password, "NATS password"), (s3server.secret_key, "S3 secret key"),
                         (s3server.access_key, "S3 access key"), ("X-Amz-Signature", "presigned URL signature")):
        leaks = [name for name, text in logs.items() if secret in text]
        assert not leaks, f"{what} appears in {leaks}"
