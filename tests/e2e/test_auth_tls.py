"""Bearer auth (token from the environment, 401 + WWW-Authenticate, extended card) and h2 over TLS with ALPN."""

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.util import (
    MeshUp,
    curl,
    curl_json,
    free_ports,
    jsonrpc,
    run_cli,
    write_mesh,
)

TOKEN = "s3cret-token-for-tests"
ENV = {"ECHO_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("auth")
    (port,) = free_ports(1)
    config = write_mesh(directory, {"echo": {
        "module": "agents.echo", "port": port,
        "auth": {"bearer_token": "${ECHO_TOKEN}"},
        "card": {"extended_skills": [{"id": "echo-admin", "name": "Echo admin", "description": "only for callers with the token"}]},
    }})
    with MeshUp(config, env=ENV) as up:
        up.wait_ready()
        up.url, up.config = f"http://127.0.0.1:{port}", config
        yield up
        assert up.stop() == 0


def test_card_is_public_and_declares_the_scheme(secured):
    card = curl_json(secured.url + "/.well-known/agent-card.json")
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]
    assert card["capabilities"]["extendedAgentCard"] is True
    assert card["supportsAuthenticatedExtendedCard"] is True  # the 0.3 name
    assert "echo-admin" not in json.dumps(card)


@pytest.mark.parametrize("header, challenge", [
    (None, 'Bearer realm="echo"'),
    ("Authorization: Bearer wrong", 'Bearer realm="echo", error="invalid_token"'),
    ("Authorization: Basic dXNlcjpwYXNz", 'Bearer realm="echo"'),
])
@pytest.mark.parametrize("path, method", [("/", "message/send"), ("/message:send", None)])
def test_calls_without_the_token_get_401(secured, header, challenge, path, method):
    body = jsonrpc(method, {"message": {"role": "user", "messageId": "m", "kind": "message",
                                        "parts": [{"kind": "text", "text": "hi"}]}}) if method else "{}"
    args = ["-i", "--http2-prior-knowledge", secured.url + path, "-H", "Content-Type: application/json", "--data-binary", body]
    if header:
        args += ["-H", header]
    result = curl(*args)
    head, _, payload = result.stdout.partition("\n\n")  # text mode folds \r\n
    assert head.startswith("HTTP/2 401")
    assert f"www-authenticate: {challenge}" in head.lower().replace("bearer", "Bearer")
    assert "Unauthorized" in payload


def test_calls_with_the_token_work(secured):
    answer = curl_json(secured.url + "/", jsonrpc("message/send", {"message": {
        "role": "user", "messageId": "m1", "kind": "message", "parts": [{"kind": "text", "text": "authorised"}]}}),
        headers=[f"Authorization: Bearer {TOKEN}"])
    assert answer["result"]["artifacts"][0]["parts"][0]["text"] == "authorised"


def test_extended_card_only_with_the_token(secured):
    auth = [f"Authorization: Bearer {TOKEN}"]
    v03 = curl_json(secured.url + "/", jsonrpc("agent/getAuthenticatedExtendedCard"), headers=auth)["result"]
    assert "echo-admin" in [s["id"] for s in v03["skills"]]
    v10 = curl_json(secured.url + "/", jsonrpc("GetExtendedAgentCard"), headers=auth, version="1.0")["result"]
    assert "echo-admin" in [s["id"] for s in v10["skills"]]
    rest = curl_json(secured.url + "/extendedAgentCard", headers=auth, version="1.0")
    assert "echo-admin" in [s["id"] for s in rest["skills"]]
    refused = curl("-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge", secured.url + "/",
                   "-H", "Content-Type: application/json", "--data-binary", jsonrpc("GetExtendedAgentCard"))
    assert refused.stdout == "401"


def test_cli_uses_the_token_from_the_environment(secured):
    result = run_cli("send", "echo", "via the cli", "-c", str(secured.config), env=ENV)
    assert result.returncode == 0, result.stderr
    assert "artifact echo: via the cli" in result.stdout
    extended = run_cli("card", "echo", "--extended", "-c", str(secured.config), env=ENV)
    assert "skill echo-admin" in extended.stdout, extended.stderr


def test_cli_without_the_token_says_why(secured):
    result = run_cli("send", secured.url, "no token")
    assert result.returncode == 1
    assert "refused the call: it needs a valid bearer token (set MESH_TOKEN" in result.stderr


# -- TLS -------------------------------------------------------------------------------------------


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_h2_over_tls_with_alpn(tmp_path):
    self_signed(tmp_path)
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"echo": {
        "module": "agents.echo", "port": port, "host": "localhost",
        "tls": {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")},
    }})
    with MeshUp(config) as up:
        up.wait_ready()
        url = f"https://localhost:{port}"
        assert f"{url}" in up.output  # the table shows the https URL
        ca = ["--cacert", str(tmp_path / "cert.pem")]
        result = curl(*ca, "--http2", "-w", "\n%{http_version}", url + "/.well-known/agent-card.json")
        body, _, version = result.stdout.rpartition("\n")
        assert version == "2", result.stderr  # negotiated by ALPN
        card = json.loads(body)
        assert card["url"] == url and all(i["url"] == url for i in card["supportedInterfaces"])
        result = curl(*ca, "--http1.1", "-w", "\n%{http_version}", url + "/", "-H", "Content-Type: application/json",
                      "--data-binary", jsonrpc("message/send", {"message": {"role": "user", "messageId": "t", "kind": "message",
                                                                            "parts": [{"kind": "text", "text": "tls"}]}}))
        body, _, version = result.stdout.rpartition("\n")
        assert version == "1.1"
        assert json.loads(body)["result"]["artifacts"][0]["parts"][0]["text"] == "tls"
        assert up.stop() == 0
