"""Process-wide settings: threads and the kernels' instruction set."""
from . import _capi
from ._capi import check, lib


def set_threads(n):
    """Threads for OpenMP regions and BLAS (0: all cores)."""
    lib.mend_set_threads(int(n))


def get_threads():
    return lib.mend_get_threads()


def set_isa(name):
    """Caps the kernels at "scalar", "avx2" or "avx512" (None or "": the
    widest this CPU has). Raises MendError for an unknown name or a level the
    CPU lacks. Call it before any work starts."""
    check(lib.mend_set_isa(name.encode() if name else None))


def isa():
    """The level in effect ("scalar", "avx2", "avx512")."""
    return lib.mend_isa().decode()


def isa_describe():
    """The level with the extensions in use, e.g. "avx512 (vnni, bf16)"."""
    return lib.mend_isa_describe().decode()


def isa_detected():
    """The widest level this CPU has, whatever set_isa chose."""
    return lib.mend_isa_detected().decode()


def strerror(status):
    """Name of a status code ("EFORMAT", ...)."""
    return _capi.lib.mend_strerror(int(status)).decode()
