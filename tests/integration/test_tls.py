"""TLS: HTTPS only, TLS >= 1.2 enforced (1.3 preferred), optional client certificates (mTLS)."""

from __future__ import annotations

import ssl
import warnings

import httpx
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import Server
from pki import certificate, write_pem

MODEL = {"name": "m", "source": "embedded", "context": 256, "slots": 1}


def trusting(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki["ca"]))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("seekstack test CA", ca_key, None, ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = certificate("127.0.0.1", ca_key, ca.subject, server_key, san_ip="127.0.0.1")
    client = certificate("app-1", ca_key, ca.subject, client_key)
    return {"ca": write_pem(d / "ca.pem", ca), "cert": write_pem(d / "server.pem", server), "key": write_pem(d / "server.key", key=server_key),
            "client_cert": write_pem(d / "client.pem", client), "client_key": write_pem(d / "client.key", key=client_key)}


def start(tmp_path, tls) -> Server:
    srv = Server(tmp_path, {"server": {"tls": tls}, "models": [MODEL]})
    srv.url = srv.url.replace("http://", "https://")
    return srv


def test_https_only_with_tls12_minimum(tmp_path, pki):
    srv = start(tmp_path, {"cert": str(pki["cert"]), "key": str(pki["key"])})
    srv.start_tls(verify=trusting(pki))
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.key, max_retries=0,
                               http_client=httpx.Client(verify=trusting(pki)))
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert reply.choices[0].message.content is not None
        client.close()  # an idle TLS keep-alive connection would hold the drain open until its timeout
        with httpx.Client(verify=trusting(pki)) as c:
            assert c.get(srv.url + "/healthz").extensions["network_stream"].get_extra_info("ssl_object").version() == "TLSv1.3"
        with pytest.raises(httpx.TransportError):  # plain HTTP on the same port is not served
            httpx.get(srv.url.replace("https://", "http://") + "/healthz", timeout=3)
        old = ssl.create_default_context(cafile=str(pki["ca"]))
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deliberately old: the server must refuse it
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/healthz", verify=old, timeout=3)
        tls12 = ssl.create_default_context(cafile=str(pki["ca"]))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert httpx.get(srv.url + "/healthz", verify=tls12).status_code == 200
        # the certificate's expiry is a metric, for the certificate-expiry alert
        from cryptography import x509

        not_after = x509.load_pem_x509_certificate(pki["cert"].read_bytes()).not_valid_after_utc.timestamp()
        from prometheus_client.parser import text_string_to_metric_families

        samples = {s.name: s.value for f in text_string_to_metric_families(srv.http.get("/metrics").text) for s in f.samples}
        assert samples["seekstack_tls_certificate_expiry_timestamp_seconds"] == not_after
        # a console session's cookie is Secure under TLS (and HttpOnly, SameSite=Strict as always)
        cookie = srv.http.post("/console/session").headers["set-cookie"]
        assert "seekstack_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
    finally:
        srv.http.close()  # idle TLS keep-alive connections would hold the drain open (asyncio waits
        srv.security.close()  # up to 30 s for each peer's close_notify): this test is not about that
        srv.stop()


def test_mutual_tls_requires_a_client_certificate(tmp_path, pki):
    srv = start(tmp_path, {"cert": str(pki["cert"]), "key": str(pki["key"]), "client_ca": str(pki["ca"])})
    with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
    with_cert.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    srv.start_tls(verify=with_cert)
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(srv.url + "/healthz", verify=trusting(pki), timeout=3).raise_for_status()
        ok = httpx.get(srv.url + "/v1/models", verify=with_cert, headers={"Authorization": f"Bearer {srv.key}"})
        assert ok.status_code == 200
    finally:
        srv.stop()


def test_bad_certificate_is_one_line(tmp_path, pki):
    from test_cli import assert_one_line_error, cli

    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {tmp_path}/s\nserver: {{tls: {{cert: {pki['key']}, key: {pki['key']}}}}}\n"
                      "models: [{name: m, source: embedded, context: 256, slots: 1}]\n")
    assert_one_line_error(cli("serve", "--config", str(config), "--port", "0", timeout=60), "TLS certificate")


def test_doctor_warns_about_a_certificate_that_expires_soon(tmp_path, pki):
    import json as _json

    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    from test_cli import cli

    key = _ec.generate_private_key(_ec.SECP256R1())
    soon = certificate("127.0.0.1", key, None, key, days=10)
    cert = write_pem(tmp_path / "soon.pem", soon)
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {tmp_path}/s\nserver: {{tls: {{cert: {cert}, key: {pki['key']}}}}}\n")
    result = cli("doctor", "--config", str(config), "--json")
    rows = {r["name"]: r for r in _json.loads(result.stdout)}
    assert rows["tls"]["status"] == "WARN" and "expires in 9 day" in rows["tls"]["detail"]
    assert rows["gpu"]["status"] == "OK" and rows["configuration"]["status"] == "OK"
    assert result.returncode == 1  # warnings, no failures
    healthy = tmp_path / "ok.yaml"
    healthy.write_text(f"state_dir: {tmp_path}/s2\nserver: {{tls: {{cert: {pki['cert']}, key: {pki['key']}}}}}\n")
    rows = {r["name"]: r for r in _json.loads(cli("doctor", "--config", str(healthy), "--json").stdout)}
    assert rows["tls"]["status"] == "OK" and "valid until" in rows["tls"]["detail"]
