"""`live3dpe serve` / `live3dpe ui` argument handling, and HTTPS for the WebRTC page."""
from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from live3dpe.cli import build_parser, main
from live3dpe.webapp.commands import is_loopback
from live3dpe.webapp.server import WebRTCServer, running_app, ssl_context

pytestmark = pytest.mark.timeout(60)


def test_serve_and_ui_defaults_bind_loopback():
    parser = build_parser()
    serve = parser.parse_args(["serve"])
    ui = parser.parse_args(["ui"])
    assert serve.host == ui.host == "127.0.0.1"
    assert serve.max_peers == 2 and serve.cert is None and serve.key is None
    assert ui.max_upload_mb == 10.0
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--cert", "only.pem"], "--cert and --key must be given together"),
        (["serve", "--cert", "missing.pem", "--key", "missing.key"], "TLS file not found"),
        (["ui", "--max-upload-mb", "0"], "--max-upload-mb"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(argv, needle, capsys):
    assert main(argv) == 1
    assert needle in capsys.readouterr().err


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode, reason="needs openssl")
def test_page_is_served_over_https(tmp_path):
    cert, key = _self_signed(tmp_path)
    ctx = ssl_context(str(cert), str(key))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False

    async def scenario():
        server = WebRTCServer(lambda: [], max_peers=1)
        async with running_app(server.app, ssl_context=ctx) as url, aiohttp.ClientSession() as http:
            assert url.startswith("https://")
            async with http.get(url + "/", ssl=client_ctx) as r:
                assert r.status == 200 and "live3dpe" in await r.text()

    asyncio.run(scenario())
