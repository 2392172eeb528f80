"""Throwaway PostgreSQL and MariaDB servers for the Conveyor test suite.

Each server lives in its own temporary directory (``conveyor-test-*``, on /dev/shm
when that is a big enough tmpfs, see ``default_base_dir``) and listens
on a free TCP port on 127.0.0.1, so several pytest-xdist workers can each run
their own servers side by side.  Nothing here depends on pytest.

Process model
-------------
A server is not started directly: this very file is run as a small *supervisor*
(``python servers.py --supervise ...``) in its own session, and the supervisor
starts ``postgres``/``mariadbd`` in their own process group.  The supervisor

* forwards shutdown signals to the server (so ``stop()`` is a signal + wait),
* on SIGUSR1 SIGKILLs the whole server process group (``kill9()``),
* is a child subreaper, so processes orphaned by a kill -9 are reaped even when
  PID 1 does not reap zombies (it does not in some sandboxes/containers), and
* notices when its parent (the test process) dies without cleaning up, then
  kills the server and removes the temporary directory.

When the supervisor exits, every process of the server is gone.  On top of that,
``destroy()`` is called by the fixtures, and an ``atexit`` hook destroys whatever
is still alive when the test process exits normally.

Heavy imports (psycopg, PyMySQL, cryptography) are done lazily so that the
supervisor starts quickly.

Manual use (for debugging)::

    python tests/servers.py pg       # or: mariadb
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import itertools
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg
    import pymysql.connections

HOST = "127.0.0.1"
DEFAULT_USER = "conveyor"
DEFAULT_PASSWORD = "secret"
LIMITED_USER = "limited"
LIMITED_PASSWORD = "secret"
MIN_PG_VERSION = 15
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
TEMP_PREFIX = "conveyor-test-"
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL NAMEDATALEN - 1; MariaDB allows 64

_THIS_FILE = os.path.abspath(__file__)
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class ServerUnavailable(RuntimeError):
    """The server binaries are not installed (run ``scripts/install-servers``)."""


class ServerStartError(RuntimeError):
    """A server process failed to start; the message includes its log."""

    def __init__(self, message: str, *, address_in_use: bool = False) -> None:
        super().__init__(message)
        self.address_in_use = address_in_use


# --------------------------------------------------------------------------- utils


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1.

    Ports are picked at random *below* the kernel's ephemeral range, so the port
    is not handed out to some client socket while the server is stopped for a
    restart.  ``SystemRandom`` is used because pytest plugins may seed ``random``
    identically in every xdist worker.
    """
    low, high = 15000, 32768
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, ephemeral_low)
    rng = random.SystemRandom()
    if high - low >= 1000:
        for _ in range(100):
            port = rng.randrange(low, high)
            if _port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


_db_counter = itertools.count(1)


def unique_db_name(hint: str, prefix: str = "t_") -> str:
    """A database name derived from ``hint`` (e.g. a test name), unique in this process.

    Lower-case ``[a-z0-9_]`` only, starts with a letter, at most 63 characters.
    """
    base = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")
    suffix = f"_{next(_db_counter)}"
    base = (prefix + base)[: MAX_IDENTIFIER_LENGTH - len(suffix)].rstrip("_")
    return base + suffix


def _log_tail(path: Path, offset: int = 0, limit: int = 6000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return "<no log>"
    text = data.decode("utf-8", "replace")
    return text[-limit:] if len(text) > limit else text


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _run(argv: list[str], *, log: Path, user: str | None = None, cwd: Path | None = None) -> None:
    """Run a setup command, appending its output to ``log``; raise with the output on failure."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        pw = pwd.getpwnam(user)
        kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    offset = _file_size(log)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            check=False,
            **kwargs,
        )
    if proc.returncode != 0:
        raise ServerStartError(f"{argv[0]} failed with exit code {proc.returncode}:\n{_log_tail(log, offset)}")


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", name],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    try:  # another xdist worker may have won the race; either way it exists now
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerUnavailable(f"could not create system user {name!r}") from None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _is_root() -> bool:
    return os.geteuid() == 0


# ----------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TLSFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


@functools.cache
def tls_material() -> tuple[bytes, bytes, bytes]:
    """(ca_pem, server_cert_pem, server_key_pem), generated once per process.

    A self-signed CA and a server certificate for ``localhost``, 127.0.0.1 and ::1,
    with the extensions Python's strict X.509 verification (3.13+) insists on.
    ECDSA P-256 keys (generating RSA keys would take a noticeable fraction of a second).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=365)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conveyor Test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        ca_cert.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def write_tls_files(directory: Path) -> TLSFiles:
    """Write the (per-process, shared) CA, server certificate and key into ``directory``."""
    ca_pem, cert_pem, key_pem = tls_material()
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_file.write_bytes(ca_pem)
    files.cert_file.write_bytes(cert_pem)
    fd = os.open(files.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return files


def unrelated_ca(path: Path) -> Path:
    """A self-signed CA that did not sign the servers' certificates, for TLS failure tests."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else's CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# ---------------------------------------------------------------------- supervisor

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP)
_PR_SET_CHILD_SUBREAPER = 36


def _supervise(cfg: dict[str, Any]) -> int:
    """Main loop of the supervisor process (see the module docstring)."""
    watched = {signal.SIGCHLD, signal.SIGUSR1, *_FORWARDED}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    kwargs: dict[str, Any] = {}
    if cfg.get("user"):
        pw = pwd.getpwnam(cfg["user"])
        kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    child = subprocess.Popen(
        cfg["argv"],
        cwd=cfg["cwd"],
        stdin=subprocess.DEVNULL,
        process_group=0,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, set()),
        **kwargs,
    )
    server = child.pid
    server_status: int | None = None
    parent = int(cfg["parent"])
    orphaned_at: float | None = None

    def kill_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server, sig)

    while True:
        info = signal.sigtimedwait(watched, 0.5)
        if info is not None:
            if info.si_signo == signal.SIGUSR1:
                kill_group(signal.SIGKILL)
            elif info.si_signo != signal.SIGCHLD and server_status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server, info.si_signo)
        if orphaned_at is None and os.getppid() != parent:
            # The test process died without cleaning up: shut the server down.
            orphaned_at = time.monotonic()
            if server_status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server, int(cfg["orphan_signal"]))
        elif orphaned_at is not None and time.monotonic() - orphaned_at > 10:
            kill_group(signal.SIGKILL)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if orphaned_at is not None:
                    for path in cfg.get("cleanup_dirs", []):
                        shutil.rmtree(path, ignore_errors=True)
                if server_status is None:
                    return 1
                code = os.waitstatus_to_exitcode(server_status)
                return 128 - code if code < 0 else code
            if pid == 0:
                break
            if pid == server:
                server_status = status


# -------------------------------------------------------------------- common base


_LIVE: dict[int, _ManagedServer] = {}


def _destroy_all() -> None:
    for server in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            server.destroy()


atexit.register(_destroy_all)


@dataclass(kw_only=True, eq=False)
class _ManagedServer:
    """Process management shared by PostgresServer and MariaDBServer."""

    host: str = HOST
    port: int
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    root: Path  # temporary directory holding everything; removed by destroy()
    datadir: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    socket_dir: Path
    log_file: Path
    version: str = ""
    _run_as: str | None = field(default=None, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False)
    _extra_dirs: list[Path] = field(default_factory=list, repr=False)

    kind: ClassVar[str] = "server"
    _orphan_signal: ClassVar[int] = signal.SIGKILL

    # -- hooks ------------------------------------------------------------------
    def _server_argv(self) -> list[str]:
        raise NotImplementedError

    def _ping(self) -> bool:
        raise NotImplementedError

    def _stop_signal(self, mode: str) -> int | None:
        raise NotImplementedError

    def url(self, database: str = "", user: str | None = None, password: str | None = None, **params: str) -> str:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """(Re)start the server on the same port and data directory; wait until it accepts connections."""
        if self.is_running():
            return
        self._check_owner()
        offset = _file_size(self.log_file)
        cfg = {
            "argv": self._server_argv(),
            "user": self._run_as,
            "cwd": str(self.root),
            "parent": os.getpid(),
            "orphan_signal": int(self._orphan_signal),
            "cleanup_dirs": [str(path) for path in (self.root, *self._extra_dirs)],
        }
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", _THIS_FILE, "--supervise", json.dumps(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._ping():
                return
            rc = self._proc.poll()
            if rc is not None:
                self._proc = None
                log_text = _log_tail(self.log_file, offset)
                raise ServerStartError(
                    f"{self.kind} on port {self.port} exited with code {rc} during startup:\n{log_text}",
                    address_in_use="Address already in use" in log_text,
                )
            if time.monotonic() > deadline:
                self.kill9()
                raise ServerStartError(
                    f"{self.kind} on port {self.port} not ready after {timeout:.0f}s:\n"
                    + _log_tail(self.log_file, offset)
                )
            time.sleep(0.05)

    def ensure_running(self) -> None:
        """Start the server again if a test stopped or killed it."""
        if not self.is_running():
            self.start()

    def stop(self, mode: str = "fast", timeout: float = STOP_TIMEOUT) -> None:
        """Shut the server down and wait for all its processes to exit.

        PostgreSQL modes: ``smart``, ``fast``, ``immediate`` (as in ``pg_ctl stop -m``).
        MariaDB: ``smart``/``fast`` are a normal shutdown; ``immediate`` is ``kill9()``.
        """
        if self._proc is None:
            return
        sig = self._stop_signal(mode)
        if sig is None:
            self.kill9()
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
        self._proc = None

    def kill9(self) -> None:
        """SIGKILL every process of the server (a crash); ``start()`` brings it back."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGUSR1)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # should never happen; last resort
                pid = self._server_pid()
                if pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(10)

    def destroy(self) -> None:
        """Stop the server (immediately) and delete its temporary directory. Idempotent."""
        if os.getpid() != self._owner_pid:  # e.g. in a forked child: not ours to clean
            return
        try:
            self.stop("immediate")
        except Exception:
            self.kill9()
        self._after_processes_gone()
        shutil.rmtree(self.root, ignore_errors=True)
        for extra in self._extra_dirs:
            shutil.rmtree(extra, ignore_errors=True)
        _LIVE.pop(id(self), None)

    # -- helpers ----------------------------------------------------------------------
    def _after_processes_gone(self) -> None:
        pass

    @property
    def pid(self) -> int:
        """The running server's main process id (postmaster, mariadbd)."""
        pid = self._server_pid()
        if pid is None:
            raise ServerUnavailable(f"{type(self).__name__} is not running")
        return pid

    def _server_pid(self) -> int | None:
        return None

    def _check_owner(self) -> None:
        if os.getpid() != self._owner_pid:
            raise RuntimeError(f"{self.kind} belongs to process {self._owner_pid}")

    def _register(self) -> None:
        _LIVE[id(self)] = self

    def _launch(self) -> None:
        """First start: retry on another port if ours was taken meanwhile, then bootstrap."""
        self._register()
        try:
            for attempt in itertools.count():
                try:
                    self.start()
                    break
                except ServerStartError as exc:
                    if not exc.address_in_use or attempt >= 4:
                        raise
                    self.port = free_port()
            self._bootstrap()
        except BaseException:
            self.destroy()
            raise

    def _bootstrap(self) -> None:
        raise NotImplementedError

    def _url(self, scheme: str, database: str, user: str | None, password: str | None, params: dict[str, str]) -> str:
        u = quote(self.user if user is None else user, safe="")
        p = quote(self.password if password is None else password, safe="")
        query = f"?{urlencode(params)}" if params else ""
        return f"{scheme}://{u}:{p}@{self.host}:{self.port}/{quote(database, safe='')}{query}"


@functools.cache
def default_base_dir() -> Path | None:
    """Where server directories go when no ``base_dir`` is given.

    ``$CONVEYOR_TEST_TMPDIR`` if set; else ``/dev/shm`` if it is writable and has at
    least 2 GiB free (a tmpfs makes e.g. CREATE DATABASE ~10x faster than on ext4);
    else None, i.e. tempfile's default (``$TMPDIR`` or /tmp).
    """
    if os.environ.get("CONVEYOR_TEST_TMPDIR"):
        return Path(os.environ["CONVEYOR_TEST_TMPDIR"])
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        st = os.statvfs(shm)
        if os.access(shm, os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= 2 << 30:
            return shm
    return None


def _make_root(base_dir: Path | None, kind: str) -> Path:
    base_dir = base_dir if base_dir is not None else default_base_dir()
    if base_dir is not None:
        base_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-", dir=base_dir))


def _discard(server: _ManagedServer | None, root: Path, extra_dirs: list[Path]) -> None:
    """Clean up after a failed launch (before any server process was started)."""
    if server is not None:
        server.destroy()
    shutil.rmtree(root, ignore_errors=True)
    for path in extra_dirs:
        shutil.rmtree(path, ignore_errors=True)


def _socket_dir(root: Path, extra_dirs: list[Path]) -> Path:
    """``root/run``, unless that is too long for a unix socket path."""
    candidate = root / "run"
    if len(str(candidate)) + len("/.s.PGSQL.65535.lock") > _SOCKET_PATH_MAX:
        candidate = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir="/tmp"))
        extra_dirs.append(candidate)
    candidate.mkdir(exist_ok=True)
    return candidate


# ---------------------------------------------------------------------- PostgreSQL


def _pg_version(bindir: Path) -> tuple[int, str]:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\d+)(\S*)", out)
    if not m:
        return 0, out.strip()
    return int(m.group(1)), m.group(1) + m.group(2)


@functools.cache
def find_pg_bindir() -> tuple[Path, str]:
    """(bindir, version) of the PostgreSQL server binaries to use.

    ``$CONVEYOR_PG_BINDIR`` if set; else the directory of ``pg_ctl``/``initdb``/``postgres``
    found in PATH (symlinks resolved); else the highest ``/usr/lib/postgresql/N/bin``.
    The version must be >= 15.
    """
    candidates: list[Path] = []
    if os.environ.get("CONVEYOR_PG_BINDIR"):
        candidates.append(Path(os.environ["CONVEYOR_PG_BINDIR"]))
    for name in ("pg_ctl", "initdb", "postgres"):
        exe = shutil.which(name)
        if exe:
            candidates.append(Path(os.path.realpath(exe)).parent)

    def major(p: Path) -> int:
        return int(p.parent.name) if p.parent.name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    seen: list[str] = []
    for bindir in dict.fromkeys(candidates):
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            major_version, version = _pg_version(bindir)
            if major_version >= MIN_PG_VERSION:
                return bindir, version
            seen.append(f"{bindir} ({version})")
    raise ServerUnavailable(
        f"PostgreSQL >= {MIN_PG_VERSION} server binaries not found"
        + (f" (too old: {', '.join(seen)})" if seen else "")
        + "; run scripts/install-servers"
    )


_PG_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


@dataclass(kw_only=True, eq=False)
class PostgresServer(_ManagedServer):
    """A PostgreSQL server for tests.

    Users: ``conveyor``/``secret`` (LOGIN SUPERUSER REPLICATION) and ``limited``/``secret``
    (LOGIN only).  TCP connections need a password (scram-sha-256; TLS optional, with
    ``ca_file`` usable for ``sslmode=verify-full``); unix-socket connections in
    ``socket_dir`` are trusted (used internally as the bootstrap superuser ``postgres``).

    Note ``synchronous_commit=off``: ``kill9()`` may lose transactions committed in the
    last ~0.5s (as a real crash with that setting would).  A test that needs a commit
    to survive kill9 can ``SET synchronous_commit = on`` in that session.
    """

    bindir: Path
    kind: ClassVar[str] = "PostgreSQL"
    _orphan_signal: ClassVar[int] = signal.SIGQUIT  # immediate shutdown, frees shared memory

    @classmethod
    def launch(cls, base_dir: Path | None = None) -> PostgresServer:
        """initdb + start a new server in a fresh ``conveyor-test-pg-*`` dir (under ``base_dir``)."""
        bindir, version = find_pg_bindir()
        owner: pwd.struct_passwd | None = _ensure_system_user("postgres") if _is_root() else None
        root = _make_root(base_dir, "pg")
        extra: list[Path] = []
        server: PostgresServer | None = None
        try:
            tls = write_tls_files(root / "tls")
            server = cls(
                port=free_port(),
                root=root,
                datadir=root / "data",
                ca_file=tls.ca_file,
                cert_file=tls.cert_file,
                key_file=tls.key_file,
                socket_dir=_socket_dir(root, extra),
                log_file=root / "postgres.log",
                bindir=bindir,
                version=version,
                _run_as=owner.pw_name if owner else None,
                _extra_dirs=extra,
            )
            server._register()
            if owner is not None:
                for path in (root, *extra):
                    _chown_tree(path, owner.pw_uid, owner.pw_gid)
            server._initdb()
        except BaseException:
            _discard(server, root, extra)
            raise
        server._launch()
        return server

    def _initdb(self) -> None:
        base = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "--no-sync",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-instructions",
        ]
        try:
            _run([*base, "--locale=C.UTF-8"], log=self.log_file, user=self._run_as, cwd=self.root)
        except ServerStartError:
            shutil.rmtree(self.datadir, ignore_errors=True)
            _run([*base, "--no-locale"], log=self.log_file, user=self._run_as, cwd=self.root)
        (self.datadir / "pg_hba.conf").write_text(
            "# TYPE  DATABASE     USER  ADDRESS       METHOD\n"
            "local   all          all                 trust\n"
            "local   replication  all                 trust\n"
            "host    all          all   127.0.0.1/32  scram-sha-256\n"
            "host    replication  all   127.0.0.1/32  scram-sha-256\n"
        )
        settings = {
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "wal_level": "logical",
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "ssl": "on",
            "ssl_cert_file": f"'{self.cert_file}'",
            "ssl_key_file": f"'{self.key_file}'",
            # DSM segments as files in the data dir rather than /dev/shm, so that
            # nothing is left behind in /dev/shm after a kill -9.
            "dynamic_shared_memory_type": "mmap",
        }
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# --- Conveyor test server ---\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _server_argv(self) -> list[str]:
        return [str(self.bindir / "postgres"), "-D", str(self.datadir), "-c", f"port={self.port}"]

    def _stop_signal(self, mode: str) -> int | None:
        try:
            return _PG_STOP_SIGNALS[mode]
        except KeyError:
            raise ValueError(f"unknown stop mode {mode!r}") from None

    def _admin(self, database: str = "postgres") -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def _ping(self) -> bool:
        import psycopg

        try:
            with self._admin() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _bootstrap(self) -> None:
        with self._admin() as conn:
            conn.execute(f"CREATE ROLE {DEFAULT_USER} LOGIN SUPERUSER REPLICATION PASSWORD '{DEFAULT_PASSWORD}'")
            conn.execute(f"CREATE ROLE {LIMITED_USER} LOGIN PASSWORD '{LIMITED_PASSWORD}'")

    def _server_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _after_processes_gone(self) -> None:
        # After a kill -9, the postmaster's small SysV interlock segment is left
        # behind; its id is on line 7 of the stale postmaster.pid.
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            shmid = int(lines[6].split()[1])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).shmctl(shmid, 0, None)  # IPC_RMID

    # -- client side --------------------------------------------------------------
    def url(
        self, database: str = "postgres", user: str | None = None, password: str | None = None, **params: str
    ) -> str:
        """``postgresql://user:pass@127.0.0.1:port/database[?params]`` (defaults: conveyor/secret)."""
        return self._url("postgresql", database, user, password, params)

    def connect(
        self,
        database: str = "postgres",
        autocommit: bool = True,
        *,
        user: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> psycopg.Connection[Any]:
        """psycopg connection over TCP (extra kwargs, e.g. ``sslmode``, go to psycopg)."""
        import psycopg

        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=database,
            autocommit=autocommit,
            user=self.user if user is None else user,
            password=self.password if password is None else password,
            **kwargs,
        )

    def create_database(self, name: str) -> str:
        """(Re)create database ``name`` (dropping any existing one); return its URL."""
        from psycopg import sql

        self.drop_database(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, with its subscriptions and replication slots,
        terminating sessions that use it."""
        from psycopg import sql

        with self._admin() as conn:
            subs = conn.execute(
                "SELECT s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = %s",
                (name,),
            ).fetchall()
            if subs:
                with self._admin(name) as db:
                    for (sub,) in subs:
                        ident = sql.Identifier(sub)
                        db.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                        db.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                        db.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
            for _ in range(50):
                slots = conn.execute(
                    "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                    (name,),
                ).fetchall()
                if not slots:
                    break
                for slot, active_pid in slots:
                    if active_pid is not None:
                        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (active_pid,))
                    else:
                        with contextlib.suppress(Exception):
                            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                time.sleep(0.05)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ------------------------------------------------------------------------- MariaDB

_EXTRA_SBIN_PATH = "/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/bin:/sbin:/bin"


@functools.cache
def find_mariadb() -> tuple[Path, Path, str]:
    """(mariadbd, mariadb-install-db, version). ``$CONVEYOR_MARIADBD`` overrides the server."""
    path = os.environ.get("PATH", "") + ":" + _EXTRA_SBIN_PATH
    mariadbd = os.environ.get("CONVEYOR_MARIADBD") or shutil.which("mariadbd", path=path)
    install_db = shutil.which("mariadb-install-db", path=path) or shutil.which("mysql_install_db", path=path)
    if not mariadbd:
        mysqld = shutil.which("mysqld", path=path)
        if (
            mysqld
            and "MariaDB" in subprocess.run([mysqld, "--version"], capture_output=True, text=True, check=False).stdout
        ):
            mariadbd = mysqld
    if not mariadbd or not install_db:
        raise ServerUnavailable("MariaDB server binaries not found; run scripts/install-servers")
    out = subprocess.run([mariadbd, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Ver\s+(\S+)", out)
    return Path(mariadbd), Path(install_db), m.group(1) if m else out.strip()


@dataclass(kw_only=True, eq=False)
class MariaDBServer(_ManagedServer):
    """A MariaDB server for tests (binlog on, ROW/FULL, TLS with ``ca_file``).

    Users: ``conveyor``/``secret`` (ALL PRIVILEGES ON *.* WITH GRANT OPTION) and
    ``limited``/``secret`` (USAGE only), each at ``%``, ``127.0.0.1`` and ``localhost``.
    ``root`` (no password) is reachable over the unix socket ``socket_file``.
    """

    mariadbd: Path
    install_db: Path
    socket_file: Path
    kind: ClassVar[str] = "MariaDB"

    @classmethod
    def launch(cls, base_dir: Path | None = None) -> MariaDBServer:
        """mariadb-install-db + start a new server in a fresh ``conveyor-test-mariadb-*`` dir."""
        mariadbd, install_db, version = find_mariadb()
        root = _make_root(base_dir, "mariadb")
        extra: list[Path] = []
        server: MariaDBServer | None = None
        try:
            tls = write_tls_files(root / "tls")
            socket_dir = _socket_dir(root, extra)
            server = cls(
                port=free_port(),
                root=root,
                datadir=root / "data",
                ca_file=tls.ca_file,
                cert_file=tls.cert_file,
                key_file=tls.key_file,
                socket_dir=socket_dir,
                socket_file=socket_dir / "mariadb.sock",
                log_file=root / "mariadb.log",
                mariadbd=mariadbd,
                install_db=install_db,
                version=version,
                _extra_dirs=extra,
            )
            server._register()
            (root / "tmp").mkdir()
            argv = [
                str(install_db),
                "--no-defaults",
                f"--datadir={server.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                # its bootstrap server's temporary tables: private, not in a /tmp other processes clean
                f"--tmpdir={root / 'tmp'}",
            ]
            if _is_root():
                argv.append("--user=root")
            _run(argv, log=server.log_file, cwd=root)
        except BaseException:
            _discard(server, root, extra)
            raise
        server._launch()
        return server

    def _server_argv(self) -> list[str]:
        argv = [
            str(self.mariadbd),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--socket={self.socket_file}",
            f"--pid-file={self.root / 'mariadbd.pid'}",
            f"--tmpdir={self.root / 'tmp'}",
            "--log-bin=mysql-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--server-id=1",
            "--local-infile=1",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--max-allowed-packet=256M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_bin",
            "--innodb-buffer-pool-size=256M",
            "--skip-name-resolve",
            f"--ssl-ca={self.ca_file}",
            f"--ssl-cert={self.cert_file}",
            f"--ssl-key={self.key_file}",
        ]
        if _is_root():
            argv.append("--user=root")
        return argv

    def _stop_signal(self, mode: str) -> int | None:
        if mode in ("smart", "fast"):
            return signal.SIGTERM
        if mode == "immediate":
            return None
        raise ValueError(f"unknown stop mode {mode!r}")

    def _admin(self) -> pymysql.connections.Connection[Any]:
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket_file),
            user="root",
            password="",
            autocommit=True,
            connect_timeout=10,
            charset="utf8mb4",
        )

    def _ping(self) -> bool:
        import pymysql

        try:
            conn = self._admin()
        except pymysql.err.OperationalError:
            return False
        conn.close()
        return True

    def _bootstrap(self) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT user, host FROM mysql.user WHERE user = ''")
                for _, host in cur.fetchall():
                    cur.execute("DROP USER ''@%s", (host,))
                for host in ("%", "127.0.0.1", "localhost"):
                    cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (DEFAULT_USER, host, DEFAULT_PASSWORD))
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{DEFAULT_USER}'@'{host}' WITH GRANT OPTION")
                    cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (LIMITED_USER, host, LIMITED_PASSWORD))
        finally:
            conn.close()

    def _server_pid(self) -> int | None:
        try:
            return int((self.root / "mariadbd.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- client side --------------------------------------------------------------
    def url(self, database: str = "", user: str | None = None, password: str | None = None, **params: str) -> str:
        """``mysql://user:pass@127.0.0.1:port/database[?params]`` (defaults: conveyor/secret)."""
        return self._url("mysql", database, user, password, params)

    def connect(
        self,
        database: str | None = None,
        autocommit: bool = True,
        *,
        user: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> pymysql.connections.Connection[Any]:
        """PyMySQL connection over TCP (extra kwargs, e.g. ``ssl``, go to PyMySQL)."""
        import pymysql

        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("charset", "utf8mb4")
        return pymysql.connect(
            host=self.host,
            port=self.port,
            database=database,
            autocommit=autocommit,
            user=self.user if user is None else user,
            password=self.password if password is None else password,
            **kwargs,
        )

    def create_database(self, name: str) -> str:
        """(Re)create database ``name`` (dropping any existing one); return its URL."""
        self.drop_database(name)
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {_mysql_ident(name)}")
        finally:
            conn.close()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, killing sessions that use it (they could hold
        metadata locks and make DROP DATABASE hang)."""
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 30")
                cur.execute(
                    "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                    (name,),
                )
                for (conn_id,) in cur.fetchall():
                    with contextlib.suppress(Exception):
                        cur.execute(f"KILL {int(conn_id)}")
                cur.execute(f"DROP DATABASE IF EXISTS {_mysql_ident(name)}")
        finally:
            conn.close()


def _mysql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# ------------------------------------------------------------------------ main


@contextlib.contextmanager
def running(kind: str, base_dir: Path | None = None) -> Iterator[_ManagedServer]:
    """``with running("pg") as server:`` -- launch, yield, destroy."""
    server: _ManagedServer
    if kind in ("pg", "postgres", "postgresql"):
        server = PostgresServer.launch(base_dir)
    elif kind in ("mariadb", "mysql"):
        server = MariaDBServer.launch(base_dir)
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    try:
        yield server
    finally:
        server.destroy()


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--supervise":
        return _supervise(json.loads(argv[2]))
    if len(argv) != 2 or argv[1] not in ("pg", "mariadb"):
        print(f"usage: {argv[0]} pg|mariadb", file=sys.stderr)
        return 2
    started = time.monotonic()
    with running(argv[1]) as server:
        print(f"{server.kind} {server.version} ready in {time.monotonic() - started:.2f}s")
        print(f"  url:     {server.url()}")
        print(f"  ca_file: {server.ca_file}")
        print(f"  log:     {server.log_file}")
        print("Ctrl-C to stop and remove it.")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
