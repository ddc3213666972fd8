"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8), one per use.

Started from a generated config (filesystem storage in a temp dir, 127.0.0.1 on a free
port, optional htpasswd users and TLS with a test-made CA), waited for until ``/v2/``
answers, stopped by its PID. Nothing depends on the Debian package's own service.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeplug.testing import free_port

REGISTRY_BIN = os.environ.get("PIPEPLUG_TEST_REGISTRY") or shutil.which("docker-registry") or "/usr/bin/docker-registry"
START_TIMEOUT = 20.0
INSTALL_HINT = "apt-get install docker-registry (Debian's package of distribution 2.8); .ci/run installs it"


def registry_available() -> bool:
    return os.access(REGISTRY_BIN, os.X_OK)


def require_registry() -> None:
    if not registry_available():
        pytest.skip(f"no docker-registry binary at {REGISTRY_BIN}: {INSTALL_HINT}")


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pipeplug test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
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
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """docker's token protocol for the registry's ``auth: token``: trades a login (Basic) or an
    identity token (OAuth2 refresh_token grant) for an ES256 JWT the registry verifies against
    the certificate in ``x5c``. Serves on 127.0.0.1 from a thread; use as a context manager."""

    SERVICE = "pipeplug-test-registry"
    ISSUER = "pipeplug-test-issuer"

    def __init__(self, directory: Path, *, users: dict[str, str], identity_tokens: dict[str, str] | None = None) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = users
        self.identity_tokens = identity_tokens or {}  # token -> user
        self.requests: list[str] = []  # "basic:<user>", "refresh:<user>", "refused" (what the server saw)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pipeplug test token signer")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_file = directory / "token-signer.pem"
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def token(self, user: str, scope: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for item in filter(None, scope.split(" ")):
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {"iss": self.ISSUER, "sub": user, "aud": self.SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def __enter__(self) -> TokenServer:
        import http.server
        import threading
        import urllib.parse

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, user: str | None, scope: str) -> None:
                if user is None:
                    server.requests.append("refused")
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": server.token(user, scope), "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.users.get(name) == password:
                        user = name
                        server.requests.append(f"basic:{name}")
                self._answer(user, query.get("scope", [""])[0])

            def do_POST(self) -> None:
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
                user = None
                if form.get("grant_type") == ["refresh_token"]:
                    user = server.identity_tokens.get(form.get("refresh_token", [""])[0])
                    if user:
                        server.requests.append(f"refresh:{user}")
                self._answer(user, form.get("scope", [""])[0])

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class Registry:
    """One ``docker-registry serve`` process; use as a context manager.

    ``users`` turns on htpasswd (Basic) logins; ``token`` turns on token auth (Bearer)
    against that :class:`TokenServer`; ``tls`` serves HTTPS with a test-made CA (``ca_file``).
    """

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None, token: TokenServer | None = None, tls: bool = False) -> None:
        self.directory = directory
        self.users = users or {}
        self.token = token
        self.tls = tls
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, repository: str, tag: str | None = None) -> str:
        return f"oci://{self.host}/{repository}" + (f":{tag}" if tag else "")

    def __enter__(self) -> Registry:
        require_registry()
        self.directory.mkdir(parents=True, exist_ok=True)
        config: dict[str, t.Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "pipeplug-test"},
        }
        if self.tls:
            self.ca_file, cert, key = make_ca_and_cert(self.directory)
            config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        if self.users:
            import bcrypt

            htpasswd = self.directory / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for u, p in self.users.items()))
            config["auth"] = {"htpasswd": {"realm": "pipeplug-test", "path": str(htpasswd)}}
        if self.token:
            config["auth"] = {
                "token": {"realm": self.token.realm, "service": TokenServer.SERVICE, "issuer": TokenServer.ISSUER, "rootcertbundle": str(self.token.cert_file)}
            }
        config_file = self.directory / "config.yml"
        config_file.write_text(json.dumps(config))  # YAML is a superset of JSON
        self._log = open(self.directory / "registry.log", "wb")
        self._proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config_file)], stdout=self._log, stderr=subprocess.STDOUT, cwd=self.directory)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self._proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = self.get("/v2/", auth=False)
            except OSError:
                time.sleep(0.05)  # not listening yet: poll the port, bounded by the deadline
                continue
            if status in (200, 401):
                return
        raise RuntimeError(f"docker-registry did not answer /v2/ within {START_TIMEOUT}s:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def log(self) -> str:
        return (self.directory / "registry.log").read_text(errors="replace")

    def get(self, path: str, accept: str | None = None, *, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
        """GET from the registry's HTTP API as a client that trusts the test CA and knows the first user."""
        request = urllib.request.Request(f"{self.scheme}://{self.host}{path}")
        if accept:
            request.add_header("Accept", accept)
        if auth and self.token and path != "/v2/":
            repository = path[len("/v2/") :].rsplit("/", 2)[0]
            request.add_header("Authorization", "Bearer " + self.token.token("reader", f"repository:{repository}:pull"))
        elif auth and self.users:
            user, password = next(iter(self.users.items()))
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get_json(self, path: str, accept: str) -> tuple[dict[str, t.Any], dict[str, str]]:
        status, headers, body = self.get(path, accept)
        assert status == 200, f"GET {path}: HTTP {status} {body[:300]!r}"
        return json.loads(body), headers


class FaultyProxy:
    """An HTTP reverse proxy on 127.0.0.1 in front of a plain-HTTP registry that answers
    ``status`` instead of forwarding the first ``times`` requests of ``method``; the rest
    pass through (Host kept, so the registry's upload locations point back at the proxy)."""

    def __init__(self, registry: Registry, *, method: str, times: int, status: int = 503) -> None:
        self.registry = registry
        self.method = method
        self.remaining = times
        self.status = status
        self.failed = 0

    def __enter__(self) -> FaultyProxy:
        import http.client
        import http.server
        import threading

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.command == proxy.method and proxy.remaining > 0:
                    proxy.remaining -= 1
                    proxy.failed += 1
                    self.send_response(proxy.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(proxy.registry.host, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST", "PATCH") else None, headers=dict(self.headers))
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)
        self._thread.start()
        return self

    def url(self, repository: str, tag: str) -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
