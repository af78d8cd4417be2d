"""The engines' TLS certificate: self-signed, made once per host, pinned by the router.

A rented GPU is reached across the internet, so prompts, completions and the engine key must not
travel to its engines in clear. No certificate authority is involved: an engine has no name a CA
could vouch for (often just an IP and a port the cloud mapped). The agent makes a key pair once,
keeps it in its TLS directory (the private key 0600, never sent anywhere) and tells the router the
SHA-256 of the certificate (Register/Heartbeat `engine_tls_sha256`) over the host API, where the
host token authenticates it. The router then accepts exactly that certificate from this host's
engines (aiohttp's Fingerprint), and the agent's own calls to its engines trust exactly it too.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

CERT_FILE = "engine-cert.pem"
KEY_FILE = "engine-key.pem"


class EngineTlsError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class EngineCert:
    cert_path: Path
    key_path: Path
    sha256: str  # hex of the SHA-256 of the certificate's DER encoding: what the router pins

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Trusts this certificate and nothing else; the name is not checked (an engine has none)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=self.cert_path.read_text())
        return ctx


def ensure_engine_cert(directory: Path) -> EngineCert:
    """The host's engine certificate, made on first use and the same on every later start (so the
    router's pin survives agent restarts)."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    try:
        if not (cert_path.exists() and key_path.exists()):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            _make(cert_path, key_path)
        pem = cert_path.read_bytes()
    except OSError as exc:
        raise EngineTlsError(f"cannot make or read the engines' TLS certificate in {directory}: {exc}; "
                             "set tls_dir in the agent's config to a directory it may write") from None
    return EngineCert(cert_path, key_path, hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest())


def _make(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenmill engine")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            # Pinned, not trusted through a chain: expiry would only take a working host down.
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # The key file is 0600 from its first byte; both files appear whole or not at all.
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)
