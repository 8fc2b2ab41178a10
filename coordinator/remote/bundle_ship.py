"""Shipping a bundle to a host: check what it holds, upload, unpack with its Python, prune.

The host needs nothing but its own python3: the check and the unpack are short scripts run
with ``python3 -I -c`` (:data:`_CHECK_SCRIPT`, :data:`_UNPACK_SCRIPT`); the check refuses a
cache directory another user could write to, and re-hashes an unpacked bundle as
:func:`coordinator.remote.bundle.tree_hash` does before it is used.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coordinator.core.errors import BundleError

if TYPE_CHECKING:
    from coordinator.remote.bundle import Bundle
    from coordinator.remote.ssh import SSHHost

KEEP_REMOTE_BUNDLES = 2
"""Bundle directories kept on a host (the one just deployed and the newest other one)."""
STALE_REMOTE_SECONDS = 3600
"""Half-written uploads or unpack directories older than this are removed when pruning."""
REMOTE_TIMEOUT = 120.0
"""Seconds a remote bundle command (check, unpack) may take."""


@dataclass(frozen=True)
class DeployResult:
    """What :func:`ensure_bundle` did on one host."""

    cached: bool
    """The host already had the bundle: nothing was uploaded."""
    bytes_uploaded: int
    remote_dir: str
    """Absolute path of the unpacked bundle on the host."""

    @property
    def pythonpath(self) -> str:
        """PYTHONPATH that makes the agent and its dependencies importable on the host."""
        return f"{self.remote_dir}:{posixpath.join(self.remote_dir, 'site')}"


_TREE_CHECK = """\
import hashlib, os, pwd, stat, sys
os.umask(0o077)
def user(uid):
    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid
def unsafe(path, why):
    print("unsafe")
    print(path)
    print(why)
    sys.exit(0)
def check(path, st):
    if stat.S_ISLNK(st.st_mode):
        unsafe(path, "is a symbolic link")
    if st.st_uid != os.getuid():
        owners = (user(st.st_uid), user(os.getuid()))
        unsafe(path, "is owned by %s, not by the SSH user %s" % owners)
    if st.st_mode & 0o022:
        unsafe(path, "is writable by others (mode %o)" % stat.S_IMODE(st.st_mode))
def tree_hash(top):
    found = []
    def walk(directory, parts, hashed):
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            check(path, st)
            if stat.S_ISDIR(st.st_mode):
                walk(path, parts + (name,), hashed and name != "__pycache__")
            elif not stat.S_ISREG(st.st_mode):
                unsafe(path, "is not a regular file or directory")
            elif hashed and parts + (name,) != (".complete",):
                found.append((parts + (name,), path, st.st_mode))
    walk(top, (), True)
    digest = hashlib.sha256()
    for parts, path, mode in sorted(found):
        with open(path, "rb") as handle:
            data = handle.read()
        executable = "x" if mode & stat.S_IXUSR else "-"
        digest.update(("%s\\0%s\\0%d\\0" % ("/".join(parts), executable, len(data))).encode())
        digest.update(data)
    return digest.hexdigest()
"""
"""Shared by the remote scripts: refuse what another user owns or may write (``unsafe``, then
the path and why, on three lines), and hash a bundle tree as :func:`tree_hash` does."""

_CHECK_SCRIPT = _TREE_CHECK + """\
import shutil
root = os.path.realpath(os.path.expanduser(sys.argv[1]))
os.makedirs(root, mode=0o700, exist_ok=True)
check(root, os.stat(root))
bundles = os.path.join(root, "bundles")
if not os.path.lexists(bundles):
    os.mkdir(bundles, 0o700)
check(bundles, os.lstat(bundles))
target = os.path.join(bundles, sys.argv[2])
state = "missing"
if os.path.lexists(target):
    check(target, os.lstat(target))
    marker = os.path.join(target, ".complete")
    if os.path.isfile(marker) and tree_hash(target) == sys.argv[2]:
        os.utime(marker)
        state = "complete"
    else:
        shutil.rmtree(target)
print(state)
print(target)
"""
"""argv: cache_dir hash. Prints ``complete|missing`` then the bundle's absolute directory, or
``unsafe``, a path and why. Creates the cache directories (owner-only) and checks that they,
and every entry of a cached bundle, belong to the SSH user and are writable by nobody else;
a cached bundle counts only if its content hash matches (a damaged one is removed). Marks a
present bundle as just used (for pruning)."""

_UNPACK_SCRIPT = """\
import os, shutil, sys, tarfile, time
os.umask(0o077)
archive, target, digest, keep = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
parent, name = os.path.split(target)
work = "%s.tmp-%d" % (target, os.getpid())
shutil.rmtree(work, ignore_errors=True)
with tarfile.open(archive, "r:gz") as tar:
    members = tar.getmembers()
    for member in members:
        parts = member.name.split("/")
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            sys.exit("unsafe member in bundle archive: %r" % member.name)
    options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    tar.extractall(work, members=members, **options)
with open(os.path.join(work, ".complete"), "w") as handle:
    handle.write(digest + "\\n")
if os.path.isdir(target) and not os.path.isfile(os.path.join(target, ".complete")):
    shutil.rmtree(target)
try:
    os.rename(work, target)
except OSError:
    if not os.path.isfile(os.path.join(target, ".complete")):
        raise
    shutil.rmtree(work, ignore_errors=True)
os.unlink(archive)
now = time.time()
done = []
for entry in os.listdir(parent):
    path = os.path.join(parent, entry)
    if entry == name:
        continue
    marker = os.path.join(path, ".complete")
    if os.path.isfile(marker):
        done.append((os.path.getmtime(marker), path))
    elif now - os.lstat(path).st_mtime > STALE_SECONDS:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
done.sort(reverse=True)
for _, path in done[keep - 1:]:
    shutil.rmtree(path, ignore_errors=True)
""".replace("STALE_SECONDS", str(STALE_REMOTE_SECONDS))
"""argv: archive target hash keep. Unpacks the archive beside ``target``, writes ``.complete``
last, renames into place, removes the archive and prunes older bundles (keeps ``keep``)."""


def ensure_bundle(ssh_host: SSHHost, bundle: Bundle, remote_cache_dir: str) -> DeployResult:
    """Make sure the host holds ``bundle`` unpacked under ``remote_cache_dir``.

    One remote command when it is there already (nothing is transferred); otherwise an SFTP
    upload of the archive, an unpack with the host's own Python (no tar needed), ``.complete``
    written last, and older bundles pruned. ``~`` in ``remote_cache_dir`` is expanded by the
    host. Every path reaches the host as a separate, quoted argument.
    """
    python = ssh_host.python
    stdout, _ = ssh_host.run(
        [python, "-I", "-c", _CHECK_SCRIPT, remote_cache_dir, bundle.hash],
        timeout=REMOTE_TIMEOUT,
    )
    lines = stdout.splitlines()
    if len(lines) >= 3 and lines[0] == "unsafe":
        raise BundleError(
            ssh_host.name,
            f"unsafe agent cache: {lines[1]} {lines[2]}; agent.cache_dir and the bundles in it "
            "must belong to the SSH user and be writable by nobody else (choose a private "
            "directory, or remove this one)",
        )
    if len(lines) < 2 or lines[0] not in {"complete", "missing"}:
        raise BundleError(ssh_host.name, f"unexpected answer from the bundle check: {stdout!r}")
    state, remote_dir = lines[0], lines[1]
    if state == "complete":
        return DeployResult(cached=True, bytes_uploaded=0, remote_dir=remote_dir)
    upload = f"{remote_dir}.{os.urandom(4).hex()}.tar.gz.part"
    sent = ssh_host.put(bundle.archive, upload)
    ssh_host.run(
        [python, "-I", "-c", _UNPACK_SCRIPT, upload, remote_dir, bundle.hash,
         str(KEEP_REMOTE_BUNDLES)],
        timeout=REMOTE_TIMEOUT,
    )  # fmt: skip
    return DeployResult(cached=False, bytes_uploaded=sent, remote_dir=remote_dir)
