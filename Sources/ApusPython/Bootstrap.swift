/// Python helpers that are not on the per-request hot path, run once per interpreter into a
/// module named `_apus`. Keeping them in Python keeps the Swift side small; everything a
/// request touches on every call (environ, start_response, body iteration) is Swift.
let bootstrapSource = #"""
import importlib
import io
import os
import runpy
import sys


def load_app(module, path, name):
    """Import the WSGI callable: `module` (dotted) or the file at `path`, attribute `name`
    or, when name is None, `application` then `app`."""
    if path:
        target = path
        namespace = runpy.run_path(path, run_name="__apus_wsgi_file__")
        lookup = namespace.get
    else:
        target = module
        mod = importlib.import_module(module)
        lookup = lambda attr: getattr(mod, attr, None)
    names = [name] if name else ["application", "app"]
    for attr in names:
        obj = lookup(attr)
        if obj is not None:
            if not callable(obj):
                raise TypeError("%s:%s is not callable" % (target, attr))
            return obj
    raise LookupError("no callable named %s in %s" % (" or ".join(repr(n) for n in names), target))


class FileWrapper:
    """wsgi.file_wrapper: the server sends the file with sendfile when it can."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def sendable_file(wrapper):
    """(fd, offset, size) when the wrapped object is a regular file, else None."""
    f = wrapper.filelike
    try:
        fd = f.fileno()
        st = os.fstat(fd)
        import stat
        if not stat.S_ISREG(st.st_mode):
            return None
        pos = f.tell()
        return (fd, pos, max(0, st.st_size - pos))
    except Exception:
        return None


def body_stream(data):
    return io.BytesIO(data)


def file_stream(fd):
    return io.open(fd, "rb", closefd=True)
"""#
