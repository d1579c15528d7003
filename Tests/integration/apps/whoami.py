"""Report who the worker runs as, for the privilege tests.

/              -> {"pid", "uid", "euid", "gid", "egid", "groups", "umask"}
/write?name=N  -> creates N in $WRITE_DIR (mode 0666 asked, the umask applies) and
                  answers {"path", "mode", "uid", "gid"} from its stat
"""
import json
import os
from urllib.parse import parse_qs


def _umask():
    # /proc rather than os.umask(), which would have to change the mask to read it.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return None


def _answer(start_response, obj):
    data = json.dumps(obj).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    if environ["PATH_INFO"] == "/write":
        name = parse_qs(environ.get("QUERY_STRING", ""))["name"][0]
        path = os.path.join(os.environ["WRITE_DIR"], os.path.basename(name))
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666)
        os.close(fd)
        st = os.stat(path)
        return _answer(start_response, {"path": path, "mode": st.st_mode & 0o7777,
                                        "uid": st.st_uid, "gid": st.st_gid})
    return _answer(start_response, {
        "pid": os.getpid(), "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "egid": os.getegid(), "groups": sorted(os.getgroups()), "umask": _umask()})
