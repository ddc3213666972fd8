"""A small client for OCI registries: exactly what publishing a plugin needs.

piped pulls plugins with PipeCD's ``pkg/oci`` (an image index of per-platform manifests,
each with one layer holding the file). Pushing that takes four registry calls (blob
exists?, blob upload, manifest put, auth), so this module speaks the distribution API
itself over the standard library's ``http.client`` instead of pulling in a client that
does not build image indexes (see the commit that added it).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
import typing as t
import urllib.parse
from dataclasses import dataclass

#: media types and artifact type PipeCD's pkg/oci pushes and piped pulls
MEDIA_TYPE_PLUGIN = "application/vnd.pipecd.piped.plugin"
ARTIFACT_TYPE_PLUGIN = "application/vnd.pipecd.piped.plugin+type"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
#: an OCI 1.1 artifact has no config: the "empty" descriptor stands in for it
MEDIA_TYPE_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"

USERNAME_ENV = "PIPEPLUG_REGISTRY_USERNAME"
PASSWORD_ENV = "PIPEPLUG_REGISTRY_PASSWORD"
CHUNK_ENV = "PIPEPLUG_PUSH_CHUNK_SIZE"
DEFAULT_CHUNK = 16 * 1024 * 1024
ATTEMPTS = 3  # per blob or manifest, on transient failures only
TIMEOUT = 60.0  # seconds per socket operation
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_T = t.TypeVar("_T")

# distribution's grammar (reference/regexp.go), written out
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?")
URL_FORM = "oci://HOST[:PORT]/REPOSITORY[:TAG]"


class RegistryError(Exception):
    """Pushing cannot go on; the message is one line saying why and what to do."""


class _Transient(RegistryError):
    """A failure worth another attempt (connection reset, 5xx, 429)."""


@dataclass(frozen=True)
class Reference:
    """Where an artifact goes: ``oci://host/repository:tag``, the form piped's config takes."""

    host: str
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repository}:{self.tag}"


def parse_reference(url: str) -> Reference:
    """Read ``oci://HOST[:PORT]/REPO[:TAG]`` as PipeCD's pkg/oci does (tag ``latest`` when none)."""
    scheme, sep, rest = url.partition("://")
    if scheme != "oci" or not sep:
        raise RegistryError(f"URL {url!r}: expected {URL_FORM}, e.g. oci://ghcr.io/me/my-plugin:v0.1.0")
    host, slash, path = rest.partition("/")
    if not _HOST.fullmatch(host) or not slash or not path:
        raise RegistryError(f"URL {url!r}: expected {URL_FORM} (a host, then a repository path)")
    if "@" in path:
        raise RegistryError(f"URL {url!r}: a push names a tag, not a digest; drop the @sha256:… part")
    repository, _, tag = path.partition(":")
    tag = tag or "latest"
    if not _REPOSITORY.fullmatch(repository):
        raise RegistryError(f"URL {url!r}: repository {repository!r} must be lowercase letters, digits and . _ - separated by /")
    if not _TAG.fullmatch(tag):
        raise RegistryError(f"URL {url!r}: tag {tag!r} must be letters, digits, _ . - (at most 128, not starting with . or -)")
    return Reference(host, repository, tag)


@dataclass(frozen=True)
class Credential:
    """A username and password, or an identity token (``docker login`` with an OAuth registry)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    source: str = ""  # said in errors: where the credential came from

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, source={self.source!r})"


def find_credential(host: str, environ: t.Mapping[str, str] | None = None) -> Credential | None:
    """The credential for ``host``: the environment first, then docker's config file."""
    env = os.environ if environ is None else environ
    username, password = env.get(USERNAME_ENV, ""), env.get(PASSWORD_ENV, "")
    if username or password:
        if not (username and password):
            raise RegistryError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither")
        return Credential(username, password, source=f"${USERNAME_ENV}")
    config_dir = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    path = os.path.join(config_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: cannot read docker's config: {exc}") from None
    if not isinstance(config, dict):
        raise RegistryError(f"{path}: expected a JSON object")
    return _from_docker_config(config, host, path, env)


def _registry_key(key: str) -> str:
    """``https://index.docker.io/v1/`` and ``docker.io`` name the same registry; so do ``http://h/`` and ``h``."""
    key = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return "docker.io" if key in ("index.docker.io", "registry-1.docker.io") else key


def _from_docker_config(config: dict[str, t.Any], host: str, path: str, env: t.Mapping[str, str]) -> Credential | None:
    wanted = _registry_key(host)
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        return _from_helper(helper, host, path, env)
    for key, entry in (config.get("auths") or {}).items():
        if _registry_key(key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credential(identity_token=entry["identitytoken"], source=path)
        if entry.get("auth"):
            try:
                username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                raise RegistryError(f"{path}: auths[{key!r}].auth is not base64 of user:password; run docker login {host} again") from None
            return Credential(username, password, source=path)
        if entry.get("username") and entry.get("password"):
            return Credential(entry["username"], entry["password"], source=path)
    return None


def _from_helper(helper: str, host: str, path: str, env: t.Mapping[str, str]) -> Credential | None:
    """Ask ``docker-credential-<helper>``, as docker does, for the credential of ``host``."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, "get"], input=host, capture_output=True, text=True, timeout=30, env=dict(env))
    except FileNotFoundError:
        raise RegistryError(f"{path} names the credential helper {program!r}, which is not on PATH; install it, or set {USERNAME_ENV} and {PASSWORD_ENV}") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"the credential helper {program} did not answer within 30s") from None
    if proc.returncode != 0:
        if "credentials not found" in proc.stdout + proc.stderr:
            return None
        raise RegistryError(f"the credential helper {program} failed: {(proc.stderr or proc.stdout).strip()}")
    try:
        answer = json.loads(proc.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"the credential helper {program} answered something other than {{Username, Secret}}") from None
    if username == "<token>":
        return Credential(identity_token=secret, source=program)
    return Credential(username, secret, source=program)


@dataclass
class _Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Registry:
    """One repository on one registry, with authentication done as the registry asks for it.

    ``credential`` is looked up only when the registry answers 401, so anonymous
    registries never need one.
    """

    def __init__(
        self,
        ref: Reference,
        *,
        insecure: bool = False,
        credential: t.Callable[[], Credential | None] | None = None,
        progress: t.Callable[[str], None] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.ref = ref
        self.scheme = "http" if insecure else "https"
        self._find_credential = credential or (lambda: find_credential(ref.host))
        self._credential: Credential | None = None
        self._credential_looked_up = False
        self._say = progress or (lambda message: None)
        self._chunk = chunk_size or _chunk_size_from_env()
        self._authorization: str | None = None
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}

    # ---- the distribution API

    def ping(self) -> None:
        """Check the registry answers (and learn how it authenticates): ``GET /v2/``."""
        self._request("GET", "/v2/", expect=(200,))

    def has_blob(self, digest: str) -> bool:
        response = self._retrying(f"looking up blob {digest[:19]}…", lambda: self._request("HEAD", f"{self._repo_path}/blobs/{digest}", expect=(200, 307, 404)))
        return response.status != 404

    def push_blob(self, path: str, digest: str, size: int, label: str) -> None:
        """Upload a file as a blob unless the registry has it; in chunks, with progress for big files."""
        if self.has_blob(digest):
            self._say(f"{label}: {_mb(size)} already in the registry")
            return
        self._retrying(f"uploading {label}", lambda: self._upload(path, digest, size, label))

    def push_bytes(self, data: bytes, label: str) -> str:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            self._retrying(f"uploading {label}", lambda: self._upload_bytes(data, digest))
        return digest

    def push_manifest(self, body: bytes, media_type: str, reference: str) -> str:
        """PUT a manifest or index under ``reference`` (a tag or its digest); returns its digest."""
        digest = sha256_digest(body)
        headers = {"Content-Type": media_type}
        self._retrying(
            f"putting the {'index' if media_type == MEDIA_TYPE_INDEX else 'manifest'}",
            lambda: self._request("PUT", f"{self._repo_path}/manifests/{reference}", body, headers, expect=(200, 201)),
        )
        return digest

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # ---- uploads

    def _upload(self, path: str, digest: str, size: int, label: str) -> None:
        location = self._start_upload()
        sent = 0
        with open(path, "rb") as f:
            while chunk := f.read(self._chunk):
                headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{sent}-{sent + len(chunk) - 1}"}
                response = self._request("PATCH", location, chunk, headers, expect=(202,))
                location = self._location(response)
                sent += len(chunk)
                if size > self._chunk:
                    self._say(f"{label}: {_mb(sent)} of {_mb(size)}")
        self._request("PUT", _with_query(location, digest=digest), b"", expect=(201,))

    def _upload_bytes(self, data: bytes, digest: str) -> None:
        location = self._start_upload()
        headers = {"Content-Type": "application/octet-stream"}
        self._request("PUT", _with_query(location, digest=digest), data, headers, expect=(201,))

    def _start_upload(self) -> str:
        return self._location(self._request("POST", f"{self._repo_path}/blobs/uploads/", b"", expect=(202,)))

    def _location(self, response: _Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.ref.host}: the registry started an upload without a Location header")
        return location

    def _retrying(self, what: str, step: t.Callable[[], _T]) -> _T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return step()
            except _Transient as exc:
                if attempt == ATTEMPTS:
                    raise RegistryError(f"{what} failed {ATTEMPTS} times; last: {exc}") from None
                self._say(f"{what}: {exc}; trying again")
                self.close()
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    # ---- HTTP and auth

    def _credential_source(self) -> Credential | None:
        """Looked up once, and only when the registry asks for a login."""
        if not self._credential_looked_up:
            self._credential = self._find_credential()
            self._credential_looked_up = True
        return self._credential

    @property
    def _repo_path(self) -> str:
        return f"/v2/{self.ref.repository}"

    def _request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        expect: tuple[int, ...],
    ) -> _Response:
        target = url if "://" in url else f"{self.scheme}://{self.ref.host}{url}"
        response = self._send(method, target, body, headers or {})
        if response.status == 401:
            self._authenticate(response)
            response = self._send(method, target, body, headers or {})
            if response.status == 401:
                raise RegistryError(self._refused("refused the credential (401)"))
        if response.status in expect:
            return response
        if response.status == 403:
            raise RegistryError(self._refused(f"denied {method} {urllib.parse.urlsplit(target).path} (403): the credential may not push to {self.ref.repository}"))
        detail = _error_detail(response)
        if response.status in _TRANSIENT_STATUS:
            raise _Transient(f"{method} {urllib.parse.urlsplit(target).path}: HTTP {response.status}{detail}")
        if response.status == 400 and b"HTTP request to an HTTPS server" in response.body:
            raise RegistryError(f"{self.ref.host} serves HTTPS: drop --insecure")
        raise RegistryError(f"{self.ref.host}: {method} {urllib.parse.urlsplit(target).path} answered HTTP {response.status}{detail}")

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> _Response:
        parts = urllib.parse.urlsplit(url)
        connection = self._connection(parts.scheme, parts.netloc)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent_headers = {"User-Agent": "pipeplug", **headers}
        if self._authorization and parts.netloc == self.ref.host:
            sent_headers["Authorization"] = self._authorization
        if body is not None:
            sent_headers["Content-Length"] = str(len(body))
        try:
            connection.request(method, path, body=body, headers=sent_headers)
            response = connection.getresponse()
            data = response.read()
        except OSError as exc:
            connection.close()
            raise self._network_error(parts.netloc, exc) from None
        except http.client.HTTPException as exc:  # RemoteDisconnected and friends
            connection.close()
            raise _Transient(f"{parts.netloc}: connection lost ({type(exc).__name__})") from None
        return _Response(response.status, response.headers, data)

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        if key not in self._connections:
            if scheme == "https":
                self._connections[key] = http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=ssl.create_default_context())
            else:
                self._connections[key] = http.client.HTTPConnection(netloc, timeout=TIMEOUT)
        return self._connections[key]

    def _network_error(self, netloc: str, exc: OSError) -> RegistryError:
        host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
        if isinstance(exc, ssl.SSLCertVerificationError):
            return RegistryError(
                f"TLS with {netloc} failed: its certificate is not trusted ({exc.verify_message}); for a private CA set SSL_CERT_FILE to its certificate, for a plain-HTTP registry pass --insecure"
            )
        if isinstance(exc, ssl.SSLError):
            return RegistryError(f"TLS with {netloc} failed ({exc.reason or exc}): no TLS answer there; if the registry serves plain HTTP, pass --insecure")
        if isinstance(exc, socket.gaierror):
            return RegistryError(f"cannot reach the registry: the host name {host!r} does not resolve ({exc.strerror})")
        if isinstance(exc, ConnectionRefusedError):
            return RegistryError(f"cannot reach the registry at {netloc}: connection refused (is it running, and is the port right?)")
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return _Transient(f"{netloc}: {exc.strerror or exc or type(exc).__name__}")
        return RegistryError(f"cannot reach the registry at {netloc}: {exc.strerror or exc}")

    def _authenticate(self, response: _Response) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        credential = self._credential_source()
        if scheme.lower() == "basic":
            if credential is None or not credential.username:
                raise RegistryError(self._missing())
            token = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
            self._authorization = f"Basic {token}"
        elif scheme.lower() == "bearer":
            params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
            if "realm" not in params:
                raise RegistryError(f"{self.ref.host}: a Bearer challenge without a realm: {challenge!r}")
            self._authorization = f"Bearer {self._fetch_token(params, credential)}"
        else:
            raise RegistryError(f"{self.ref.host} asks for authentication pipeplug does not speak: {challenge!r}")

    def _fetch_token(self, params: dict[str, str], credential: Credential | None) -> str:
        """Trade the credential for a token at the realm the registry names (docker's token protocol)."""
        scope = f"repository:{self.ref.repository}:pull,push"
        realm = params["realm"]
        if credential is not None and credential.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credential.identity_token, "scope": scope, "client_id": "pipeplug"}
            if "service" in params:
                form["service"] = params["service"]
            body = urllib.parse.urlencode(form).encode()
            response = self._send("POST", realm, body, {"Content-Type": "application/x-www-form-urlencoded"})
        else:
            query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
            headers = {}
            if credential is not None and credential.username:
                basic = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
            response = self._send("GET", _with_query(realm, **query), None, headers)
        if response.status in (401, 403):
            raise RegistryError(self._missing() if credential is None else self._refused(f"refused the credential at its token service ({response.status})"))
        if response.status != 200:
            raise RegistryError(f"{self.ref.host}: the token service {realm} answered HTTP {response.status}{_error_detail(response)}")
        try:
            answer = json.loads(response.body)
            return str(answer.get("token") or answer["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"{self.ref.host}: the token service {realm} did not answer a token") from None

    def _missing(self) -> str:
        return f"{self.ref.host} needs a login and none was found: set {USERNAME_ENV} and {PASSWORD_ENV}, or run docker login {self.ref.host}"

    def _refused(self, what: str) -> str:
        credential = self._credential_source()
        if credential is None:
            return self._missing()
        return f"{self.ref.host} {what}; it came from {credential.source}: check the username and password or token"


def _chunk_size_from_env() -> int:
    raw = os.environ.get(CHUNK_ENV) or str(DEFAULT_CHUNK)
    if not raw.isdigit() or int(raw) < 1:
        raise RegistryError(f"{CHUNK_ENV}={raw!r}: expected a number of bytes, e.g. {DEFAULT_CHUNK}")
    return int(raw)


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def file_digest(path: str) -> tuple[str, int]:
    """The ``sha256:`` digest and size of a file, read in blocks."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            hasher.update(block)
            size += len(block)
    return f"sha256:{hasher.hexdigest()}", size


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def _error_detail(response: _Response) -> str:
    """The registry's own error message (``{"errors": [{"code", "message"}]}``), if it sent one."""
    try:
        errors = json.loads(response.body)["errors"]
        return " (" + "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors) + ")"
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
