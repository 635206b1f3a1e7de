"""Progress of the long calls: a caller's function, a tqdm bar when tqdm is
installed (it is optional: without it the calls are silent), or nothing."""
from ._capi import MendError


class Callback:
    """A Python callable behind a C callback: a true return or an exception
    inside it cancels the C loop (non-zero return); the exception is raised
    again by reraise() once the C call has returned."""

    def __init__(self, fn):
        self.fn, self.error = fn, None

    def __call__(self, *args):
        if self.error is not None:
            return 1
        try:
            return 1 if self.fn(*args) else 0
        except BaseException as e:   # noqa: B902 - re-raised by reraise()
            self.error = e
            return 1

    def reraise(self):
        if self.error is not None:
            err, self.error = self.error, None
            raise err


def run(status, cb):
    """The C call's status with the callback's exception first: the
    callback's own error explains a cancelled call better than the
    library's 'stopped'."""
    cb.reraise()
    if status < 0:
        from ._capi import check
        check(status)
    return status


class Bar:
    """A tqdm bar over total units when tqdm is importable, else nothing."""

    def __init__(self, total, desc, unit):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def update(self, done, total=None, **postfix):
        if self.bar is None:
            return
        if total is not None and self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def reporter(progress, total, desc, unit, to_bar):
    """(fn, closer) for a progress argument: a callable is used as given; True
    draws a tqdm bar, to_bar(bar, *event) moving it; False or None: nothing."""
    if callable(progress):
        return progress, lambda: None
    if progress is True:
        bar = Bar(total, desc, unit)
        return (lambda *ev: to_bar(bar, *ev)), bar.close
    if progress in (False, None):
        return (lambda *ev: None), lambda: None
    raise MendError(-4, f"progress: expected a callable, True or False, got {progress!r}")
