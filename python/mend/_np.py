"""numpy, imported at the first use of one of its names.

Importing numpy costs about 0.1 CPU s, half of `import mend`; a script that
scores a task file or compresses a model by path never makes an array, so
the modules refer to numpy through this stand-in (`from ._np import np`)
and only the calls that take or return arrays pay for it. Each name is
looked up once, then kept as an attribute of the stand-in."""


class _LazyNumpy:
    def __getattr__(self, name):
        import numpy
        value = getattr(numpy, name)
        setattr(self, name, value)
        return value

    def __repr__(self):
        return "<numpy, imported on first use>"


np = _LazyNumpy()
