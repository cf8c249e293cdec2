"""TLS material for the lab: a private CA and the API server's certificate, made with `cryptography`.

The server certificate names what kubeadm's ``apiserver.crt`` names, so that clients verify it however they reach the
API server: 127.0.0.1 and ``localhost`` from the host, and from pods ``kubernetes``, ``kubernetes.default``,
``kubernetes.default.svc``, ``kubernetes.default.svc.cluster.local``, the ``kubernetes`` Service's ClusterIP and the
node's address (``server_hosts``). The CA key stays in the state dir (0600) so that the lab, once it knows its
addresses, signs the certificate for them (``reissue_server_cert``); ``ca.crt`` never changes for a state dir.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KUBERNETES_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
DEFAULT_HOSTS = ("127.0.0.1", "localhost", *KUBERNETES_NAMES)


@dataclass(frozen=True)
class ServerTLS:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca_key_pem: bytes = b""


def server_hosts(*addresses: str) -> tuple[str, ...]:
    """The names and addresses the API server's certificate is for: the defaults and ``addresses`` (the
    ``kubernetes`` ClusterIP, the node's address), without repeats.

    >>> server_hosts("10.96.0.1", "127.0.0.1")[-1]
    '10.96.0.1'
    """
    return tuple(dict.fromkeys((*DEFAULT_HOSTS, *(a for a in addresses if a))))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kperflab")])


def make_server_tls(hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 365) -> ServerTLS:
    """A new CA and a server certificate signed by it, valid for ``hosts`` (IPs or DNS names).

    >>> tls = make_server_tls()
    >>> tls.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    True
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kperflab-lab-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_key_pem = ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cert_pem, key_pem = _server_cert(ca_cert, ca_key, hosts, days)
    return ServerTLS(ca_pem=ca_cert.public_bytes(pem), cert_pem=cert_pem, key_pem=key_pem, ca_key_pem=ca_key_pem)


def _server_cert(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...],
                 days: int) -> tuple[bytes, bytes]:
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kperflab-lab-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def reissue_server_cert(cert_path: str | Path, key_path: str | Path, hosts: tuple[str, ...], days: int = 365) -> bool:
    """Sign a new server certificate and key at ``cert_path``/``key_path`` for ``hosts`` with the ca.key beside them
    (kept by ``write_tls``), unless the present certificate already names them all. False when there is no CA key (a
    state dir from an older lab): the certificate stays as it is."""
    cert_path, key_path = Path(cert_path), Path(key_path)
    directory = cert_path.parent
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        return False
    try:
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(n.value) for n in names}
        if set(hosts) <= have and current.issuer == ca_cert.subject:
            return True
    except (OSError, ValueError, x509.ExtensionNotFound):
        pass
    cert_pem, key_pem = _server_cert(ca_cert, ca_key, hosts, days)
    tmp = key_path.with_name(key_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.replace(tmp, key_path)
    tmp = cert_path.with_name(cert_path.name + ".tmp")
    tmp.write_bytes(cert_pem)
    os.replace(tmp, cert_path)
    return True


def write_tls(tls: ServerTLS, directory: Path) -> tuple[Path, Path, Path]:
    """Write ca.crt, server.crt, server.key (0600) and ca.key (0600) into ``directory``; return the first three."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.crt", directory / "server.crt", directory / "server.key")
    private = {paths[2]}
    files = list(zip(paths, (tls.ca_pem, tls.cert_pem, tls.key_pem), strict=True))
    if tls.ca_key_pem:
        files.append((directory / "ca.key", tls.ca_key_pem))
        private.add(directory / "ca.key")
    for path, data in files:  # keys are 0600 from the moment they exist
        mode = 0o600 if path in private else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    return paths
