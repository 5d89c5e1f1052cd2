"""The stand-in's TLS, as an API server has it: its own certificate authority and a serving certificate it signs.

kubectl sends a bearer token only over HTTPS, so the stand-in serves TLS and its kubeconfig carries the CA
(`certificate-authority-data`). The CA is kept in a directory when one is given (a restarted stand-in keeps
its clients' kubeconfigs valid), else made once per process, in memory. Keys are EC P-256: fast to generate.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.crt", "ca.key"


@dataclass(frozen=True, eq=False)
class Authority:
    """A certificate authority: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        """The CA certificate, PEM (what clients trust)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=days)
    )


def new_authority() -> Authority:
    """A new CA, valid for ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-standin-ca")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return Authority(key, _validity(builder, 3650).sign(key, hashes.SHA256()))


@functools.cache
def process_authority() -> Authority:
    """The CA of every stand-in of this process that keeps no state directory (made once)."""
    return new_authority()


def kept_authority(directory: Path) -> Authority:
    """The CA kept in `directory` (`ca.crt`, `ca.key`), made and written there on first use."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: not an EC private key")
        return Authority(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    authority = new_authority()
    directory.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(_key_pem(authority.key))
    cert_path.write_bytes(authority.pem)
    return authority


def server_context(authority: Authority, host: str) -> ssl.SSLContext:
    """A server-side TLS context with a new certificate for `host`, 127.0.0.1 and localhost, signed by `authority`."""
    key = ec.generate_private_key(ec.SECP256R1())
    addresses, names = [ipaddress.ip_address("127.0.0.1")], ["localhost"]
    try:
        if ipaddress.ip_address(host) not in addresses:
            addresses.append(ipaddress.ip_address(host))
    except ValueError:  # a host name
        names.append(host)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-standin")]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in names] + [x509.IPAddress(address) for address in addresses]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False)
    )
    certificate = _validity(builder, 365).sign(authority.key, hashes.SHA256())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="kube-standin-tls-") as scratch:  # the ssl module loads keys from files
        chain = Path(scratch) / "server.pem"
        chain.write_bytes(_key_pem(key) + certificate.public_bytes(serialization.Encoding.PEM))
        context.load_cert_chain(chain)
    return context
