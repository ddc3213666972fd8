"""`pipeplug push` as users run it, against a real registry (Debian's docker-registry, distribution 2.8).

Each push is read back over the registry's HTTP API and checked against what PipeCD's
pkg/oci pull needs: an image index with per-platform manifests, artifactType, one layer of
the plugin media type whose digest and bytes are the file's. piped's own pull of a pushed
plugin is in tests/interop (test_pushed_example_against_piped).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from pipeplug.testing import free_port

from .registry_support import FaultyProxy
from .registry_support import Registry
from .registry_support import TokenServer

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PLUGIN = "application/vnd.pipecd.piped.plugin"
ARTIFACT = "application/vnd.pipecd.piped.plugin+type"
USERS = {"alice": "correct horse"}


def run_push(*args: str, env: dict[str, str] | None = None, home: Path) -> subprocess.CompletedProcess[str]:
    """``pipeplug push ARGS`` in a process whose docker config is ``home/.docker`` (never the machine's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPLUG_REGISTRY_") and k not in ("DOCKER_CONFIG", "SSL_CERT_FILE")}
    base.update(HOME=str(home), DOCKER_CONFIG=str(home / ".docker"))
    return subprocess.run([sys.executable, "-m", "pipeplug.cli", "push", *args], capture_output=True, text=True, timeout=120, env={**base, **(env or {})})


def login(user: str = "alice") -> dict[str, str]:
    return {"PIPEPLUG_REGISTRY_USERNAME": user, "PIPEPLUG_REGISTRY_PASSWORD": USERS[user]}


def plugin_file(directory: Path, name: str, size: int = 200_000) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(os.urandom(size))
    path.chmod(0o755)
    return path


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # progress lines may come before it
    assert "Traceback" not in proc.stderr
    return errors[0]


def read_back(registry: Registry, repository: str, tag: str) -> dict[str, tuple[dict[str, t.Any], bytes]]:
    """platform -> (manifest, layer bytes), checking every media type on the way as piped's pull would."""
    index, headers = registry.get_json(f"/v2/{repository}/manifests/{tag}", INDEX)
    assert headers["Content-Type"] == INDEX
    assert index["schemaVersion"] == 2 and index["mediaType"] == INDEX
    out = {}
    for entry in index["manifests"]:
        assert entry["mediaType"] == MANIFEST and entry["artifactType"] == ARTIFACT
        manifest, _ = registry.get_json(f"/v2/{repository}/manifests/{entry['digest']}", MANIFEST)
        assert manifest["mediaType"] == MANIFEST and manifest["artifactType"] == ARTIFACT
        assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        status, _, config = registry.get(f"/v2/{repository}/blobs/{manifest['config']['digest']}")
        assert (status, config) == (200, b"{}")
        [layer] = manifest["layers"]
        assert layer["mediaType"] == PLUGIN
        status, _, blob = registry.get(f"/v2/{repository}/blobs/{layer['digest']}")
        assert status == 200 and len(blob) == layer["size"]
        assert layer["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
        out[f"{entry['platform']['os']}/{entry['platform']['architecture']}"] = (manifest, blob)
    return out


def test_push_by_file_name_with_a_login_then_read_back(tmp_path: Path) -> None:
    built = plugin_file(tmp_path / "dist", "example_v0.1.0_linux_amd64")
    with Registry(tmp_path / "registry", users=USERS) as registry:
        proc = run_push("--insecure", registry.url("plugins/example", "v0.1.0"), str(built), env=login(), home=tmp_path)
        assert proc.returncode == 0, proc.stderr
        pushed = read_back(registry, "plugins/example", "v0.1.0")
    assert list(pushed) == ["linux/amd64"]
    manifest, blob = pushed["linux/amd64"]
    assert blob == built.read_bytes()
    assert manifest["layers"][0]["annotations"]["org.opencontainers.image.title"] == built.name
    url = f"oci://{registry.host}/plugins/example:v0.1.0"
    assert f"pushed {url} (linux/amd64)" in proc.stdout
    # no snippet beside the file: a minimal one, named from the file name, once
    assert proc.stdout.count("url: ") == 1
    assert f"    - name: example\n      port: 7001" in proc.stdout and f"      url: {url}\n" in proc.stdout


def test_two_platforms_over_tls_in_one_index_with_progress_and_build_snippet(tmp_path: Path) -> None:
    """Both argument forms, HTTPS with a private CA (SSL_CERT_FILE), a chunked upload, and the build's snippet reused."""
    amd64 = plugin_file(tmp_path / "dist", "example_v0.2.0_linux_amd64", size=2_500_000)
    arm64 = plugin_file(tmp_path / "arm-machine", "example", size=300_000)
    (tmp_path / "dist" / "example_v0.2.0_linux_amd64.piped.yaml").write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: Piped\nspec:\n  plugins:\n    - name: example\n      port: 7002\n"
        f"      url: file://{amd64}  # where it was built\n      deployTargets:\n        - name: local\n"
    )
    with Registry(tmp_path / "registry", tls=True) as registry:
        env = {"SSL_CERT_FILE": str(registry.ca_file), "PIPEPLUG_PUSH_CHUNK_SIZE": str(1024 * 1024)}
        proc = run_push(registry.url("example", "v0.2.0"), str(amd64), f"linux/arm64={arm64}", env=env, home=tmp_path)
        assert proc.returncode == 0, proc.stderr
        pushed = read_back(registry, "example", "v0.2.0")
    assert sorted(pushed) == ["linux/amd64", "linux/arm64"]
    assert pushed["linux/amd64"][1] == amd64.read_bytes()
    assert pushed["linux/arm64"][1] == arm64.read_bytes()
    titles = {p: m["layers"][0]["annotations"]["org.opencontainers.image.title"] for p, (m, _) in pushed.items()}
    assert titles == {"linux/amd64": amd64.name, "linux/arm64": "example_linux_arm64"}  # distinct: piped's puller writes all layers into one directory
    assert "linux/amd64: 2.1 MB of 2.5 MB" in proc.stderr  # progress per chunk for a file bigger than one
    url = f"oci://{registry.host}/example:v0.2.0"
    assert f"      url: {url}\n      deployTargets:" in proc.stdout  # build's snippet, url replaced, comment dropped
    assert "port: 7002" in proc.stdout and "file://" not in proc.stdout
    assert "@sha256:" in proc.stdout  # the pinned url


def test_a_second_push_uploads_no_blob_again(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_arm64")
    with Registry(tmp_path / "registry") as registry:
        first = run_push("--insecure", registry.url("example", "a"), str(built), home=tmp_path)
        second = run_push("--insecure", registry.url("example"), str(built), home=tmp_path)
        assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
        assert "already in the registry" not in first.stderr
        assert "linux/arm64: 0.2 MB already in the registry" in second.stderr
        assert list(read_back(registry, "example", "latest")) == ["linux/arm64"]  # no tag means latest, as piped reads it


def test_login_from_docker_config(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_amd64")
    with Registry(tmp_path / "registry", users=USERS) as registry:
        docker = tmp_path / ".docker"
        docker.mkdir()
        auth = base64.b64encode(b"alice:correct horse").decode()
        (docker / "config.json").write_text(json.dumps({"auths": {f"http://{registry.host}/": {"auth": auth}}}))
        proc = run_push("--insecure", registry.url("example", "v1"), str(built), home=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "linux/amd64" in read_back(registry, "example", "v1")


def test_login_from_a_credential_helper(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_amd64")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-pipeplugtest"
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\": \\"alice\\", \\"Secret\\": \\"correct horse\\"}"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    with Registry(tmp_path / "registry", users=USERS) as registry:
        (tmp_path / ".docker").mkdir()
        (tmp_path / ".docker" / "config.json").write_text(json.dumps({"credsStore": "pipeplugtest"}))
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = run_push("--insecure", registry.url("example", "v1"), str(built), env=env, home=tmp_path)
        assert proc.returncode == 0, proc.stderr
        missing = run_push("--insecure", registry.url("example", "v1"), str(built), home=tmp_path)
    assert "docker-credential-pipeplugtest" in one_error_line(missing) and "not on PATH" in missing.stderr


def test_bearer_token_auth_with_a_login_and_with_an_identity_token(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_amd64")
    with TokenServer(tmp_path / "token", users=USERS, identity_tokens={"refresh-me": "alice"}) as tokens, Registry(tmp_path / "registry", token=tokens) as registry:
        proc = run_push("--insecure", registry.url("team/example", "v1"), str(built), env=login(), home=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "basic:alice" in tokens.requests
        (tmp_path / ".docker").mkdir()
        (tmp_path / ".docker" / "config.json").write_text(json.dumps({"auths": {registry.host: {"identitytoken": "refresh-me"}}}))
        proc = run_push("--insecure", registry.url("team/example", "v2"), str(built), home=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "refresh:alice" in tokens.requests
        assert read_back(registry, "team/example", "v2")["linux/amd64"][1] == built.read_bytes()
        wrong = run_push("--insecure", registry.url("team/example", "v3"), str(built), env={**login(), "PIPEPLUG_REGISTRY_PASSWORD": "nope"}, home=tmp_path)
    line = one_error_line(wrong)
    assert "refused the credential" in line and "PIPEPLUG_REGISTRY_USERNAME" in line


def test_login_errors_are_one_line(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_amd64")
    with Registry(tmp_path / "registry", users=USERS) as registry:
        url = registry.url("example", "v1")
        wrong = run_push("--insecure", url, str(built), env={**login(), "PIPEPLUG_REGISTRY_PASSWORD": "wrong"}, home=tmp_path)
        missing = run_push("--insecure", url, str(built), home=tmp_path)
        half = run_push("--insecure", url, str(built), env={"PIPEPLUG_REGISTRY_USERNAME": "alice"}, home=tmp_path)
        status, _, _ = registry.get("/v2/example/manifests/v1", INDEX)
    assert status == 404  # nothing was tagged
    assert "refused the credential (401)" in one_error_line(wrong) and "$PIPEPLUG_REGISTRY_USERNAME" in wrong.stderr
    assert "needs a login and none was found" in one_error_line(missing) and "docker login" in missing.stderr
    assert "set both PIPEPLUG_REGISTRY_USERNAME and PIPEPLUG_REGISTRY_PASSWORD" in one_error_line(half)


def test_connection_errors_say_which(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_amd64")
    refused = run_push(f"oci://127.0.0.1:{free_port()}/example:v1", str(built), "--insecure", home=tmp_path)
    assert "connection refused" in one_error_line(refused)
    with Registry(tmp_path / "tls", tls=True) as registry:
        untrusted = run_push(registry.url("example"), str(built), home=tmp_path)
        plain_to_tls = run_push(registry.url("example"), str(built), "--insecure", home=tmp_path)
    assert "certificate is not trusted" in one_error_line(untrusted) and "SSL_CERT_FILE" in untrusted.stderr
    assert "drop --insecure" in one_error_line(plain_to_tls)
    with Registry(tmp_path / "plain") as registry:
        tls_to_plain = run_push(registry.url("example"), str(built), home=tmp_path)
    assert "TLS with" in one_error_line(tls_to_plain) and "pass --insecure" in tls_to_plain.stderr


def test_transient_failures_are_retried_a_bounded_number_of_times(tmp_path: Path) -> None:
    built = plugin_file(tmp_path, "example_dev_linux_amd64", size=1_500_000)
    env = {"PIPEPLUG_PUSH_CHUNK_SIZE": str(1024 * 1024)}
    with Registry(tmp_path / "registry") as registry:
        with FaultyProxy(registry, method="PATCH", times=1) as proxy:
            recovered = run_push("--insecure", proxy.url("example", "v1"), str(built), env=env, home=tmp_path)
            assert proxy.failed == 1
        assert recovered.returncode == 0, recovered.stderr
        assert "uploading linux/amd64: PATCH" in recovered.stderr and "HTTP 503" in recovered.stderr and "trying again" in recovered.stderr
        assert read_back(registry, "example", "v1")["linux/amd64"][1] == built.read_bytes()
        with FaultyProxy(registry, method="PUT", times=100, status=502) as proxy:
            built.write_bytes(os.urandom(1000))  # a new blob, so the upload is not skipped
            given_up = run_push("--insecure", proxy.url("example", "v2"), str(built), env=env, home=tmp_path)
            assert proxy.failed == 3
    assert "uploading linux/amd64 failed 3 times; last: PUT" in one_error_line(given_up) and "HTTP 502" in given_up.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{dir}/plugin"], "cannot tell its platform; pass OS/ARCH="),
        (["{dir}/plugin.sha256_x"], "cannot tell its platform"),
        (["linux/x86_64={dir}/plugin"], "architecture 'x86_64' is not one piped runs on; piped spells it 'amd64'"),
        (["{dir}/missing_v1_linux_amd64"], "no such file"),
        (["linux/amd64={dir}/plugin", "{dir}/example_v1_linux_amd64"], "two files for linux/amd64"),
    ],
)
def test_bad_files_are_refused_before_any_network(tmp_path: Path, args: list[str], says: str) -> None:
    plugin_file(tmp_path, "plugin")
    plugin_file(tmp_path, "plugin.sha256_x")
    plugin_file(tmp_path, "example_v1_linux_amd64")
    # a port nothing listens on: the error must come from the arguments, not the network
    proc = run_push(f"oci://127.0.0.1:{free_port()}/example", *[a.format(dir=tmp_path) for a in args], home=tmp_path)
    assert says in one_error_line(proc)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://ghcr.io/me/plugin:v1", "expected oci://HOST[:PORT]/REPOSITORY[:TAG]"),
        ("oci://ghcr.io", "a host, then a repository path"),
        ("oci://ghcr.io/Me/Plugin", "repository 'Me/Plugin' must be lowercase"),
        ("oci://ghcr.io/me/plugin:v1@sha256:abc", "a push names a tag, not a digest"),
        ("oci://ghcr.io/me/plugin:-v1", "tag '-v1'"),
    ],
)
def test_bad_urls_name_the_expected_form(tmp_path: Path, url: str, says: str) -> None:
    built = plugin_file(tmp_path, "example_v1_linux_amd64")
    assert says in one_error_line(run_push(url, str(built), home=tmp_path))
