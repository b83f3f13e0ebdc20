"""
TLS through Twisted endpoints (the C{tls} extra): a L{JSONServerFactory} on
an C{ssl:} server endpoint with a certificate generated here, reached by
clients that verify it (a C{clientFromString} description and an endpoint
object built with C{optionsForClientTLS}) and refused by one that does not
trust it.  In process, loopback only, every wait bounded.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, maybeDeferred

import jsonservice
from jsonservice import JSONProtocol, JSONServerFactory
from jsonservice.demo import make_demo_service
from jsonservice.tap import Options, makeService

try:
    from tests.memory_helpers import when_lost
except ImportError:  # pragma: no cover - tests/ on sys.path (rootdir import mode)
    from memory_helpers import when_lost

# Not pytest.importorskip at module level: trial (make trial) must still
# collect this module when the tls extra is missing.
try:
    import OpenSSL  # noqa: F401
    import service_identity  # noqa: F401
    from cryptography import x509 as x509_mod

    _MISSING = ""
except ImportError as missing:  # pragma: no cover - the tls extra is installed in CI
    x509_mod = None  # type: ignore[assignment]
    _MISSING = f"{missing.name} is not installed: pip install 'jsonservice[tls]'"

STEP = 5.0

#: Twisted hands pyOpenSSL its own certificate objects, which pyOpenSSL >= 24.3 deprecates.
pytestmark = [
    pytest.mark.skipif(bool(_MISSING), reason=_MISSING),
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]


def make_certificate(directory: Path, names: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and C{names}: (key.pem, cert.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "key.pem"
    cert_path = directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def escape(path: Path) -> str:
    """A path as an endpoint description argument."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


def within(d: Deferred[Any], reactor: Any, seconds: float = STEP) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


class TLSServer:
    """A JSONServerFactory on an ssl: endpoint on 127.0.0.1, and cleanup."""

    def __init__(self, reactor: Any, key: Path, cert: Path) -> None:
        self.reactor = reactor
        self.description = f"ssl:0:privateKey={escape(key)}:certKey={escape(cert)}:interface=127.0.0.1"
        self.factory = JSONServerFactory(make_demo_service())
        self.port: Any = None
        self.clients: list[tuple[JSONProtocol, Deferred[None]]] = []

    async def start(self) -> int:
        from twisted.internet.endpoints import serverFromString

        endpoint = serverFromString(self.reactor, self.description)
        self.port = await within(endpoint.listen(self.factory), self.reactor)
        return int(self.port.getHost().port)

    async def connect(self, endpoint: Any) -> JSONProtocol:
        proto: JSONProtocol = await within(jsonservice.connect(self.reactor, endpoint), self.reactor)
        self.clients.append((proto, when_lost(proto)))
        return proto

    async def close(self) -> None:
        for proto, lost in self.clients:
            if not lost.called:
                # A registered producer holds a TLS transport open (ITransport.loseConnection).
                proto.transport.unregisterProducer()  # type: ignore[union-attr]
                proto.transport.loseConnection()  # type: ignore[union-attr]
            await within(lost, self.reactor)
        if self.port is not None:
            await within(maybeDeferred(self.port.stopListening), self.reactor)
        await within(self.factory.drain(grace=0), self.reactor)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(key.pem, cert.pem, a CA directory holding only cert.pem)."""
    key, cert = make_certificate(tmp_path / "server")
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "cert.pem").write_bytes(cert.read_bytes())
    return key, cert, ca_dir


@pytest_twisted.ensureDeferred
async def test_tls_description_client_verifies_the_certificate(
    reactor: Any, certificate: tuple[Path, Path, Path]
) -> None:
    key, cert, ca_dir = certificate
    server = TLSServer(reactor, key, cert)
    port = await server.start()
    try:
        proto = await server.connect(f"ssl:127.0.0.1:{port}:caCertsDir={escape(ca_dir)}:hostname=localhost")
        assert await within(proto.call("echo", {"secret": "over TLS"}), reactor) == {"secret": "over TLS"}
        assert await within(proto.call("ping"), reactor) == "pong"
        # The server side really is TLS: its transport negotiated a protocol.
        [server_proto] = list(server.factory.connections)
        assert server_proto.transport.getHandle().get_protocol_version_name().startswith("TLS")  # type: ignore[union-attr]
    finally:
        await server.close()


@pytest_twisted.ensureDeferred
async def test_tls_endpoint_object_with_trust_root_and_ip_hostname(
    reactor: Any, certificate: tuple[Path, Path, Path]
) -> None:
    from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    key, cert, _ = certificate
    server = TLSServer(reactor, key, cert)
    port = await server.start()
    try:
        trust = Certificate.loadPEM(cert.read_bytes())
        for hostname in ("127.0.0.1", "localhost"):
            endpoint = wrapClientTLS(
                optionsForClientTLS(hostname, trustRoot=trust),
                TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            )
            proto = await server.connect(endpoint)
            assert await within(proto.call("echo", hostname), reactor) == hostname
    finally:
        await server.close()


async def _call_fails(server: TLSServer, reactor: Any, endpoint: Any) -> BaseException:
    """Connect and call; return the failure (the call must not succeed)."""
    try:
        proto = await server.connect(endpoint)
        result = await within(proto.call("echo", "leak"), reactor)
    except Exception as exc:
        return exc
    raise AssertionError(f"an untrusting client got an answer: {result!r}")


@pytest_twisted.ensureDeferred
async def test_clients_that_do_not_trust_the_certificate_fail(
    reactor: Any, certificate: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from twisted.internet.defer import TimeoutError as DeferredTimeout
    from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    key, cert, _ = certificate
    server = TLSServer(reactor, key, cert)
    port = await server.start()
    # Another self-signed certificate: trusted by the client, but not the server's.
    _, other_cert = make_certificate(tmp_path / "other")
    other_ca = tmp_path / "other-ca"
    other_ca.mkdir()
    (other_ca / "cert.pem").write_bytes(other_cert.read_bytes())
    try:
        failures = [
            # The platform's trust store: our self-signed certificate is unknown.
            await _call_fails(
                server,
                reactor,
                wrapClientTLS(
                    optionsForClientTLS("localhost"), TCP4ClientEndpoint(reactor, "127.0.0.1", port)
                ),
            ),
            # A description trusting another CA.
            await _call_fails(
                server, reactor, f"ssl:127.0.0.1:{port}:caCertsDir={escape(other_ca)}:hostname=localhost"
            ),
            # The right certificate, the wrong name.
            await _call_fails(
                server,
                reactor,
                wrapClientTLS(
                    optionsForClientTLS("example.com", trustRoot=Certificate.loadPEM(cert.read_bytes())),
                    TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                ),
            ),
        ]
        for failure in failures:
            # A refused handshake closes the connection: not a mere timeout.
            assert not isinstance(failure, DeferredTimeout), failure
    finally:
        await server.close()


@pytest_twisted.ensureDeferred
async def test_drain_closes_idle_tls_connections_promptly(
    reactor: Any, certificate: tuple[Path, Path, Path]
) -> None:
    key, cert, ca_dir = certificate
    server = TLSServer(reactor, key, cert)
    port = await server.start()
    try:
        proto = await server.connect(f"ssl:127.0.0.1:{port}:caCertsDir={escape(ca_dir)}:hostname=localhost")
        assert await within(proto.call("ping"), reactor) == "pong"
        # Nothing is running: the drain closes at once, not after the grace (10 s).
        started = reactor.seconds()
        await within(server.factory.drain(grace=10), reactor, 3)
        await within(server.clients[0][1], reactor, 3)
        assert reactor.seconds() - started < 3
    finally:
        await server.close()


def test_twistd_options_accept_an_ssl_listener(certificate: tuple[Path, Path, Path]) -> None:
    key, cert, _ = certificate
    description = f"ssl:0:privateKey={escape(key)}:certKey={escape(cert)}:interface=127.0.0.1"
    options = Options()
    options.parseOptions(["--listen", description])
    assert options["endpoints"] == [description]
    top = makeService(options)
    assert len(list(top)) == 2


@pytest_twisted.ensureDeferred
async def test_cli_tls_verifies_and_says_so_in_one_line(
    reactor: Any, certificate: tuple[Path, Path, Path]
) -> None:
    """tls: verifies the server; a certificate that fails is one line and exit 2, no traceback."""
    import sys

    from twisted.internet.utils import getProcessOutputAndValue

    key, cert, ca_dir = certificate
    server = TLSServer(reactor, key, cert)
    port = await server.start()
    try:
        cli = [sys.executable, "-m", "jsonservice", "call", "--timeout", "5", "--connect"]
        trusted = f"tls:localhost:{port}:trustRoots={escape(ca_dir)}"
        out, err, code = await within(getProcessOutputAndValue(cli[0], [*cli[1:], trusted, "ping"]), reactor)
        assert (out, code) == (b'"pong"\n', 0), err
        untrusted = f"tls:localhost:{port}"
        out, err, code = await within(
            getProcessOutputAndValue(cli[0], [*cli[1:], untrusted, "ping"]), reactor
        )
        assert code == 2
        assert err.count(b"\n") == 1, err
        assert b"certificate failed verification" in err
    finally:
        await server.close()


def _without_pyopenssl(tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run C{argv} where importing OpenSSL fails, as without the tls extra."""
    blocker = tmp_path / "OpenSSL"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named OpenSSL')\n")
    return subprocess.run(
        argv,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_without_pyopenssl_is_one_line(tmp_path: Path) -> None:
    """Without the tls extra, an ssl:/tls: endpoint is a one-line error (exit 2), not a traceback."""
    cli = [sys.executable, "-m", "jsonservice", "call", "--timeout", "2"]
    done = _without_pyopenssl(tmp_path, [*cli, "--connect", "ssl:127.0.0.1:1", "ping"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "jsonservice[tls]" in done.stderr


def test_twistd_ssl_listener_without_pyopenssl_is_a_usage_error(tmp_path: Path) -> None:
    """twistd with an ssl: listener and no tls extra: a one-line usage error, not a traceback."""
    twistd = str(Path(sys.executable).parent / "twistd")
    done = _without_pyopenssl(
        tmp_path, [twistd, "--pidfile=", "-n", "jsonservice", "--listen", "ssl:0:privateKey=k.pem"]
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert "jsonservice[tls]" in done.stdout + done.stderr
