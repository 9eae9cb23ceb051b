"""The child side of filters/sandbox.py, run as `python -I -S -B sandbox_child.py FOLDER KEY=VALUE...`
(the settings: time_s, memory_mb, file_mb, report_fd, call_tests).

Before the untrusted `FOLDER/main.py` runs, it takes the network away (a new network namespace,
where the kernel lets this user make one), sets its resource limits (soft and hard alike, so the code
cannot raise them) and installs an audit hook (PEP 578) that refuses, from then on: starting or
signalling processes, sockets other than local pairs and every address lookup, native code (ctypes,
cffi) and the modules that write files from C without an audit event (dbm, readline), changing the
limits, writing, creating, renaming or deleting anything outside `FOLDER/work` (and /dev/null), and
reading files outside `FOLDER`, Python's own folders and the time zone data. Each refusal raises
PermissionError and is written to the descriptor the parent reads (`report_fd`).

An audit hook is not a security boundary (PEP 578 says so): code that reaches native code some way
the hook does not see can step around it. What still holds then is what the kernel enforces: the
limits, the network namespace (where one was made) and the process group the parent kills.

Standard library only: this file runs apart from the project, before anything else is imported.
"""

import math
import os
import resource
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
AF_UNIX = 1  # socket.AF_UNIX on Linux and macOS: local pairs (asyncio's wake-up pipe) stay allowed

PROCESS_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
    | {"os.kill", "os.killpg", "os.startfile", "_posixsubprocess.fork_exec"}
)
NETWORK_EVENTS = frozenset(
    {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"}
    | {"socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo"}
)
NATIVE_EVENTS = frozenset(
    {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata", "ctypes.cdata/buffer"}
    | {"ctypes.call_function", "ctypes.addressof", "resource.setrlimit", "resource.prlimit"}
)
# `_posixsubprocess` is loaded before the hook with its fork_exec disarmed (subprocess and asyncio
# import it); a second copy of it is refused like the others.
REFUSED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "cffi", "_cffi_backend", "_xxsubinterpreters"})
# Modules that write files from C without an audit event: absent here (ModuleNotFoundError, not
# reported: dbm falls back to its pure-Python backend, whose writes the hook sees).
ABSENT_IMPORTS = frozenset({"_dbm", "_gdbm", "readline"})
# Write events: the positions of (path, dir_fd) in their arguments.
WRITE_EVENTS = {
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.mkdir": ((0, 2),),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.utime": ((0, 3),),
    "os.truncate": ((0, None),),
    "os.rename": ((0, 2), (1, 3)),
    "os.link": ((0, 2), (1, 3)),
    "os.symlink": ((1, 2),),
    "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),),
    "os.chflags": ((0, None),),
    "os.lchflags": ((0, None),),
    "shutil.rmtree": ((0, 1),),
    "sqlite3.connect": ((0, None),),
}
IN_MEMORY = (":memory:", "", b":memory:", b"")  # sqlite3 databases without a file
MAX_REPORTED = 20
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Files the standard library reads for itself (time zones, mimetypes, platform) besides Python's own.
READABLE_EXTRA = ("/usr/share/zoneinfo", "/etc/localtime", "/etc/mime.types", "/etc/os-release", "/dev/null")
READABLE_EXTRA += ("/dev/urandom", "/dev/random")


def isolate_network() -> bool:
    """Move into a new network namespace (only a downed loopback in it): as root, or in a new user
    namespace where unprivileged ones are allowed. False where neither works."""
    try:
        import ctypes  # only here: the hook refuses ctypes from then on

        unshare = ctypes.CDLL(None, use_errno=True).unshare
        made = any(unshare(flags) == 0 for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET))
    except (ImportError, OSError, AttributeError):  # no ctypes, or no unshare (not Linux)
        made = False
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    return made


def disarm_subprocess() -> None:
    import _posixsubprocess

    def fork_exec(*_args: object) -> None:
        sys.audit("_posixsubprocess.fork_exec")  # the hook refuses it (and reports it)

    _posixsubprocess.fork_exec = fork_exec


def set_limits(settings: dict) -> None:
    def cap(kind: int, value: int) -> None:
        _, hard = resource.getrlimit(kind)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (value, value))

    cap(resource.RLIMIT_CPU, math.ceil(settings["time_s"]) + 1)
    cap(resource.RLIMIT_AS, int(settings["memory_mb"]) << 20)
    cap(resource.RLIMIT_FSIZE, int(settings["file_mb"]) << 20)
    cap(resource.RLIMIT_NOFILE, 64)
    cap(resource.RLIMIT_CORE, 0)


def _under(path: str, folders: tuple) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _resolved(path, dir_fd) -> tuple:
    """Where `path` (a name, or an open descriptor) points: the whole path resolved, and its folder
    resolved with the last name kept (a link's own place)."""
    if isinstance(path, int):
        target = os.readlink(f"/proc/self/fd/{path}")
        return target, target
    name = os.fsdecode(path)
    if not os.path.isabs(name):
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd not in (None, -1) else os.getcwd()
        name = os.path.join(base, name)
    return os.path.realpath(name), os.path.join(os.path.realpath(os.path.dirname(name)), os.path.basename(name))


class Hook:
    """The audit hook: refuses what the module docstring lists."""

    def __init__(self, writable: str, readable: tuple, report: int):
        self.writable = (writable, "/dev/null")
        self.readable = readable
        self.report = report
        self.busy = False  # the hook's own calls raise events too
        self.reported = 0  # refusals written: a few say what happened, and a full pipe would block

    def __call__(self, event: str, args: tuple) -> None:
        if self.busy:
            return
        if event == "import" and args[0] in ABSENT_IMPORTS:
            raise ModuleNotFoundError(f"No module named {args[0]!r} in the sandbox", name=args[0])
        self.busy = True
        try:
            why = self.check(event, args)
            denied = "" if why else self.check_read(event, args)
        finally:
            self.busy = False
        if denied:  # reading is only denied (as the file system would), not reported: nothing leaves
            raise PermissionError(f"sandbox: {denied} is not allowed")
        if why:
            if self.reported < MAX_REPORTED:
                self.reported += 1
                os.write(self.report, f"refused {why[:200]}\n".encode(errors="replace"))
            raise PermissionError(f"sandbox: {why} is not allowed")

    def check(self, event: str, args: tuple) -> str:
        if event in PROCESS_EVENTS or event in NETWORK_EVENTS or event in NATIVE_EVENTS:
            return event
        if event == "socket.__new__" and args[1] != AF_UNIX:
            return "socket.__new__"
        if event == "import" and (args[0] in REFUSED_IMPORTS or args[0].startswith("ctypes.")):
            return f"import {args[0]}"
        if event == "open":
            return self.check_open(*args[:3])
        for where, fd_at in WRITE_EVENTS.get(event, ()):
            path = args[where]
            if event == "sqlite3.connect" and path in IN_MEMORY:
                continue
            if not all(_under(p, self.writable) for p in _resolved(path, None if fd_at is None else args[fd_at])):
                return f"{event} {path}"
        return ""

    def check_open(self, path, mode, flags) -> str:
        if isinstance(path, int):
            return ""  # wrapping a descriptor already opened under these rules
        writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        if writing and not all(_under(p, self.writable) for p in _resolved(path, None)):
            return f"writing {path}"
        return ""

    def check_read(self, event: str, args: tuple) -> str:
        """What `event` reads outside the readable folders; "" when nothing."""
        reading = event in ("open", "os.listdir", "os.scandir") and args[0] is not None
        if not reading or isinstance(args[0], int) or _under(_resolved(args[0], None)[0], self.readable):
            return ""
        return f"reading {args[0]}"


def _no_required_arguments(function) -> bool:
    code = function.__code__
    positional = code.co_argcount - len(function.__defaults__ or ())
    keyword = code.co_kwonlyargcount - len(function.__kwdefaults__ or {})
    return positional <= 0 and keyword <= 0


def call_tests(namespace: dict) -> None:
    """Call the test functions the code defined and did not call itself (`test*`, no arguments), and
    run its unittest cases; the first failure is raised. (Nothing is imported for it that the code
    did not import: each import is time on every answer.)"""
    for name, value in list(namespace.items()):
        if (
            name.startswith("test")
            and type(value).__name__ == "function"
            and value.__module__ == "__main__"
            and _no_required_arguments(value)
        ):
            value()
    unittest = sys.modules.get("unittest")
    if unittest is None:
        return
    cases = [
        v
        for v in namespace.values()
        if isinstance(v, type) and issubclass(v, unittest.TestCase) and v.__module__ == "__main__"
    ]
    if cases:
        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in cases)
        result = unittest.TextTestRunner(stream=sys.stderr, verbosity=0).run(suite)
        if not result.wasSuccessful():
            test, text = (result.failures + result.errors)[0]
            raise AssertionError(f"{test.id()}: {text.strip().splitlines()[-1]}")


def main() -> int:
    folder = os.path.realpath(sys.argv[1])
    settings = {k: float(v) for k, v in (arg.split("=", 1) for arg in sys.argv[2:])}
    report = int(settings["report_fd"])
    network = isolate_network()
    os.write(report, f"network {'namespace' if network else 'hooks'}\n".encode())
    set_limits(settings)
    for module in (os, __import__("posix")):  # mkfifo and mknod raise no audit event
        for name in ("mkfifo", "mknod"):
            if hasattr(module, name):
                delattr(module, name)
    disarm_subprocess()
    python = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
    python += (os.path.realpath(__file__),)  # tracebacks read the lines of their frames
    work = os.path.join(folder, "work")
    path = os.path.join(folder, "main.py")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, path, "exec")
    os.chdir(work)
    sys.addaudithook(Hook(work, (folder, *python, *READABLE_EXTRA), report))
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    try:
        exec(code, namespace)
        if settings.get("call_tests"):
            call_tests(namespace)
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            return err.code or 0
        print(err.code, file=sys.stderr)
        return 1
    except BaseException:  # the code's own failure: its traceback is the parent's error
        import traceback

        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
