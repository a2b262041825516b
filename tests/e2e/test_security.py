"""``allocator serve`` safe by default, and TLS end to end with a CA made for the test."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from allocator.cli.main import app as cli
from allocator.client import AllocatorClient, ProblemError, ServerUnreachable
from allocator.domain.token import Role, new_token, record_for
from allocator.store.token_file import append_record
from tests.e2e.server import free_port


def serve(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "allocator", "serve", "--log-level", "warning", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_an_open_api_is_refused_beyond_loopback(database_url: str) -> None:
    process = serve(
        "--host", "0.0.0.0", "--port", str(free_port()), ALLOCATOR_DATABASE_URL=database_url
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "no tokens are configured" in output and "--insecure" in output


def test_an_unreadable_tokens_file_stops_the_start(database_url: str, tmp_path: Path) -> None:
    process = serve(
        "--port",
        str(free_port()),
        ALLOCATOR_DATABASE_URL=database_url,
        ALLOCATOR_TOKENS_FILE=str(tmp_path / "missing"),
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "ALLOCATOR_TOKENS_FILE" in output


def test_a_database_url_it_cannot_use_stops_the_start() -> None:
    url = "postgresql://postgres@127.0.0.1:5511,127.0.0.1:55x2/allocator"
    process = serve("--port", str(free_port()), ALLOCATOR_DATABASE_URL=url)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert output.strip().splitlines()[-1] == (
        "error: ALLOCATOR_DATABASE_URL: port '55x2' is not a port number"
    )


def test_tls_cert_without_key_is_refused(database_url: str, tmp_path: Path) -> None:
    process = serve("--tls-cert", str(tmp_path / "c.pem"), ALLOCATOR_DATABASE_URL=database_url)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "--tls-key" in output


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """Write a CA certificate and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "allocator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@contextmanager
def tls_server(database_url: str, directory: Path) -> Iterator[tuple[str, Path, str]]:
    """A TLS server with tokens; yield its URL, the CA file and an allocator-role token."""
    ca, cert, key = make_ca_and_server_cert(directory)
    token = new_token()
    append_record(directory / "tokens", record_for(token, "tls-client", Role.ALLOCATOR))
    port = free_port()
    process = serve(
        "--port",
        str(port),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        ALLOCATOR_DATABASE_URL=database_url,
        ALLOCATOR_TOKENS_FILE=str(directory / "tokens"),
    )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{url}/readyz", verify=False, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "TLS server not ready in 60 s"
            time.sleep(0.1)
        yield url, ca, token
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_tls_with_a_private_ca(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_server(database_url, tmp_path) as (url, ca, token):
        with AllocatorClient(url, token=token, verify=str(ca)) as api:
            assert api.list_ranges() is not None
            with pytest.raises(ProblemError) as refused:
                api.create_range("tls", "10.77.0.0/24")  # the allocator role may not
            assert refused.value.status == 403
        with AllocatorClient(url, token=token) as untrusting, pytest.raises(ServerUnreachable):
            untrusting.list_ranges()  # the system trust store does not know the test CA
        # The admin CLI: global --token-file and --ca-file (which set the variables below for
        # the process; monkeypatch restores them afterwards).
        monkeypatch.setenv("ALLOCATOR_TOKEN", "")
        monkeypatch.setenv("ALLOCATOR_CA_FILE", "")
        (tmp_path / "token").write_text(token + "\n")
        listed = CliRunner().invoke(
            cli,
            [
                "--token-file",
                str(tmp_path / "token"),
                "--ca-file",
                str(ca),
                "ranges",
                "list",
                "--server",
                url,
            ],
        )
        assert listed.exit_code == 0, listed.output
        # The CLI and the agent configure the client from the environment.
        monkeypatch.setenv("ALLOCATOR_CA_FILE", str(ca))
        monkeypatch.setenv("ALLOCATOR_TOKEN", token)
        with AllocatorClient(url) as from_env:
            assert from_env.list_allocations()["revision"] >= 0
        monkeypatch.setenv("ALLOCATOR_TOKEN", "wrong")
        with AllocatorClient(url) as wrong, pytest.raises(ProblemError) as unauthorized:
            wrong.list_ranges()
        assert unauthorized.value.status == 401 and unauthorized.value.type == "unauthorized"
